"""A frame's RTP packets protected with one viewer's SRTP key, in place, in one buffer.

pylibsrtp's `Session.protect` takes one packet: per call it allocates a length cell,
checks the type, copies the packet into its own buffer, protects it there and copies
the result out as new bytes. For a frame's packets only the libsrtp call itself is
needed: each header and payload is copied once into a buffer this viewer keeps, and
libsrtp protects it where it lies (`srtp_protect` works in place and appends the
tag), each packet right after the last. What goes to the socket is views of that
buffer, valid until the next frame: the sends that take them copy or finish first.

The session is aiortc's own (the DTLS transport's `_tx_srtp`), so the rollover
counter and replay state are the ones its retransmissions and RTCP also use.
tests/test_srtp_frame.py compares the output byte for byte with `Session.protect`
and fails if a pylibsrtp upgrade moves what this reaches into.
"""

from __future__ import annotations

from collections.abc import Sequence

from pylibsrtp import SRTP_MAX_TRAILER_LEN, Session
from pylibsrtp._binding import ffi, lib  # type: ignore[import-not-found]  # cffi, no stubs

from peercam.rtc.rtp_header import MARKER, SEQUENCE

_MINIMUM_BUFFER = 64 * 1024


class FrameProtector:
    """Protects frames for one SRTP session; `protect` again reuses the buffer."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._context = session._srtp[0]
        self._length = ffi.new("int *")
        self._size = 0
        self._buffer = ffi.NULL
        self._view = memoryview(b"")

    def _room(self, size: int) -> None:
        if size > self._size:
            self._size = max(size, _MINIMUM_BUFFER, 2 * self._size)
            self._buffer = ffi.new("char[]", self._size)
            self._view = memoryview(ffi.buffer(self._buffer))

    def protect(
        self, headers: Sequence[bytes | bytearray], payloads: Sequence[bytes]
    ) -> list[memoryview]:
        """Packet i is headers[i] + payloads[i]; returns each protected, in order."""
        trailers = SRTP_MAX_TRAILER_LEN * len(headers)  # room for libsrtp's tags
        self._room(sum(map(len, headers)) + sum(map(len, payloads)) + trailers)
        protected: list[memoryview] = []
        view, at = self._view, 0
        for header, payload in zip(headers, payloads, strict=True):
            middle = at + len(header)
            end = middle + len(payload)
            view[at:middle] = header
            view[middle:end] = payload
            at = self._seal(at, end, protected)
        return protected

    def protect_frame(
        self, header: bytes | bytearray, first: int, payloads: Sequence[bytes], payload_bytes: int
    ) -> tuple[list[memoryview], int]:
        """One frame's packets: each `header` (rtp_header.frame_header) numbered on from
        `first`, the last marked, + its payload (`payload_bytes` in all). Returns them
        protected, in order, and their bytes together. The per-viewer work of every
        frame: no header object or list is made per packet."""
        size, count = len(header), len(payloads)
        self._room((size + SRTP_MAX_TRAILER_LEN) * count + payload_bytes)
        protected: list[memoryview] = []
        view, at = self._view, 0
        number, last = SEQUENCE.pack_into, count - 1
        for index, payload in enumerate(payloads):
            middle = at + size
            end = middle + len(payload)
            view[at:middle] = header
            number(view, at + 2, (first + index) & 0xFFFF)
            if index == last:
                view[at + 1] |= MARKER
            view[middle:end] = payload
            at = self._seal(at, end, protected)
        return protected, at

    def _seal(self, at: int, end: int, protected: list[memoryview]) -> int:
        """Protect the packet lying at [at, end) where it lies; append the view of it
        (tag included) to `protected` and return where the next one may start."""
        if end + SRTP_MAX_TRAILER_LEN > self._size:  # libsrtp writes the tag unchecked
            raise RuntimeError("a frame's packets outgrew the buffer made for them")
        length = self._length
        length[0] = end - at
        status = lib.srtp_protect(self._context, self._buffer + at, length)
        if status:
            raise RuntimeError(f"libsrtp could not protect a packet (status {status})")
        end = at + length[0]
        protected.append(self._view[at:end])
        return end
