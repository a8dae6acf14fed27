"""The playout-delay header extension: its wire value, and that a sender's header map
adds it to every packet once negotiated (and only then)."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from peercam.rtc import playout_delay


def test_the_value_counts_min_and_max_in_10_ms_steps() -> None:
    assert playout_delay.encode(0, 100) == bytes([0x00, 0x00, 0x0A])
    assert playout_delay.encode(0, 0) == bytes(3)
    assert playout_delay.encode(40, 40950) == bytes([0x00, 0x4F, 0xFF])
    for low, high in ((10, 0), (-10, 0), (0, 40960)):
        with pytest.raises(ValueError):
            playout_delay.encode(low, high)


def _parameters(*uris: str) -> RTCRtpParameters:
    return RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=i + 1, uri=uri) for i, uri in enumerate(uris)
        ]
    )


def test_every_packet_carries_it_once_negotiated() -> None:
    headers = playout_delay.PlayoutDelayHeaders(0, 100)
    headers.configure(_parameters("urn:ietf:params:rtp-hdrext:sdes:mid", playout_delay.URI))
    values = rtp.HeaderExtensions()
    values.mid = "0"
    profile, data = headers.set(values)
    assert rtp.unpack_header_extensions(profile, data) == [(1, b"0"), (2, b"\x00\x00\x0a")]
    packet = rtp.RtpPacket(payload_type=96, sequence_number=1, timestamp=2)
    packet.extensions = values
    wire = packet.serialize(headers)
    # RFC 8285 after the 12-byte header: profile, length in 32-bit words, elements.
    profile, words = int.from_bytes(wire[12:14], "big"), int.from_bytes(wire[14:16], "big")
    elements = rtp.unpack_header_extensions(profile, wire[16 : 16 + 4 * words])
    assert (2, b"\x00\x00\x0a") in elements


def test_nothing_is_added_when_the_browser_did_not_offer_it() -> None:
    headers = playout_delay.PlayoutDelayHeaders(0, 100)
    headers.configure(_parameters("urn:ietf:params:rtp-hdrext:sdes:mid"))
    values = rtp.HeaderExtensions()
    values.mid = "0"
    assert rtp.unpack_header_extensions(*headers.set(values)) == [(1, b"0")]


async def test_the_sender_hook_exists_in_this_aiortc() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    playout_delay.ask_for_playout_delay(sender, 0, 100)
    installed = getattr(sender, "_RTCRtpSender__rtp_header_extensions_map")  # noqa: B009
    assert isinstance(installed, playout_delay.PlayoutDelayHeaders)
    await pc.close()
