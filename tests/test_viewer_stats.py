"""The camera's side of each viewer's connection (issue 20): the send rate between two
readings, what is read of aiortc's stats, the per-viewer series in /metrics with a
real aiortc viewer (and their removal when it hangs up), and the page's overlay
(web/stats.js formatStats) with and without the camera's figures, in Chromium."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiortc import (
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCRtpSender,
    RTCStatsReport,
)
from playwright.sync_api import Page, Route
from prometheus_client.parser import text_string_to_metric_families

from peercam.rtc.layer_chooser import LayerStatus
from peercam.rtc.viewer_stats import (
    Candidate,
    SelectedPair,
    SendRate,
    StatsReader,
    ViewerStats,
)
from tests.browser import chromium
from tests.daemon_process import DaemonProcess
from tests.whep_viewer import WhepViewer

WEB = Path(__file__).resolve().parent.parent / "web"
ORIGIN = "http://peercam.test"
DASH = "\N{EN DASH}"  # what the overlay shows for a figure not known


# --- the send rate ---------------------------------------------------------------


def test_send_rate_needs_two_readings_half_a_second_apart() -> None:
    rate = SendRate()
    assert rate.update(1000, now=10.0) is None  # one reading: not known
    assert rate.update(5000, now=10.2) is None  # too soon after it: still not known
    assert rate.update(126_000, now=11.0) == pytest.approx(125_000 * 8 / 1.0)
    # Too soon again: the last rate stands (two readers at once must not see 0).
    assert rate.update(126_500, now=11.1) == pytest.approx(1_000_000)
    assert rate.update(126_000 + 50_000, now=12.0) == pytest.approx(50_000 * 8)
    assert rate.update(176_000, now=13.0) == 0.0  # nothing sent: 0, not None


def test_send_rate_is_never_negative() -> None:
    rate = SendRate()
    rate.update(10_000, now=1.0)
    assert rate.update(20_000, now=2.0) == pytest.approx(80_000)
    assert rate.update(5_000, now=3.0) is None  # the counter went back: start over
    assert rate.update(15_000, now=4.0) == pytest.approx(80_000)
    assert rate.update(20_000, now=3.5) is None  # a clock that went back, likewise
    assert rate.update(20_000, now=4.5) == 0.0


# --- reading aiortc's report -----------------------------------------------------


def _outbound(kind: str, packets: int, size: int) -> RTCOutboundRtpStreamStats:
    return RTCOutboundRtpStreamStats(
        timestamp=datetime.datetime.now(datetime.UTC),
        type="outbound-rtp",
        id=f"outbound-rtp_{kind}",
        ssrc=1 if kind == "video" else 2,
        kind=kind,
        transportId="transport_1",
        packetsSent=packets,
        bytesSent=size,
        trackId=kind,
    )


def _remote_inbound(
    kind: str, rtt: float | None, lost: int, fraction: int
) -> RTCRemoteInboundRtpStreamStats:
    return RTCRemoteInboundRtpStreamStats(
        timestamp=datetime.datetime.now(datetime.UTC),
        type="remote-inbound-rtp",
        id=f"remote-inbound-rtp_{kind}",
        ssrc=1 if kind == "video" else 2,
        kind=kind,
        transportId="transport_1",
        packetsReceived=100,
        packetsLost=lost,
        jitter=0,
        roundTripTime=rtt,  # type: ignore[arg-type]  # aiortc passes None before it knows
        fractionLost=fraction,
    )


class _Connection:
    """Stands in for RTCPeerConnection: what StatsReader reads of it, with aiortc's
    own stats types (no sender, so no candidate pair)."""

    def __init__(self) -> None:
        self.entries: list[RTCOutboundRtpStreamStats | RTCRemoteInboundRtpStreamStats] = []

    async def getStats(self) -> RTCStatsReport:
        report = RTCStatsReport()
        for entry in self.entries:
            report.add(entry)
        return report

    def getSenders(self) -> list[RTCRtpSender]:
        return []


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_reader_takes_video_first_and_reports_nothing_impossible() -> None:
    pc = _Connection()
    clock = _Clock()
    reader = StatsReader(pc, clock=clock)
    assert await reader.read() == ViewerStats()  # nothing sent yet: nothing known

    pc.entries = [_outbound("video", 10, 10_000), _outbound("audio", 50, 4_000)]
    first = await reader.read()
    assert first.bytes_sent == {"video": 10_000, "audio": 4_000}
    assert first.packets_sent == {"video": 10, "audio": 50}
    assert first.send_bitrate is None  # one reading
    assert first.rtt is None and first.packets_lost is None and first.fraction_lost is None

    clock.now += 2.0
    pc.entries = [
        _outbound("video", 20, 30_000),
        _outbound("audio", 100, 8_000),
        # aiortc has no RTT until a report echoes its last SR; audio's stands in.
        _remote_inbound("video", None, 3, 64),
        _remote_inbound("audio", 0.025, -2, 0),  # duplicates make the count negative
    ]
    second = await reader.read()
    assert second.send_bitrate == pytest.approx((38_000 - 14_000) * 8 / 2.0)
    assert second.rtt == pytest.approx(0.025)
    assert second.packets_lost == 3
    assert second.fraction_lost == pytest.approx(0.25)  # RTCP's 64/256

    clock.now += 1.0
    pc.entries[2] = _remote_inbound("video", 0.012, 3, 0)
    pc.entries[3] = _remote_inbound("audio", -0.5, 0, 0)  # a wall clock stepped back
    third = await reader.read()
    assert third.rtt == pytest.approx(0.012)
    pc.entries[2] = _remote_inbound("video", -0.5, 3, 0)
    assert (await reader.read()).rtt is None


async def test_reader_prefers_the_round_trip_peercam_timed_itself() -> None:
    """A layered viewer's round trip comes from its layer chooser (timed against
    peercam's record of its sender reports), not aiortc's wall-clock figure."""
    pc = _Connection()
    pc.entries = [_outbound("video", 10, 10_000), _remote_inbound("video", 31.67, 0, 0)]
    status = LayerStatus("low", "low", "heavy loss", 400_000, 0, None, 0.048)
    assert (await StatsReader(pc, layer=lambda: status).read()).rtt == pytest.approx(0.048)
    unknown = LayerStatus("low", "low", "heavy loss", 400_000, 0, None, None)
    assert (await StatsReader(pc, layer=lambda: unknown).read()).rtt == pytest.approx(31.67)


def test_to_json_hides_the_cameras_own_address_unless_asked() -> None:
    pair = SelectedPair(
        local=Candidate("host", "udp", "192.168.1.20", 50_000),
        remote=Candidate("srflx", "udp", "198.51.100.7", 61_234),
    )
    stats = ViewerStats(
        rtt=0.0125,
        packets_lost=3,
        fraction_lost=0.25,
        bytes_sent={"video": 1000, "audio": 200},
        packets_sent={"video": 2, "audio": 3},
        send_bitrate=1_499_999.6,
        pair=pair,
    )
    shown = stats.to_json()
    assert shown == {
        "rttSeconds": 0.0125,
        "packetsLost": 3,
        "fractionLost": 0.25,
        "bytesSent": {"video": 1000, "audio": 200},
        "packetsSent": {"video": 2, "audio": 3},
        "sendBitrateBps": 1_500_000,
        "candidatePair": {
            "local": {"type": "host", "protocol": "udp", "address": None, "port": None},
            "remote": {
                "type": "srflx",
                "protocol": "udp",
                "address": "198.51.100.7",
                "port": 61_234,
            },
        },
        "layer": None,  # a viewer that does not move between layers
    }
    assert "type" not in shown  # the channel message's own "type" stays "stats"
    assert stats.to_json(local_address=True)["candidatePair"]["local"]["address"] == (
        "192.168.1.20"
    )
    relayed = ViewerStats(
        pair=SelectedPair(Candidate("relay", "udp", "203.0.113.9", 3478), pair.remote)
    )
    assert relayed.to_json()["candidatePair"]["local"]["address"] == "203.0.113.9"
    assert json.loads(json.dumps(ViewerStats().to_json()))["rttSeconds"] is None
    moving = ViewerStats(layer=LayerStatus("main", "low", "path estimate 700 kbit/s", 700_000, 0))
    assert json.loads(json.dumps(moving.to_json()))["layer"] == {
        "layer": "main",
        "target": "low",
        "reason": "path estimate 700 kbit/s",
        "estimateBps": 700_000,
        "probeBps": 0,
        "limitBps": None,
    }


# --- /metrics with a real viewer ---------------------------------------------------


def _viewer_series(text: str, session: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every peercam_viewer_* sample labelled with `session`, by metric name."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("peercam_viewer_") and sample.labels.get("session") == (
                session
            ):
                found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


async def _wait_for_metrics(
    daemon: DaemonProcess,
    condition: Callable[[dict[str, list[tuple[dict[str, str], float]]]], bool],
    session: str,
    what: str,
    within: float = 20,
) -> dict[str, list[tuple[dict[str, str], float]]]:
    deadline = time.monotonic() + within
    while True:
        text = await asyncio.to_thread(daemon.get, "/metrics")
        series = _viewer_series(text, session)
        if condition(series):
            return series
        assert time.monotonic() < deadline, f"{what} not within {within} s; last: {series}"
        await asyncio.sleep(0.25)  # a scrape interval: the condition is what is awaited


def _value(series: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float | None:
    samples = series.get(name, [])
    return samples[0][1] if samples else None


@pytest.mark.timeout(90)
async def test_metrics_carry_each_viewers_figures_and_drop_them_when_it_leaves(
    daemon: DaemonProcess,
) -> None:
    async with WhepViewer(daemon.access) as viewer:
        assert viewer.answer is not None
        session_id = viewer.answer.location.rsplit("/", 1)[1]
        # Its label in /metrics is its own, not a part of its id (viewers read it).
        found = re.search(rf"session {re.escape(session_id)} .*; metrics label (\w+)", daemon.log())
        assert found is not None, daemon.log()[-2000:]
        session = found[1]
        assert session not in session_id
        await viewer.video_frames(5)

        def measured(series: dict[str, list[tuple[dict[str, str], float]]]) -> bool:
            rtt = _value(series, "peercam_viewer_rtt_seconds")
            bitrate = _value(series, "peercam_viewer_send_bitrate_bps")
            # RTT needs a receiver report echoing the camera's latest sender report
            # (both every 0.5-1.5 s in aiortc); the rate, two scrapes.
            return rtt is not None and bitrate is not None and bitrate > 0

        series = await _wait_for_metrics(daemon, measured, session, "RTT and send rate")
        rtt = _value(series, "peercam_viewer_rtt_seconds")
        assert rtt is not None and 0 <= rtt < 1.0  # loopback
        bitrate = _value(series, "peercam_viewer_send_bitrate_bps")
        assert bitrate is not None and 10_000 < bitrate < 20_000_000
        lost = _value(series, "peercam_viewer_packets_lost")
        fraction = _value(series, "peercam_viewer_fraction_lost")
        assert lost is not None and lost >= 0
        assert fraction is not None and 0 <= fraction <= 1
        kinds = {labels["kind"]: v for labels, v in series["peercam_viewer_sent_bytes"]}
        assert kinds.keys() == {"video", "audio"} and min(kinds.values()) > 0
        [(path, one)] = series["peercam_viewer_path"]
        assert one == 1
        assert (path["local_type"], path["remote_type"], path["protocol"]) == (
            "host",
            "host",
            "udp",
        )

        assert await viewer.hang_up() == 200
        await _wait_for_metrics(daemon, lambda s: not s, session, "the series' removal")
    assert daemon.metric("peercam_viewers") == 0


# --- the overlay -------------------------------------------------------------------

BROWSER_SIDE = {
    "codec": "H264",
    "audioCodec": "opus",
    "width": 640,
    "height": 480,
    "fps": 30,
    "bitrateKbps": 1510.4,
    "rttMs": 1.26,
    "packetsLost": 0,
    "jitterBufferMs": 21.3,
    "path": "host/udp",
}

# formatStats(s) as it was before the camera's side existed: the overlay test in
# test_browser.py and users read these lines.
BROWSER_LINES = [
    "codec      H264 + opus",
    "resolution 640x480",
    "fps        30",
    "bitrate    1510 kbit/s",
    "rtt        1.3 ms",
    "lost       0 packets",
    "jitter buf 21.3 ms",
    "path       host/udp",
]


@pytest.fixture
def page() -> Iterator[Page]:
    def serve(route: Route) -> None:
        if route.request.url.endswith("/stats.js"):
            body = (WEB / "stats.js").read_text()
            route.fulfill(status=200, content_type="text/javascript", body=body)
        else:
            route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>t")

    with chromium() as browser:
        page = browser.new_page()
        page.route(f"{ORIGIN}/**", serve)
        page.goto(f"{ORIGIN}/")
        page.evaluate("async () => { window.stats = await import('/stats.js'); }")
        yield page


def _format(page: Page, camera: object = None) -> list[str]:
    text: str = page.evaluate(
        "([s, camera]) => window.stats.formatStats(s, camera ?? undefined)",
        [BROWSER_SIDE, camera],
    )
    return text.split("\n")


@pytest.mark.timeout(60)
def test_overlay_shows_the_cameras_side_when_it_has_it(page: Page) -> None:
    assert _format(page) == BROWSER_LINES

    pair = SelectedPair(
        local=Candidate("host", "udp", "192.168.1.20", 50_000),
        remote=Candidate("prflx", "udp", "192.168.1.31", 61_234),
    )
    stats = ViewerStats(
        rtt=0.0021,
        packets_lost=3,
        fraction_lost=0.25,
        bytes_sent={"video": 10, "audio": 2},
        packets_sent={"video": 1, "audio": 1},
        send_bitrate=1_523_400,
        pair=pair,
    )
    message = {"type": "stats", **stats.to_json()}  # as the data channel sends it
    assert _format(page, message) == [
        *BROWSER_LINES,
        "camera sees",
        "  rtt      2.1 ms",
        "  lost     3 packets (25.0 %)",
        "  sending  1523 kbit/s",
        "  path     host/udp → prflx/udp 192.168.1.31:61234",
    ]
    shown = {"type": "stats", **stats.to_json(local_address=True)}
    assert _format(page, shown)[-1] == (
        "  path     host/udp 192.168.1.20:50000 → prflx/udp 192.168.1.31:61234"
    )
    v6 = ViewerStats(pair=SelectedPair(pair.local, Candidate("host", "udp", "fd00::31", 9)))
    assert _format(page, v6.to_json())[-1] == "  path     host/udp → host/udp [fd00::31]:9"

    # Nothing known yet on the camera's side: dashes, never NaN, null or undefined.
    unknown = _format(page, {"type": "stats", **ViewerStats().to_json()})
    assert unknown[len(BROWSER_LINES) :] == [
        "camera sees",
        f"  rtt      {DASH} ms",
        f"  lost     {DASH} packets",
        f"  sending  {DASH} kbit/s",
        f"  path     {DASH}",
    ]
