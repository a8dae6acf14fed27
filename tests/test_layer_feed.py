"""A viewer moving between quality layers: at the target's keyframe, never before,
timestamps never going back, the layer left released (fanout/layer_feed.py)."""

from __future__ import annotations

import asyncio

from peercam.fanout.hub import StreamHub, Subscription
from peercam.fanout.layer_feed import LayerFeed
from peercam.media import EncodedFrame, Layer


def frame(layer: str, timestamp: int, keyframe: bool = False) -> EncodedFrame:
    data = f"{layer}-{timestamp}".encode()
    return EncodedFrame("h264", data, keyframe, 0.0, timestamp, (data,), timestamp)


class Layers:
    """Two real hubs, as the pipeline has them, with what was asked of them."""

    def __init__(self) -> None:
        self.keyframe_requests: dict[str, list[str]] = {"main": [], "low": []}
        self.hubs = {
            layer: StreamHub(f"h264/{layer}", True, self.keyframe_requests[layer].append)
            for layer in ("main", "low")
        }
        self.releases = 0
        self.switched: list[Layer] = []

    def subscribe(self, layer: Layer) -> Subscription:
        return self.hubs[layer].subscribe(capacity=10)

    def released(self) -> None:
        self.releases += 1

    def feed(self, layer: Layer = "main") -> LayerFeed:
        return LayerFeed(self.subscribe, layer, self.released, self.switched.append)


def delivered(feed: LayerFeed) -> list[EncodedFrame]:
    taken: list[EncodedFrame] = []

    def take(frame: EncodedFrame) -> bool:
        taken.append(frame)
        return True

    feed.start(take)
    return taken


def watching_main() -> tuple[Layers, LayerFeed, list[EncodedFrame]]:
    """A viewer on the main layer that has had two frames (times 1000 and 4000) and is
    being moved to the low one."""
    layers = Layers()
    feed = layers.feed()
    taken = delivered(feed)
    main = layers.hubs["main"]
    main.publish(frame("main", 1000, keyframe=True))
    main.publish(frame("main", 4000))
    feed.switch_to("low")
    return layers, feed, taken


async def test_the_switch_is_made_at_the_target_layers_keyframe_and_the_old_layer_goes() -> None:
    layers, feed, taken = watching_main()
    main, low = layers.hubs["main"], layers.hubs["low"]
    assert layers.keyframe_requests["low"] == ["new-viewer"]  # asked for at once
    assert (feed.layer, feed.target) == ("main", "low")
    low.publish(frame("low", 7000))  # not a keyframe: no switch on it
    main.publish(frame("main", 7000))  # the old layer goes on meanwhile
    low.publish(frame("low", 10000, keyframe=True))
    main.publish(frame("main", 10000))  # after the switch: not for this viewer
    low.publish(frame("low", 13000))
    assert [f.data for f in taken] == [
        b"main-1000",
        b"main-4000",
        b"main-7000",
        b"low-10000",
        b"low-13000",
    ]
    assert feed.layer == "low" and feed.switches == 1 and layers.switched == ["low"]
    assert len(main) == 0 and len(low) == 1  # the main layer's hub has no one left
    assert layers.releases == 1  # so its encoder can be stopped
    feed.close()
    assert len(low) == 0


async def test_a_keyframe_stamped_no_later_than_what_was_sent_is_moved_just_after_it() -> None:
    """The low layer's encoder is the faster: it may finish a capture the main layer
    has already sent, or an earlier one."""
    layers, feed, taken = watching_main()
    main, low = layers.hubs["main"], layers.hubs["low"]
    low.publish(frame("low", 4000, keyframe=True))  # the capture just sent
    low.publish(frame("low", 4000 + 1))  # not a real case; still after
    low.publish(frame("low", 7000))
    stamps = [f.rtp_timestamp for f in taken]
    assert stamps == [1000, 4000, 4001, 4002, 7000]
    assert taken[2].data == b"low-4000" and taken[2].keyframe
    # Across the 32-bit wrap as well.
    feed.switch_to("main")
    main.publish(frame("main", 0xFFFFFFF0, keyframe=True))  # before 7000, wrapped: older
    assert taken[-1].rtp_timestamp == 7001


async def test_a_sender_that_waits_for_frames_follows_the_switch() -> None:
    """A relayed viewer's sender takes frames from `get` (the queued path): its wait on
    the old layer ends with the switch, and it goes on with the new one."""
    layers = Layers()
    feed = layers.feed()
    feed.start(None)
    main, low = layers.hubs["main"], layers.hubs["low"]
    main.publish(frame("main", 1000, keyframe=True))
    assert (await asyncio.wait_for(feed.get(), 1)).data == b"main-1000"
    waiting = asyncio.ensure_future(feed.get())
    await asyncio.sleep(0)
    feed.switch_to("low")
    low.publish(frame("low", 1000, keyframe=True))
    got = await asyncio.wait_for(waiting, 1)
    assert got.data == b"low-1000" and got.rtp_timestamp == 1001
    feed.close()


async def test_going_back_before_the_keyframe_calls_the_move_off() -> None:
    layers = Layers()
    feed = layers.feed()
    taken = delivered(feed)
    main, low = layers.hubs["main"], layers.hubs["low"]
    main.publish(frame("main", 1000, keyframe=True))
    feed.switch_to("low")
    assert len(low) == 1
    feed.switch_to("main")  # the path recovered before the low layer's keyframe came
    assert len(low) == 0 and layers.releases == 1
    low.publish(frame("low", 4000, keyframe=True))
    main.publish(frame("main", 4000))
    assert [f.data for f in taken] == [b"main-1000", b"main-4000"]
    assert feed.layer == "main" and feed.switches == 0
    feed.close()
    assert len(main) == 0


async def test_a_feed_closed_mid_move_leaves_no_subscription_behind() -> None:
    layers = Layers()
    feed = layers.feed()
    delivered(feed)
    feed.switch_to("low")
    feed.close()
    assert len(layers.hubs["main"]) == 0 and len(layers.hubs["low"]) == 0
    feed.switch_to("main")  # after close: nothing
    assert len(layers.hubs["main"]) == 0


async def test_a_feed_only_ever_asked_for_frames_switches_too() -> None:
    """aiortc's own sender loop (webrtc.frame_sender = false) never starts the feed; it
    only asks. A move made before its first ask is made all the same."""
    layers = Layers()
    feed = layers.feed()
    feed.switch_to("low")  # before the sender ever asked
    getting = asyncio.ensure_future(feed.get())
    await asyncio.sleep(0)
    assert layers.keyframe_requests["low"] == ["new-viewer"]
    layers.hubs["low"].publish(frame("low", 1000, keyframe=True))
    assert (await asyncio.wait_for(getting, 1)).data == b"low-1000"
    assert feed.layer == "low" and len(layers.hubs["main"]) == 0
    feed.close()


async def test_a_move_whose_layer_cannot_start_leaves_the_viewer_where_it_was() -> None:
    layers = Layers()
    feed = layers.feed()
    delivered(feed)
    failing = True

    def subscribe(layer: Layer) -> Subscription:
        if failing:
            raise RuntimeError("the encoder would not start")
        return layers.subscribe(layer)

    feed._subscribe = subscribe
    try:
        feed.switch_to("low")
    except RuntimeError:
        pass
    assert (feed.layer, feed.target) == ("main", "main")
    failing = False
    feed.switch_to("low")  # tried again later: made
    assert feed.target == "low" and len(layers.hubs["low"]) == 1
    feed.close()
