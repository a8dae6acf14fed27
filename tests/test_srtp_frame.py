"""A frame protected in place (rtc/srtp_frame.py) is byte for byte what pylibsrtp's
own `Session.protect` makes of the same packets with the same key, across frames,
a sequence-number wrap and a frame larger than the buffer it starts with."""

from __future__ import annotations

import os

import pytest
from aiortc import RTCRtpHeaderExtensionParameters, RTCRtpParameters, rtp
from pylibsrtp import Policy, Session

from peercam.rtc.rtp_header import HeaderTemplate
from peercam.rtc.srtp_frame import FrameProtector

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
PROFILES = [
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
]
KEY_LENGTHS = {
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 30,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 28,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 44,
}


def _session(profile: int, key: bytes) -> Session:
    return Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))


@pytest.mark.parametrize("profile", PROFILES)
def test_frames_protected_in_place_are_what_pylibsrtp_makes(profile: int) -> None:
    key = os.urandom(KEY_LENGTHS[profile])
    theirs, ours = _session(profile, key), _session(profile, key)
    protector = FrameProtector(ours)
    template = HeaderTemplate.build(rtp.HeaderExtensionsMap(), 102, 0x1234ABCD, None)
    sequence = 65530  # the wrap, where the rollover counter steps
    sizes_by_frame = [[1200] * 5 + [700], [300], [1200] * 70 + [40], [1100, 1100]]
    for frame, sizes in enumerate(sizes_by_frame):
        payloads = [os.urandom(size) for size in sizes]
        headers = []
        for index in range(len(sizes)):
            headers.append(template.fill(sequence, 3000 * frame, index == len(sizes) - 1, 0))
            sequence = (sequence + 1) & 0xFFFF
        expected = [theirs.protect(bytes(h) + p) for h, p in zip(headers, payloads, strict=True)]
        assert [bytes(v) for v in protector.protect(headers, payloads)] == expected


@pytest.mark.parametrize("profile", PROFILES)
def test_a_frame_numbered_and_marked_in_place_is_what_pylibsrtp_makes(profile: int) -> None:
    """The per-frame path: one header per frame, each packet's number and the last
    one's marker written into the buffer, is the same bytes as a header filled per
    packet (the one a NACK's answer is made from), protected by pylibsrtp."""
    key = os.urandom(KEY_LENGTHS[profile])
    theirs, ours = _session(profile, key), _session(profile, key)
    protector = FrameProtector(ours)
    extensions = rtp.HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(id=3, uri=ABS_SEND_TIME),
            ]
        )
    )
    template = HeaderTemplate.build(extensions, 102, 0x1234ABCD, "0")
    assert template.abs_send_time_at is not None
    sequence = 65533
    sizes_by_frame = [[1200] * 5 + [700], [90], [1200] * 70 + [40], [1100, 1100]]
    for frame, sizes in enumerate(sizes_by_frame):
        payloads = [os.urandom(size) for size in sizes]
        timestamp, sent_at = 0xFFFF0000 + 3000 * frame, 0xABCDEF - frame
        expected = []
        for index, payload in enumerate(payloads):
            number = (sequence + index) & 0xFFFF
            header = template.fill(number, timestamp, index == len(sizes) - 1, sent_at)
            expected.append(theirs.protect(bytes(header) + payload))
        header = template.frame_header(timestamp, sent_at)
        protected, size = protector.protect_frame(header, sequence, payloads, sum(sizes))
        assert [bytes(v) for v in protected] == expected
        assert size == sum(map(len, expected))
        assert header == template.frame_header(timestamp, sent_at)  # left as it was
        sequence = (sequence + len(sizes)) & 0xFFFF


def test_a_frame_larger_than_it_was_said_to_be_is_refused_not_written_past_the_buffer() -> None:
    protector = FrameProtector(_session(Policy.SRTP_PROFILE_AES128_CM_SHA1_80, bytes(30)))
    template = HeaderTemplate.build(rtp.HeaderExtensionsMap(), 102, 1, None)
    header = template.frame_header(0, 0)
    # Said to be 10 bytes, so the buffer stays at its 64 KiB: the packet fits, its
    # authentication tag (written by libsrtp past the packet, unchecked) would not.
    payloads = [bytes(65_536 - len(header) - 5)]
    with pytest.raises(RuntimeError, match="outgrew"):
        protector.protect_frame(header, 0, payloads, 10)


def test_it_reaches_only_what_this_pylibsrtp_has() -> None:
    """Fails loudly if a pylibsrtp upgrade moves the context or the binding."""
    from pylibsrtp._binding import lib  # type: ignore[import-not-found]

    session = _session(Policy.SRTP_PROFILE_AES128_CM_SHA1_80, bytes(30))
    assert session._srtp[0] is not None
    assert callable(lib.srtp_protect)
