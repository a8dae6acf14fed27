"""A frame's datagrams onto the selected ICE pair's UDP socket in as few system calls
as the kernel takes.

aioice sends each datagram through three coroutines and asyncio's transport to one
`sendto`. A frame of a viewer's video is 2-40 datagrams of nearly one size, all due
at once: Linux's UDP generic segmentation offload (UDP_SEGMENT, since 4.18) takes a
run of equal-size datagrams (the last may be shorter) in one `sendmsg` and cuts it
in the kernel. A run with a shorter datagram in the middle would be cut wrong, so
runs are split where a size changes.

Only what would have gone straight out goes straight out: a transport with datagrams
queued (the socket was full) gets the frame through its queue, in order, as does one
without a socket of its own (a TURN relay).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

# aioice's TurnTransport keeps its client protocol (UDP, or TCP/TLS) here
# (aioice/turn.py, TurnTransport.__init__); tests/test_frame_sender.py checks it.
TURN_INNER_PROTOCOL = "_TurnTransport__inner_protocol"
# linux/udp.h; Python 3.11's socket module does not name it.
UDP_SEGMENT = 103
# Kernels before 5.x take at most 64 segments a call; a datagram is at most 64 KiB.
MAX_SEGMENTS = 64
MAX_GSO_BYTES = 60_000
# What a kernel or route without segmentation offload answers.
_GSO_REFUSED = {errno.EINVAL, errno.EIO, errno.EMSGSIZE, errno.EOPNOTSUPP, errno.ENOPROTOOPT}
_SEGMENT_SIZE = struct.Struct("=H")
# A datagram as handed over: its own bytes, or a view of a frame's buffer that is
# valid until the call returns (asyncio's transport copies what it queues).
Datagram = bytes | memoryview
_ALONE: Sequence[range] = (range(1),)


def equal_runs(sizes: Sequence[int]) -> list[range]:
    """`sizes` split into runs one segmented send can carry: all the same size but
    the last, which may be shorter; at most MAX_SEGMENTS and MAX_GSO_BYTES each."""
    runs: list[range] = []
    start = 0
    while start < len(sizes):
        size = sizes[start]
        end = start + 1
        limit = min(MAX_SEGMENTS, MAX_GSO_BYTES // max(size, 1))
        while end < len(sizes) and end - start < limit and sizes[end] == size:
            end += 1
        if end < len(sizes) and end - start < limit and sizes[end] < size:
            end += 1  # a shorter one may close the run
        runs.append(range(start, end))
        start = end
    return runs


def _offers_segmentation(sock: socket.socket) -> bool:
    """Whether this kernel knows UDP_SEGMENT (Linux 4.18 on). Asked once with the
    socket option, which an older kernel refuses: the control message alone it
    would ignore silently and send a whole run as one oversized datagram."""
    if sys.platform != "linux":
        return False
    try:
        sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, 0)  # 0: only where a send asks
    except OSError:
        return False
    return True


class PairSocket:
    """Sends for one ICE pair; `close()` when the pair changes or the viewer goes."""

    def __init__(self, pair: Any) -> None:
        self.pair = pair
        self._transport = pair.protocol.transport
        self._address = pair.remote_addr
        raw = self._transport.get_extra_info("socket")
        # A duplicate of aioice's socket: sending on it needs no asyncio, and closing it
        # leaves aioice's own open (its transport closes that).
        self._socket: socket.socket | None = raw.dup() if raw is not None else None
        self.segmenting = self._socket is not None and _offers_segmentation(self._socket)
        self.queued = 0  # datagrams handed to the transport's queue instead
        # A relay reached over TCP or TLS (aioice's TurnTransport around a stream
        # protocol): what the path cannot carry is not dropped there but waits in
        # asyncio's unbounded write buffer, ahead of later frames.
        inner = getattr(self._transport, TURN_INNER_PROTOCOL, None)
        self.streamed = isinstance(inner, asyncio.Protocol)

    @property
    def direct(self) -> bool:
        return self._socket is not None

    def send(self, datagrams: Sequence[Datagram]) -> None:
        sock, transport = self._socket, self._transport
        if sock is None or transport.is_closing() or transport.get_write_buffer_size():
            self._through_transport(datagrams, 0)
            return
        count = len(datagrams)
        runs: Sequence[range]
        if count == 1:
            runs = _ALONE  # audio, mostly: half a viewer's sends
        elif self.segmenting:
            runs = equal_runs([len(d) for d in datagrams])
        else:
            runs = [range(i, i + 1) for i in range(count)]
        for run in runs:
            try:
                if len(run) == 1:
                    sock.sendto(datagrams[run.start], self._address)
                else:
                    size = _SEGMENT_SIZE.pack(len(datagrams[run.start]))
                    segmented = [(socket.SOL_UDP, UDP_SEGMENT, size)]
                    sock.sendmsg(datagrams[run.start : run.stop], segmented, 0, self._address)
            except (BlockingIOError, InterruptedError):
                self._through_transport(datagrams, run.start)  # full: asyncio queues the rest
                return
            except OSError as error:
                if len(run) > 1 and error.errno in _GSO_REFUSED:
                    logger.info("UDP segmentation offload refused (%s): sending one by one", error)
                    self.segmenting = False
                    self.send(datagrams[run.start :])
                    return
                # As asyncio does for a datagram the network refused (ICMP unreachable):
                # lost, and the viewer's NACK or keyframe request repairs it.
                logger.debug("send to %s failed: %s", self._address, error)

    def _through_transport(self, datagrams: Sequence[Datagram], start: int) -> None:
        for datagram in datagrams[start:]:
            self._transport.sendto(datagram, self._address)
        self.queued += len(datagrams) - start

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
