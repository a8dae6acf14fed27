"""ONVIF as Home Assistant's integration uses it (homeassistant/components/onvif/
device.py and event.py, on onvif-zeep-async), step by step, and a hand-made SOAP
request for what a well-behaved library will not send."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from onvif import ONVIFCamera

from tests.daemon_process import DaemonProcess


def onvif_port(daemon: DaemonProcess) -> int:
    return int(daemon.logged(r"ONVIF: http://<camera>:(\d+)/onvif/device_service")[1])


@dataclass
class SetUp:
    """What Home Assistant learns while setting the camera up."""

    manufacturer: str
    model: str
    serial: str
    mac: str | None
    pull_point_support: bool
    snapshot_support: bool
    profiles: list[tuple[str, str, int, int]]  # token, encoding, width, height
    stream_uri: str  # the first profile's
    stream_uris: dict[str, str]  # every profile's, by its token
    snapshot: bytes | None


async def set_up_as_home_assistant(camera: ONVIFCamera) -> SetUp:
    """device.py's async_setup, in its order."""
    await camera.update_xaddrs()
    capabilities = await camera.get_capabilities() or {}
    management = await camera.create_devicemgmt_service()
    clock = await management.GetSystemDateAndTime()
    stamp = clock.UTCDateTime
    camera_time = dt.datetime(
        stamp.Date.Year, stamp.Date.Month, stamp.Date.Day,
        stamp.Time.Hour, stamp.Time.Minute, stamp.Time.Second, tzinfo=dt.UTC,
    )  # fmt: skip
    assert abs((camera_time - dt.datetime.now(dt.UTC)).total_seconds()) < 5
    info = await management.GetDeviceInformation()
    mac = None
    for interface in await management.GetNetworkInterfaces():
        if interface.Enabled:
            mac = interface.Info.HwAddress  # HA keeps the last enabled one
    media = await camera.create_media_service()
    media_capabilities = await media.GetServiceCapabilities()
    profiles = [
        (p.token, p.VideoEncoderConfiguration.Encoding,
         p.VideoEncoderConfiguration.Resolution.Width,
         p.VideoEncoderConfiguration.Resolution.Height)
        for p in await media.GetProfiles()
        if p.VideoEncoderConfiguration and p.VideoEncoderConfiguration.Encoding == "H264"
    ]  # fmt: skip
    # HA makes a camera entity of each H.264 profile, each with its own stream.
    stream_uris = {}
    for token, *_ in profiles:
        request = media.create_type("GetStreamUri")
        request.ProfileToken = token
        request.StreamSetup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        stream_uris[token] = (await media.GetStreamUri(request)).Uri
    snapshot = await camera.get_snapshot(profiles[0][0])  # Digest, as HA fetches it
    return SetUp(
        info.Manufacturer,
        info.Model,
        info.SerialNumber,
        mac,
        bool((capabilities.get("Events") or {}).get("WSPullPointSupport")),
        bool(media_capabilities.SnapshotUri),
        profiles,
        stream_uris[profiles[0][0]],
        stream_uris,
        snapshot,
    )


def username_token(user: str, password: str, nonce: bytes | None = None, created: str = "") -> str:
    nonce = nonce if nonce is not None else os.urandom(16)
    created = created or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(
        hashlib.sha1(nonce + created.encode() + password.encode()).digest()
    ).decode()
    return (
        '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/'
        'oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/'
        'wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken>'
        f"<wsse:Username>{user}</wsse:Username>"
        '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-'
        f'username-token-profile-1.0#PasswordDigest">{digest}</wsse:Password>'
        f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce>"
        f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"
    )


def plain_token(user: str, password: str) -> str:
    return (
        '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/'
        'oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken>'
        f"<wsse:Username>{user}</wsse:Username>"
        '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-'
        f'username-token-profile-1.0#PasswordText">{password}</wsse:Password>'
        "</wsse:UsernameToken></wsse:Security>"
    )


def envelope(body: str, header: str = "") -> bytes:
    return (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
        'xmlns:trt="http://www.onvif.org/ver10/media/wsdl">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def post(port: int, path: str, data: bytes, timeout: float = 10) -> tuple[int, str]:
    """(status, body) of a POST to the ONVIF port."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST",
        headers={"Content-Type": "application/soap+xml; charset=utf-8"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def fault_subcode(body: str) -> str | None:
    found = re.search(r"<env:Subcode><env:Value>([^<]+)</env:Value>", body)
    return found[1] if found else None
