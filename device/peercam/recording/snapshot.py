"""JPEG pictures from the shared encoded stream: snapshots, and each clip's thumbnail.

Decoding from the newest keyframe gives the newest picture from any source, the
camera's own H.264 included, without a second path from the sensor. Blocking (a
decoder and a JPEG encoder): run it in a thread.
"""

from __future__ import annotations

import fractions
from collections.abc import Sequence

import av

from peercam.encode.codecs import BY_NAME
from peercam.media import EncodedFrame


class SnapshotError(Exception):
    pass


def decode_latest(group: Sequence[EncodedFrame]) -> av.VideoFrame:
    """The last picture of `group` (a keyframe and the frames after it)."""
    if not group or not group[0].keyframe:
        raise SnapshotError("no keyframe to decode from")
    context = av.CodecContext.create(BY_NAME[group[0].codec].decoder, "r")
    assert isinstance(context, av.VideoCodecContext)
    latest: av.VideoFrame | None = None
    for frame in group:
        try:
            for picture in context.decode(av.Packet(frame.data)):
                assert isinstance(picture, av.VideoFrame)
                latest = picture
        except av.FFmpegError:
            break  # keep what decoded; a broken frame only ends the run
    try:
        for picture in context.decode(None):  # flush: some decoders hold a frame
            assert isinstance(picture, av.VideoFrame)
            latest = picture
    except av.FFmpegError:
        pass
    if latest is None:
        raise SnapshotError("the keyframe did not decode")
    return latest


def jpeg(picture: av.VideoFrame, max_width: int | None = None, quality: int = 4) -> bytes:
    """`picture` as a JPEG, scaled down to `max_width` if wider. `quality` is FFmpeg's
    qscale: 2 is best, 31 worst."""
    width, height = picture.width, picture.height
    if max_width is not None and width > max_width:
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    converted = picture.reformat(width=width, height=height, format="yuvj420p")
    context = av.CodecContext.create("mjpeg", "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height = width, height
    context.pix_fmt = "yuvj420p"
    context.time_base = fractions.Fraction(1, 30)  # one picture: any time base will do
    context.options = {"qmin": str(quality), "qmax": str(quality)}
    converted.pts = 0
    data = b"".join(bytes(packet) for packet in context.encode(converted))
    data += b"".join(bytes(packet) for packet in context.encode(None))
    if not data.startswith(b"\xff\xd8"):
        raise SnapshotError("the JPEG encoder produced nothing")
    return data


def latest_jpeg(group: Sequence[EncodedFrame], max_width: int | None = None) -> bytes:
    """The last picture of `group` as a JPEG: decode and encode in one call, so one
    trip to a thread does both."""
    return jpeg(decode_latest(group), max_width)
