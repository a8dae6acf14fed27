"""The hub: same frames to every viewer; a slow one skips to a keyframe alone."""

from __future__ import annotations

import asyncio

import pytest

from peercam.fanout.hub import StreamHub, SubscriptionClosed
from peercam.media import EncodedFrame


def frame(sequence: int, keyframe: bool = False) -> EncodedFrame:
    data = bytes([sequence % 256])
    return EncodedFrame("h264", data, keyframe, 0.0, sequence, (data,), sequence)


class Requests:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


async def test_every_subscriber_gets_the_same_frame_objects() -> None:
    hub = StreamHub("h264", True, Requests())
    subs = [hub.subscribe(capacity=10) for _ in range(3)]
    getters = asyncio.gather(*(sub.get() for sub in subs))
    await asyncio.sleep(0)  # their senders start reading
    hub.publish(frame(0, keyframe=True))
    firsts = await asyncio.wait_for(getters, 1)
    for i in range(1, 5):
        hub.publish(frame(i))
    received = [[await sub.get() for _ in range(4)] for sub in subs]
    assert firsts[0] is firsts[1] is firsts[2]
    for a, b in zip(received[0], received[1], strict=True):
        assert a is b  # shared, not copied per viewer


async def test_new_subscriber_asks_for_a_keyframe_when_it_starts_and_skips_to_one() -> None:
    requests = Requests()
    hub = StreamHub("h264", True, requests)
    sub = hub.subscribe(capacity=10)
    hub.publish(frame(0, keyframe=True))  # before its sender started: not queued
    assert requests.reasons == []
    getter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    assert requests.reasons == ["new-viewer"]
    hub.publish(frame(1))
    hub.publish(frame(2))
    hub.publish(frame(3, keyframe=True))
    hub.publish(frame(4))
    assert (await getter).sequence == 3
    assert (await sub.get()).sequence == 4


async def test_slow_subscriber_drops_to_the_next_keyframe_without_holding_others() -> None:
    requests = Requests()
    drops: list[int] = []
    hub = StreamHub("h264", True, requests, on_drop=drops.append)
    slow, fast = hub.subscribe(capacity=4), hub.subscribe(capacity=4)
    hub.publish(frame(0, keyframe=True))
    first = asyncio.gather(slow.get(), fast.get())
    await asyncio.sleep(0)
    hub.publish(frame(1, keyframe=True))
    await first
    fast_seen = []
    for i in range(2, 12):
        hub.publish(frame(i))
        fast_seen.append((await fast.get()).sequence)  # fast keeps up; slow never reads
    assert fast_seen == list(range(2, 12))
    assert "overflow" in requests.reasons
    assert slow.dropped > 0 and sum(drops) == slow.dropped
    hub.publish(frame(12))  # still waiting for a keyframe: not queued
    hub.publish(frame(13, keyframe=True))
    hub.publish(frame(14))
    assert [(await slow.get()).sequence for _ in range(2)] == [13, 14]


async def test_audio_overflow_keeps_the_newest_without_keyframe_waits() -> None:
    requests = Requests()
    hub = StreamHub("opus", False, requests)
    sub = hub.subscribe(capacity=3)
    hub.publish(frame(0, keyframe=True))
    getter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    hub.publish(frame(1, keyframe=True))
    assert (await getter).sequence == 1
    for i in range(2, 10):
        hub.publish(frame(i, keyframe=True))
    assert requests.reasons == []
    assert (await sub.get()).sequence in range(7, 10)


async def test_closing_wakes_a_waiting_reader_and_empties_the_hub() -> None:
    empty: list[bool] = []
    hub = StreamHub("h264", True, Requests(), on_empty=lambda: empty.append(True))
    sub = hub.subscribe(capacity=3)
    getter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await getter
    assert len(hub) == 0 and empty == [True]


async def test_a_direct_subscriber_takes_frames_at_once_and_queues_what_it_declines() -> None:
    requests = Requests()
    hub = StreamHub("h264", True, requests)
    taken: list[int] = []
    declining = {2, 3}

    def direct(f: EncodedFrame) -> bool:
        if f.sequence in declining:
            return False
        taken.append(f.sequence)
        return True

    sub = hub.subscribe(capacity=10)
    sub.start(direct)
    assert requests.reasons == ["new-viewer"]
    hub.publish(frame(0))  # waiting for a keyframe: neither taken nor queued
    hub.publish(frame(1, keyframe=True))
    assert taken == [1]  # before publish returned, no task woken
    hub.publish(frame(2))
    declining.clear()
    hub.publish(frame(3))  # would be taken, but 2 is queued ahead of it
    assert taken == [1]
    assert [(await sub.get()).sequence for _ in range(2)] == [2, 3]
    hub.publish(frame(4))  # the queue is empty again: taken directly
    assert taken == [1, 4]


async def test_a_direct_subscriber_closing_itself_does_not_disturb_the_others() -> None:
    hub = StreamHub("h264", False, Requests())
    received: list[int] = []
    closing = hub.subscribe(capacity=3)

    def ending(f: EncodedFrame) -> bool:
        closing.close()  # ends its viewer on the first frame
        return True

    def taking(f: EncodedFrame) -> bool:
        received.append(f.sequence)
        return True

    closing.start(ending)
    other = hub.subscribe(capacity=3)
    other.start(taking)
    hub.publish(frame(0))
    hub.publish(frame(1))
    assert received == [0, 1] and len(hub) == 1
    with pytest.raises(SubscriptionClosed):
        await closing.get()
