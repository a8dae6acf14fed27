"""H.264 Annex-B details a passthrough stream must get right."""

from __future__ import annotations

from aiortc.codecs.h264 import H264Encoder

SPS, PPS, IDR = 7, 8, 5
START_CODE = b"\x00\x00\x00\x01"


def nal_units(access_unit: bytes) -> list[bytes]:
    return list(H264Encoder._split_bitstream(access_unit))


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


class ParameterSetRepeater:
    """Puts the latest SPS and PPS in front of every IDR that lacks them.

    A viewer can only start decoding at an IDR that carries the parameter sets. The
    Pi's encoder repeats them when told to, but many USB cameras send them once, at
    the start of the stream; a viewer joining later would never decode a frame.
    """

    def __init__(self) -> None:
        self._sps: bytes | None = None
        self._pps: bytes | None = None

    def process(self, access_unit: bytes) -> bytes:
        nals = nal_units(access_unit)
        types = [nal_type(n) for n in nals if n]
        for nal in nals:
            if nal and nal_type(nal) == SPS:
                self._sps = nal
            elif nal and nal_type(nal) == PPS:
                self._pps = nal
        if IDR in types and SPS not in types and self._sps and self._pps:
            return START_CODE + self._sps + START_CODE + self._pps + access_unit
        return access_unit
