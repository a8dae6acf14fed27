"""Which quality layer one viewer's path carries, from what its RTCP says.

Down fast, up carefully, as SFUs do: a viewer whose path cannot carry its layer
stalls, freezes and asks for keyframes until it is moved. So a move down follows
loss (heavy once, or moderate in two report windows running), or an estimate (REMB)
that fell well below the layer's rate and stayed there for a second. An estimate that
is rising says nothing against the layer: a browser starts it low (300 kbit/s) and
raises it a few per cent a second while all is well; only one that went down (the
browser saw its path's queue grow) counts.

Up: a browser's estimate grows only to about 1.5 times what it receives, and only
slowly near a rate where its path's queue grew before, so a viewer on the low layer
would hardly ever report enough for the main one. While it may move up, the chooser
has its sender probe: redundant copies of its packets (RTX, `padding`), ramped over
PROBE_RAMP seconds from nothing to what the layer above needs (with margin). A probe
ends at the first sign that the path is full: the round trip grows (its queue fills),
packets are asked for again, lost, or the estimate falls; then it rests. One that
holds the full rate for UP_HOLD seconds moves the viewer up (as does an estimate that
stood above the layer above by itself). Rests after a failed probe grow, up to
MAX_PROBE_REST, so that a path at its limit is not probed too often; after a move up
that fails (a move down soon after), the next one waits longer.

Receiver reports come with each NACK (RFC 4585 compound packets), many a second on a
lossy path, each over its own short interval: they are taken together over
REPORT_WINDOW (the mean share lost, the least round trip). And when even the lowest
layer is more than the path carries, the viewer's video is held to a budget (whole
groups of pictures, fanout/frame_budget.py) that follows the path's signs, not its
estimate: the estimate follows what is sent, so a video held back would be estimated
lower and held lower still.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from peercam.media import Layer
from peercam.rtc.rtcp_watch import LossReport, PathEstimate, PathEvent

# Moving down.
DOWN_BELOW = 0.9  # an estimate that fell under 90 % of the layer's rate...
DOWN_HOLD = 1.0  # ...for this long
DOWN_AT_ONCE = 0.5  # or under half of it
FELL = 0.95  # an estimate this far under the highest since the last move fell
LOSS_DOWN = 0.10  # a report window with this share lost, twice running
LOSS_AT_ONCE = 0.25  # or once with this share
LOSS_CLEAN = 0.02  # more than this lost is a sign the path is full
REPORT_WINDOW = 0.9  # seconds of receiver reports taken together
SETTLE = 3.0  # after a move, seconds before the path's queue says anything of the new layer
# Moving up.
UP_ABOVE = 1.15  # the layer above's rate with this margin...
UP_HOLD = 2.0  # ...estimated, or probed through, for this long
REST = 6.0  # after a move down, no probe or move up for this long at first...
MAX_REST = 64.0  # ...doubling after each move up that failed
FAILED_UP = 10.0  # a move down this soon after a move up: it failed
PROBE_RAMP = 5.0  # seconds from no probe to the full rate
PROBE_QUEUE = 0.03  # the round trip this much over the least seen: the path is full
PROBE_NACKS = 2  # more packets than this asked for again: the path is full (one is noise)
LEAST_RTT_SECONDS = 60.0  # the least round trip: over this long (a route may change)
CEILING_APPROACH = 0.9  # a probe after one that failed: in a second to this share of
CEILING_GROWTH = 0.2  # its rate, then on by this share of it a second
PROBE_REST = 4.0  # after a probe that did not go through, at first...
MAX_PROBE_REST = 8.0  # ...doubling up to this
# Held to a budget: at first this share of the estimate that showed it, then cut on
# signs of a full path and grown without (each report window), never under a floor
# (a share of the lowest layer's rate).
BUDGET_SHARE = 0.80
BUDGET_CUT = 0.85
BUDGET_GROWTH = 1.04
BUDGET_FLOOR = 0.25
BUDGET_QUEUE_HIGH = 0.10  # seconds of queue that cut it
BUDGET_QUEUE_LOW = 0.03  # and under which it grows
BUDGET_NACKS = 3  # packets asked for again in a report window that cut it
# Answers to NACKs: at most this share of the estimate, or less when held to a budget.
REPAIR_SHARE = 0.25
REPAIR_SHARE_HELD = 0.10


@dataclass(frozen=True)
class LayerRate:
    layer: Layer
    bitrate: int  # bits per second the layer is encoded at


@dataclass(frozen=True)
class LayerChoice:
    layer: Layer
    reason: str  # for the viewer's stats overlay and the log


def _kbit(bitrate: float) -> str:
    return f"{bitrate / 1000:.0f} kbit/s"


class LayerChooser:
    """One viewer's. `layers` best first; the viewer starts on the first."""

    def __init__(self, layers: tuple[LayerRate, ...], start: float) -> None:
        if not layers:
            raise ValueError("a chooser needs at least one layer")
        self.layers = layers
        self.index = 0
        self.reason = "start: the main layer until the path says otherwise"
        self.estimate: int | None = None
        self._peak = 0  # the highest estimate since the last move or probe
        self._below_since: float | None = None
        self._above_since: float | None = None
        self._lossy_reports = 0
        self._rest = REST
        self._quiet_until = start  # no probe, no move up before
        self._last_up: float | None = None
        self._probe_from: float | None = None
        self._probe_rest = PROBE_REST
        # Bits per second the viewer's video is held to, while its path carries less
        # than even the lowest layer (None otherwise).
        self._budget: float | None = None
        self.least_rtt: float | None = None
        self.rtt: float | None = None  # the latest
        self._nacked = 0  # packets the viewer asked for again since its last report
        self._overloaded_reports = 0
        self._window: list[LossReport] = []
        self._window_from: float | None = None
        self._probed_in_window = False
        self._full_since: float | None = None  # a probe has filled the layer above since
        self._probe_total: float | None = None  # the rate the probe has the viewer sent
        self._ceiling: float | None = None  # the rate at which the last probe found it full
        self._clear_at_full = 0  # round trips reported clear since the probe's full rate
        self._probe_nacked = 0  # packets asked for again during the probe
        self._rtts: deque[tuple[float, float]] = deque()  # (when, round trip), recent
        self._settled_at = start  # what a move leaves in the path's queue is gone by then

    @property
    def layer(self) -> Layer:
        return self.layers[self.index].layer

    def observe(self, event: PathEvent) -> LayerChoice | None:
        """The layer to move to, if `event` decides a move."""
        if self._last_up is not None and event.at - self._last_up >= FAILED_UP:
            self._last_up = None
            self._rest = REST  # the move up held: the next rest starts short again
        if isinstance(event, PathEstimate):
            return self._estimate(event)
        if isinstance(event, LossReport):
            return self._loss(event)
        if event.kind == "nack":
            self._nacked += event.packets
            if self._probe_from is not None:
                self._probe_nacked += event.packets
                if self._probe_nacked > PROBE_NACKS:
                    self._probe_ended(event.at, failed=True)
        return None

    def padding(self, now: float, possible: bool = True) -> int:
        """Bits per second of probe the sender should add now (0: none). `possible`:
        whether the sender can send one (no RTX negotiated, or no pair selected yet: it
        cannot, and a probe it never sent must not be taken for one that went through)."""
        if not possible and self._probe_from is not None:
            self._probe_ended(now, failed=False)
        if not possible or self.index == 0 or self.estimate is None or now < self._quiet_until:
            return 0
        if self._budget is not None:
            return 0  # the path does not carry even this layer
        if self._probe_from is None:
            self._probe_from = now
            self._probe_nacked = 0
            self._peak = self.estimate
            self._probed_in_window = True
        elif now - self._probe_from > PROBE_RAMP + 2 * UP_HOLD:
            self._probe_ended(now, failed=True)  # signs of a full path go unreported?
            return 0
        current = self.layers[self.index].bitrate
        target = self.layers[self.index - 1].bitrate * UP_ABOVE
        total = self._probe_rate(now - self._probe_from, current, target)
        self._probe_total = total
        if total < target:
            self._full_since = None
            self._clear_at_full = 0
        elif self._full_since is None:
            self._full_since = now  # as much as the layer above needs: if it goes through...
        return max(0, int(total - current))

    def _probe_rate(self, elapsed: float, current: float, target: float) -> float:
        """What the viewer is sent (its layer and the probe) `elapsed` into a probe:
        from its layer to `target` in PROBE_RAMP seconds; or, where an earlier probe
        found the path full at some rate (its ceiling), quickly to just under that
        and on from there by a share of it a second, so that a path still as full is
        overfilled by little before the probe ends, and one that has room again is
        found soon enough."""
        ceiling = self._ceiling
        if ceiling is None or ceiling <= current:
            return current + (target - current) * min(1.0, elapsed / PROBE_RAMP)
        below = current + (CEILING_APPROACH * ceiling - current) * min(1.0, elapsed)
        beyond = CEILING_APPROACH * ceiling + CEILING_GROWTH * ceiling * max(0.0, elapsed - 1)
        return min(target, below if elapsed < 1 else beyond)

    def _probe_went_through(self, at: float) -> LayerChoice | None:
        """...for UP_HOLD with no sign of a queue (those end the probe), the viewer
        moves up: its estimate would follow only at a few per cent a second."""
        if self._full_since is None or at - self._full_since < UP_HOLD:
            return None
        if self._clear_at_full < 2:
            return None  # no word from the viewer that the full rate left no queue
        higher = self.layers[self.index - 1].bitrate
        return self._up(at, f"a probe at the layer above's {_kbit(higher)} and more went through")

    def budget(self) -> int | None:
        """Bits per second to hold the viewer's video to, when its path carries less
        than even the lowest layer (None: no limit)."""
        return None if self._budget is None else int(self._budget)

    def repair_budget(self) -> int | None:
        """Bits per second of answers to NACKs the path has room for (None: no limit
        known): a share of its estimate, less while the path is already full."""
        if self.estimate is None:
            return None
        constrained = self._budget is not None
        return int(self.estimate * (REPAIR_SHARE_HELD if constrained else REPAIR_SHARE))

    def _probe_ended(self, at: float, failed: bool) -> None:
        if failed and self._probe_from is not None and self._probe_total is not None:
            self._ceiling = self._probe_total  # the path was full at this rate
        self._probe_from = self._full_since = self._probe_total = None
        self._clear_at_full = 0
        self._above_since = None
        self._quiet_until = at + self._probe_rest
        if failed:
            self._probe_rest = min(self._probe_rest * 2, MAX_PROBE_REST)

    def _estimate(self, event: PathEstimate) -> LayerChoice | None:
        self.estimate = event.bitrate
        self._peak = max(self._peak, event.bitrate)
        fell = event.bitrate < self._peak * FELL
        if fell and self._probe_from is not None:
            self._probe_ended(event.at, failed=True)
        rate = self.layers[self.index].bitrate
        can_go_down = self.index < len(self.layers) - 1
        if not can_go_down or event.bitrate >= rate * DOWN_BELOW:
            self._below_since = None
        elif self._below_since is not None or fell:
            if self._below_since is None:
                self._below_since = event.at
            if event.bitrate < rate * DOWN_AT_ONCE or event.at - self._below_since >= DOWN_HOLD:
                return self._down(
                    event.at, f"path estimate fell to {_kbit(event.bitrate)} < {_kbit(rate)}"
                )
        if self.index == 0:
            return None
        went_through = self._probe_went_through(event.at)
        if went_through is not None:
            return went_through
        higher = self.layers[self.index - 1].bitrate
        if event.bitrate < higher * UP_ABOVE or event.at < self._quiet_until:
            self._above_since = None
            return None
        if self._above_since is None:
            self._above_since = event.at
        if event.at - self._above_since < UP_HOLD:
            return None
        return self._up(
            event.at, f"path estimate {_kbit(event.bitrate)} >= layer above {_kbit(higher)}"
        )

    def _adjust_budget(self, event: LossReport, probed: bool) -> None:
        """Hold the viewer's video to a budget when even the lowest layer overloads
        its path (two reports running of a growing queue — the round trip over the
        least seen —, loss or packets asked for again). The budget follows the path,
        not the estimate, which follows what is sent (a video held back is estimated
        lower, and would be held lower still): less on those signs, a little more
        each report without; none once the whole layer fits."""
        nacked, self._nacked = self._nacked, 0
        queue = None if event.rtt is None or self.least_rtt is None else event.rtt - self.least_rtt
        overloaded = (
            event.fraction_lost >= LOSS_CLEAN
            or nacked > BUDGET_NACKS
            or (queue is not None and queue > BUDGET_QUEUE_HIGH)
        )
        self._overloaded_reports = self._overloaded_reports + 1 if overloaded else 0
        lowest = self.layers[-1].bitrate
        if self._budget is None:
            # Not on what a move or a probe of this viewer's own left in the queue.
            calm = event.at >= self._settled_at and not probed
            if not calm:
                self._overloaded_reports = 0
            elif self.index == len(self.layers) - 1 and self._overloaded_reports >= 2:
                start = min(self.estimate or lowest, lowest) * BUDGET_SHARE
                self._budget = max(start, lowest * BUDGET_FLOOR)
        elif overloaded:
            self._budget = max(self._budget * BUDGET_CUT, lowest * BUDGET_FLOOR)
        elif queue is None or queue < BUDGET_QUEUE_LOW:
            self._budget *= BUDGET_GROWTH
            if self._budget >= lowest:
                self._budget = None

    def _loss(self, report: LossReport) -> LayerChoice | None:
        """A browser sends a receiver report with each NACK (RFC 4585 compound
        packets), many a second on a lossy path, each over its own short interval;
        they are taken together over REPORT_WINDOW: the mean share lost and the least
        round trip (the queue every packet of the window met)."""
        if report.rtt is not None:
            self.rtt = report.rtt
            least = self.least_rtt = self._least_rtt(report.at, report.rtt)
            if self._probe_from is not None and report.rtt > least + PROBE_QUEUE:
                self._probe_ended(report.at, failed=True)
            elif self._full_since is not None and report.at > self._full_since + 1.0:
                self._clear_at_full += 1
        if self._window_from is None:
            self._window_from = report.at
        self._window.append(report)
        if report.at - self._window_from < REPORT_WINDOW:
            return None
        window, self._window, self._window_from = self._window, [], None
        # A probe that ran in this window (or runs on) had its own share of the queue.
        probed = self._probed_in_window or self._probe_from is not None
        self._probed_in_window = self._probe_from is not None
        lost = sum(r.fraction_lost for r in window) / len(window)
        rtts = [r.rtt for r in window if r.rtt is not None]
        event = LossReport(lost, window[-1].jitter, min(rtts) if rtts else None, report.at)
        self._adjust_budget(event, probed)
        if event.fraction_lost >= LOSS_CLEAN:
            self._above_since = None
            if self._probe_from is not None:
                self._probe_ended(event.at, failed=True)
        if event.fraction_lost < LOSS_DOWN:
            self._lossy_reports = 0
            return self._probe_went_through(event.at) if self.index > 0 else None
        self._lossy_reports += 1
        heavy = event.fraction_lost >= LOSS_AT_ONCE
        if (self._lossy_reports < 2 and not heavy) or self.index == len(self.layers) - 1:
            return None
        return self._down(event.at, f"{event.fraction_lost:.0%} of packets lost")

    def _least_rtt(self, at: float, rtt: float) -> float:
        """The least round trip of the last LEAST_RTT_SECONDS, `rtt` at `at` included:
        over a whole session, a route that got longer would read as a queue forever."""
        samples = self._rtts  # minima, oldest first: a smaller later one retires the rest
        while samples and samples[-1][1] >= rtt:
            samples.pop()
        samples.append((at, rtt))
        while at - samples[0][0] > LEAST_RTT_SECONDS:
            samples.popleft()
        return samples[0][1]

    def _down(self, at: float, reason: str) -> LayerChoice:
        if self._last_up is not None:  # the move up failed: rest longer this time
            self._rest = min(self._rest * 2, MAX_REST)
            self._last_up = None
        self.index += 1
        self._moved(at, at + self._rest)
        return self._chosen(reason)

    def _up(self, at: float, reason: str) -> LayerChoice:
        self.index -= 1
        self._probe_rest = PROBE_REST
        self._ceiling = None
        self._last_up = at
        self._moved(at, at)
        return self._chosen(reason)

    def _moved(self, at: float, quiet_until: float) -> None:
        self._quiet_until = quiet_until
        self._settled_at = at + SETTLE
        self._below_since = self._above_since = self._probe_from = self._full_since = None
        self._lossy_reports = 0
        self._peak = 0
        self._budget = None

    def _chosen(self, reason: str) -> LayerChoice:
        self.reason = reason
        return LayerChoice(self.layer, reason)


@dataclass(frozen=True)
class LayerStatus:
    """Where one viewer stands, for its stats overlay and /metrics."""

    layer: Layer  # what it receives now
    target: Layer  # what it is being moved to (the same when not moving)
    reason: str
    estimate: int | None  # bits per second, the viewer's latest path estimate
    probe: int  # bits per second of probe being sent
    limit: int | None = None  # bits per second the video is held to, if less than its layer
    # Seconds, the latest, timed against peercam's own record of its sender reports
    # (rtcp_watch.round_trip): unlike aiortc's figure, never off by the wall clock.
    rtt: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "limitBps": self.limit,
            "layer": self.layer,
            "target": self.target,
            "reason": self.reason,
            "estimateBps": self.estimate,
            "probeBps": self.probe,
        }
