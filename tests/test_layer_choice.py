"""The per-viewer layer chooser (rtc/layer_chooser.py) on made-up RTCP, what the RTCP
watch reads out of aiortc's real packets (rtc/rtcp_watch.py), and the budget that
holds a viewer's frames to a narrow path (fanout/frame_budget.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, rtp

from peercam.fanout.frame_budget import FrameBudget
from peercam.media import EncodedFrame
from peercam.rtc import layer_chooser as lc
from peercam.rtc.layer_chooser import LayerChooser, LayerRate
from peercam.rtc.rtcp_watch import (
    LossReport,
    PathEstimate,
    PathEvent,
    RepairRequest,
    events_in,
    round_trip,
    watch_rtcp,
)

MAIN, LOW = 1_500_000, 400_000


def chooser() -> LayerChooser:
    return LayerChooser((LayerRate("main", MAIN), LayerRate("low", LOW)), start=0.0)


def reports(
    chosen: LayerChooser, start: float, end: float, lost: float = 0.0, rtt: float = 0.02
) -> list[lc.LayerChoice]:
    """A receiver report every 0.5 s from `start` to `end`; the moves they made."""
    moves = []
    at = start
    while at < end:
        move = chosen.observe(LossReport(lost, 0, rtt, at))
        if move is not None:
            moves.append(move)
        at += 0.5
    return moves


def test_a_rising_estimate_below_the_layer_moves_nobody() -> None:
    """A browser's estimate starts at 300 kbit/s and climbs: no sign of a narrow path."""
    chosen = chooser()
    for second in range(20):
        assert chosen.observe(PathEstimate(300_000 + 40_000 * second, float(second))) is None
    assert chosen.layer == "main"


def test_an_estimate_that_fell_below_the_layer_for_a_second_moves_the_viewer_down() -> None:
    chosen = chooser()
    assert chosen.observe(PathEstimate(1_600_000, 1.0)) is None
    assert chosen.observe(PathEstimate(1_300_000, 2.0)) is None  # fell, 87 %: held...
    move = chosen.observe(PathEstimate(1_290_000, 3.0))  # ...for a second
    assert move is not None and move.layer == "low" and "fell to 1290 kbit/s" in move.reason
    assert chosen.layer == "low"


def test_heavy_loss_moves_down_at_once_and_moderate_loss_in_two_windows() -> None:
    chosen = chooser()
    reports(chosen, 0.0, 2.0)  # clean windows
    moves = reports(chosen, 2.0, 3.1, lost=0.4)
    # The window that closed took in the clean report before: the mean, over 25 %.
    assert [m.layer for m in moves] == ["low"] and "of packets lost" in moves[0].reason

    chosen = chooser()
    reports(chosen, 0.0, 2.0)
    assert reports(chosen, 2.0, 3.0, lost=0.12) == []  # one window: not yet
    assert [m.layer for m in reports(chosen, 3.0, 6.1, lost=0.12)] == ["low"]


def test_receiver_reports_are_taken_together_over_a_window() -> None:
    """A browser sends a report with each NACK, each over its own few milliseconds:
    one such report saying 80 % lost among many saying none is not heavy loss."""
    chosen = chooser()
    at = 0.0
    for index in range(40):  # 40 reports in a second, one of them 80 %
        assert chosen.observe(LossReport(0.8 if index == 20 else 0.0, 0, 0.02, at)) is None
        at += 0.025
    assert chosen.layer == "main"


def go_down(chosen: LayerChooser, at: float) -> float:
    """Heavy loss until the chooser moves down (within two windows); when it did."""
    while chosen.layer == "main":
        assert at < 100
        chosen.observe(LossReport(0.5, 0, 0.02, at))
        at += 0.5
    return at - 0.5


def test_on_the_low_layer_a_probe_ramps_up_and_moves_the_viewer_up_when_it_goes_through() -> None:
    chosen = chooser()
    down = go_down(chosen, 0.0)
    chosen.observe(PathEstimate(500_000, down + 0.1))
    assert chosen.padding(down + 1.0) == 0  # a rest after moving down
    start = down + lc.REST + 0.1
    assert chosen.padding(start) == 0  # the probe starts from nothing
    target = MAIN * lc.UP_ABOVE - LOW
    half = chosen.padding(start + lc.PROBE_RAMP / 2)
    assert half == pytest.approx(target / 2, rel=0.01)
    assert chosen.padding(start + lc.PROBE_RAMP) == pytest.approx(target, rel=0.01)
    full = start + lc.PROBE_RAMP
    # Clean reports while the full rate goes through: up after UP_HOLD.
    moves = reports(chosen, full, full + lc.UP_HOLD + 1.0)
    assert [m.layer for m in moves] == ["main"] and "probe" in moves[0].reason
    assert chosen.padding(full + lc.UP_HOLD + 1.5) == 0  # none on the main layer


def test_no_probe_is_counted_where_the_sender_cannot_send_one() -> None:
    """Over a relay, or without RTX, the sender sends no probe: none may start, or
    aiortc's own sender reports would make one it never sent look clear."""
    chosen = chooser()
    down = go_down(chosen, 0.0)
    chosen.observe(PathEstimate(500_000, down + 0.1))
    at = down + lc.REST + 0.1
    while at < down + 40:
        assert chosen.padding(at, possible=False) == 0
        assert chosen.observe(LossReport(0.0, 0, 0.02, at)) is None
        at += 0.5
    assert chosen.layer == "low"


def test_the_least_round_trip_is_of_the_last_minute() -> None:
    """A route that got longer reads as a queue only until the old, shorter round trips
    are a minute old."""
    chosen = chooser()
    reports(chosen, 0.0, 5.0, rtt=0.02)
    assert chosen.least_rtt == 0.02
    reports(chosen, 5.0, 5.0 + lc.LEAST_RTT_SECONDS + 1, rtt=0.12)
    assert chosen.least_rtt == 0.12


def test_a_probe_at_full_rate_without_word_of_the_round_trip_moves_nobody_up() -> None:
    """Receiver reports that time no round trip (they answer no sender report sent
    while probing) say nothing of the queue the probe may be filling."""
    chosen = chooser()
    down = go_down(chosen, 0.0)
    chosen.observe(PathEstimate(500_000, down + 0.1))
    start = down + lc.REST + 0.1
    chosen.padding(start)
    full = start + lc.PROBE_RAMP
    assert chosen.padding(full) > 0
    at = full
    while at < full + 3 * lc.UP_HOLD:
        assert chosen.observe(LossReport(0.0, 0, None, at)) is None
        chosen.padding(at)
        at += 0.5
    assert chosen.layer == "low"


def test_a_probe_ends_when_the_round_trip_grows_and_the_next_one_stops_short_of_there() -> None:
    chosen = chooser()
    reports(chosen, 0.0, 1.0, rtt=0.02)  # the least round trip: 20 ms
    down = go_down(chosen, 1.0)
    chosen.observe(PathEstimate(500_000, down + 0.1))
    start = down + 0.1 + lc.REST
    assert chosen.padding(start) == 0
    at_failure = chosen.padding(start + 2.0) + LOW  # half way: 1.06 Mbit/s in all
    chosen.observe(LossReport(0.0, 0, 0.02 + lc.PROBE_QUEUE + 0.01, start + 2.1))
    assert chosen.padding(start + 2.2) == 0  # ended, resting
    # The next probe, after its rest, gets to just under where this one ended within a
    # second, then creeps on.
    again = start + 2.1 + lc.PROBE_REST
    assert chosen.padding(again) == 0
    near = chosen.padding(again + 1.0) + LOW
    assert near == pytest.approx(lc.CEILING_APPROACH * at_failure, rel=0.02)
    later = chosen.padding(again + 2.0) + LOW
    assert later == pytest.approx(near + lc.CEILING_GROWTH * at_failure, rel=0.02)


def test_a_nack_ends_a_probe_and_rests_grow_after_each_failed_one() -> None:
    chosen = chooser()
    down = go_down(chosen, 0.0)
    chosen.observe(PathEstimate(500_000, down + 0.1))
    at = down + 0.1 + lc.REST
    rests = []
    for _ in range(4):
        assert chosen.padding(at) == 0  # starts
        assert chosen.padding(at + 1.0) > 0
        chosen.observe(RepairRequest("nack", 3, at + 1.1))
        assert chosen.padding(at + 1.2) == 0
        rest = 0.0
        while chosen.padding(at + 1.1 + rest) == 0 and rest < 30:
            rest += 0.5
        chosen._probe_from = None  # the probe this search started: not counted
        rests.append(rest)
        at += 1.1 + rest
    assert rests[0] == pytest.approx(lc.PROBE_REST, abs=0.5)
    assert rests[-1] == pytest.approx(lc.MAX_PROBE_REST, abs=0.5)
    assert rests == sorted(rests)


def test_a_move_up_that_fails_makes_the_next_rest_longer() -> None:
    chosen = chooser()
    go_down(chosen, 0.0)
    up_at = 20.0
    assert chosen._up(up_at, "test").layer == "main"
    down = go_down(chosen, up_at + 2.0)
    assert down - up_at < lc.FAILED_UP
    chosen.observe(PathEstimate(500_000, down + 0.1))
    resting_until = down + 2 * lc.REST  # twice the first rest
    assert chosen.padding(resting_until - 0.5) == 0
    assert chosen.padding(resting_until + 0.6) == 0  # the probe starts here...
    assert chosen.padding(resting_until + 1.6) > 0  # ...and ramps


def test_a_path_that_carries_less_than_the_lowest_layer_holds_the_video_to_a_budget() -> None:
    chosen = chooser()
    reports(chosen, 0.0, 1.0, rtt=0.02)
    down = go_down(chosen, 1.0)
    chosen.observe(PathEstimate(250_000, down + 0.1))
    settled = down + lc.SETTLE
    # What the move left in the queue is not counted.
    reports(chosen, down + 0.5, settled, rtt=0.02 + lc.BUDGET_QUEUE_HIGH + 0.05)
    reports(chosen, settled, settled + 1.0)
    assert chosen.budget() is None
    # Two report windows running with the queue grown: held.
    reports(chosen, settled + 1.0, settled + 5.0, rtt=0.02 + lc.BUDGET_QUEUE_HIGH + 0.05)
    budget = chosen.budget()
    assert budget is not None and budget <= 250_000 * lc.BUDGET_SHARE
    assert chosen.padding(settled + 5.5) == 0  # no probe while held
    assert chosen.repair_budget() == int(250_000 * lc.REPAIR_SHARE_HELD)
    # A clean path: the budget grows a little a window, and ends once the layer fits.
    windows = 0
    at = settled + 5.0
    while chosen.budget() is not None and windows < 100:
        reports(chosen, at, at + 1.0)
        at += 1.0
        windows += 1
    assert 10 < windows < 100
    # The estimate that follows what is sent does not hold it down.
    assert chosen.layer == "low"


def frame(size: int, keyframe: bool = False) -> EncodedFrame:
    return EncodedFrame("h264", b"", keyframe, 0.0, 0, (bytes(size),), 0)


def test_a_budget_sends_each_group_of_pictures_from_its_keyframe_while_it_lasts() -> None:
    budget = FrameBudget(80_000, 0.0)  # 10 000 bytes a second, saved up to one second's
    admitted = []
    at = 0.0
    for _ in range(3):
        for index in range(30):  # a group of 30 frames, one a 1/30 s
            admitted.append(budget.admit(frame(6_000 if index == 0 else 1_000, index == 0), at))
            at += 1 / 30
    firsts = [admitted[30 * g : 30 * (g + 1)] for g in range(3)]
    for group in firsts:
        assert group[0]  # every keyframe
        sent = group.index(False) if False in group else 30
        assert all(group[:sent]) and not any(group[sent:])  # a prefix, then nothing
    assert 3 <= firsts[1].index(False) <= 12
    # A keyframe larger than all that may be saved up still goes, when not overdrawn.
    big = FrameBudget(8_000, 0.0)
    assert big.admit(frame(5_000, True), 1.0)
    assert not big.admit(frame(100), 1.1)
    assert not big.admit(frame(5_000, True), 1.2)  # overdrawn: wait for the next
    assert big.admit(frame(5_000, True), 6.0)


# --- RTCP as aiortc parses it -------------------------------------------------------


SSRC = 0x1234_5678


def parsed(packet: object) -> rtp.AnyRtcpPacket:
    (only,) = rtp.RtcpPacket.parse(bytes(packet))  # type: ignore[call-overload]
    return only


async def test_the_watch_reads_receiver_reports_nacks_keyframe_requests_and_remb() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video").sender
    ssrc = sender._ssrc
    report = rtp.RtcpReceiverInfo(
        ssrc=ssrc, fraction_lost=64, packets_lost=10, highest_sequence=100, jitter=90,
        lsr=0, dlsr=0,
    )  # fmt: skip
    other = rtp.RtcpReceiverInfo(
        ssrc=ssrc + 1, fraction_lost=255, packets_lost=1, highest_sequence=1, jitter=0,
        lsr=0, dlsr=0,
    )  # fmt: skip
    rr = parsed(rtp.RtcpRrPacket(ssrc=1, reports=[report, other]))
    nack = parsed(
        rtp.RtcpRtpfbPacket(fmt=rtp.RTCP_RTPFB_NACK, ssrc=1, media_ssrc=ssrc, lost=[5, 6, 9])
    )
    pli = parsed(rtp.RtcpPsfbPacket(fmt=rtp.RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc))
    remb = parsed(
        rtp.RtcpPsfbPacket(
            fmt=rtp.RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=rtp.pack_remb_fci(750_000, [ssrc])
        )
    )
    not_ours = parsed(
        rtp.RtcpPsfbPacket(
            fmt=rtp.RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=rtp.pack_remb_fci(1, [ssrc + 1])
        )
    )
    garbled = parsed(rtp.RtcpPsfbPacket(fmt=rtp.RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"XYZW"))
    found: list[PathEvent] = []
    for packet in (rr, nack, pli, remb, not_ours, garbled):
        found += events_in(packet, sender, 7.0, 1000.0)
    assert found == [
        LossReport(0.25, 90, None, 7.0),
        RepairRequest("nack", 3, 7.0),
        RepairRequest("keyframe", 1, 7.0),
        PathEstimate(750_000, 7.0),
    ]
    await pc.close()


async def test_the_round_trip_is_timed_from_when_aiortc_sent_its_sender_report() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video").sender
    setattr(sender, "_RTCRtpSender__lsr", 0xABCD_0000)  # noqa: B010
    setattr(sender, "_RTCRtpSender__lsr_time", 1000.0)  # noqa: B010
    # Received 0.25 s later, held by the viewer 0.2 s (dlsr in 1/65536 s): 50 ms.
    assert round_trip(sender, 0xABCD_0000, int(0.2 * 65536), 1000.25) == pytest.approx(
        0.05, abs=1e-4
    )
    assert round_trip(sender, 0x1111_0000, 0, 1000.25) is None  # about an older report
    assert round_trip(sender, 0, 0, 1000.25) is None  # no report had yet
    assert round_trip(sender, 0xABCD_0000, 0, 999.0) is None  # a wall clock stepped back
    # A sender report of the frame sender's own, sent while probing, found by its LSR.
    rtt = round_trip(sender, 0x2222_0000, 0, 1000.25, {0x2222_0000: 1000.1}.get)
    assert rtt == pytest.approx(0.15)
    # Both sent one with the same LSR (the same frame's time): the viewer times from
    # the later one, and so does the round trip.
    rtt = round_trip(sender, 0xABCD_0000, 0, 1000.25, {0xABCD_0000: 999.9}.get)
    assert rtt == pytest.approx(0.25)
    await pc.close()


async def test_the_watch_keeps_aiortcs_own_handling_and_survives_a_failing_listener() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video").sender
    handled: list[object] = []

    async def aiortcs_own(packet: rtp.AnyRtcpPacket) -> None:
        handled.append(packet)

    setattr(sender, "_handle_rtcp_packet", aiortcs_own)  # noqa: B010
    told: list[PathEvent] = []

    def listener(event: PathEvent) -> None:
        told.append(event)
        raise RuntimeError("a listener's own fault")

    watch_rtcp(sender, listener)
    pli = parsed(rtp.RtcpPsfbPacket(fmt=rtp.RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
    await sender._handle_rtcp_packet(pli)
    assert handled == [pli] and len(told) == 1
    await asyncio.sleep(0)
    await pc.close()


def test_an_estimate_above_the_layer_above_by_itself_moves_the_viewer_up() -> None:
    chosen = chooser()
    down = go_down(chosen, 0.0)
    at = down + lc.REST + 0.5
    moves = []
    while at < down + lc.REST + 0.5 + lc.UP_HOLD + 1.5:
        move = chosen.observe(PathEstimate(int(MAIN * lc.UP_ABOVE) + 1, at))
        moves += [move] if move is not None else []
        at += 0.5
    assert [m.layer for m in moves] == ["main"] and "path estimate" in moves[0].reason


def test_an_estimate_that_falls_ends_a_probe() -> None:
    chosen = chooser()
    down = go_down(chosen, 0.0)
    chosen.observe(PathEstimate(600_000, down + 0.1))
    start = down + lc.REST + 0.1
    chosen.padding(start)
    assert chosen.padding(start + 1.0) > 0
    chosen.observe(PathEstimate(500_000, start + 1.1))  # fell by a sixth
    assert chosen.padding(start + 1.2) == 0
