"""An update, start to end: check the bundle, install it beside the running release,
switch, and keep it only if the daemon comes up ready and passes the self-check
within the deadline; otherwise switch back. Runs as root, outside the daemon (it
restarts the daemon), one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from peercam.update.bundle import BundleRefused, verify_bundle
from peercam.update.releases import InstallFailed, Release, ReleaseStore
from peercam.update.self_check import SelfCheckFailed
from peercam.update.service_manager import ServiceManager, ServiceState
from peercam.update.status import UpdateStatus, read_status, write_status
from peercam.update.trial import Trial, end_trial, read_trial, start_trial

logger = logging.getLogger(__name__)

SelfCheck = Callable[[float], Awaitable[str]]  # timeout -> what it saw
# A kept release on trial: a daemon that systemd gives up on within this long after
# an update is taken for the update's fault (a camera runs for days between changes;
# a failure a week later is more likely the settings', the card's or the camera's).
TRIAL_SECONDS = 48 * 3600
# Longer than peercam.service's RestartSec=: a daemon systemd will restart has begun
# restarting by then.
RESTART_SETTLE = 6.0


class UpdateBusy(Exception):
    pass


@contextmanager
def _exclusive(root: Path, wait: bool) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UpdateBusy("another update is under way") from None
        yield
    finally:
        os.close(fd)


@dataclass
class Updater:
    store: ReleaseStore
    trusted: list[Ed25519PublicKey]
    service: ServiceManager
    self_check: SelfCheck
    deadline: float = 180.0
    board: tuple[str, str] | None = None
    poll_interval: float = 0.5
    # Going back to an older release only when root asks on the camera: a bundle ever
    # signed would otherwise bring back whatever bug a newer release fixed.
    allow_older: bool = False

    @property
    def status_dir(self) -> Path:
        return self.store.root

    def last_status(self) -> UpdateStatus | None:
        return read_status(self.status_dir)

    async def apply(self, bundle_path: Path) -> UpdateStatus:
        """Install the bundle and keep it or roll back; the outcome is also written
        where the page reads it. Raises UpdateBusy when another update runs."""
        with _exclusive(self.store.root, wait=False):
            return await self._apply(bundle_path)

    async def _apply(self, bundle_path: Path) -> UpdateStatus:
        running = self.store.current()
        floor = None if self.allow_older else running.version()
        try:
            bundle = await asyncio.to_thread(
                verify_bundle, bundle_path, self.trusted, board=self.board, not_older_than=floor
            )
        except BundleRefused as error:
            status = UpdateStatus("refused", "", previous=str(running.path), reason=str(error))
            status = status.ended("refused")
            await asyncio.to_thread(write_status, self.status_dir, status)
            return status
        version = bundle.manifest.version
        status = UpdateStatus("installing", version, previous=str(running.path))
        await asyncio.to_thread(write_status, self.status_dir, status)
        began = time.monotonic()
        try:
            release = await asyncio.to_thread(self.store.install, bundle)
        except (InstallFailed, BundleRefused, OSError) as error:
            status = status.ended("failed", reason=str(error))
            await asyncio.to_thread(write_status, self.status_dir, status)
            return status
        if release.path == running.path:
            status = status.ended("kept", reason="this release is already running")
            await asyncio.to_thread(write_status, self.status_dir, status)
            return status
        status = replace(
            status,
            state="switched",
            release=str(release.path),
            install_seconds=round(time.monotonic() - began, 1),
        )
        # Written before the switch: a power cut after it finds "switched" at the next
        # boot and goes back to the release that was proven (recover()).
        await asyncio.to_thread(write_status, self.status_dir, status)
        switched = time.monotonic()
        self.store.switch_to(release)
        logger.info("switched to %s; waiting for it to come up", release.name)
        try:
            problem = await self._comes_up()
        except BaseException as error:
            # Anything else (the updater stopped, systemctl hung, the self-check broke
            # in a way of its own): the release is not proven, so it does not stay.
            self.store.switch_to(running)
            self.store.discard(release)
            reason = f"the update was interrupted ({type(error).__name__}: {error})"
            status = status.ended("rolled_back", reason=reason)
            write_status(self.status_dir, status)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.service.restart)
            raise
        if problem is None:
            status = status.ended("kept", switch_seconds=round(time.monotonic() - switched, 1))
            await asyncio.to_thread(write_status, self.status_dir, status)
            trial = Trial(version, str(release.path), str(running.path), time.time())
            await asyncio.to_thread(start_trial, self.status_dir, trial)
            await asyncio.to_thread(self.store.prune)
            logger.info("update to %s kept", version)
            return status
        logger.error("update to %s failed: %s; going back to %s", version, problem, running.name)
        self.store.switch_to(running)
        self.store.discard(release)
        back = await self._comes_up()
        reason = problem if back is None else f"{problem}; the release before it too: {back}"
        status = status.ended(
            "rolled_back", reason=reason, switch_seconds=round(time.monotonic() - switched, 1)
        )
        await asyncio.to_thread(write_status, self.status_dir, status)
        return status

    async def _comes_up(self) -> str | None:
        """Restart the service; None once it is ready and answers the self-check,
        else what went wrong."""
        before = await asyncio.to_thread(self.service.state)
        await asyncio.to_thread(self.service.restart)
        give_up = time.monotonic() + self.deadline
        started: ServiceState | None = None
        while True:
            now = await asyncio.to_thread(self.service.state)
            if now.invocation and now.invocation != before.invocation:
                if started is None:
                    started = now
                elif now.invocation != started.invocation or now.restarts > started.restarts:
                    return "the new daemon exited and was restarted"
            if started is not None and now.failing:
                code = "" if now.exit_status is None else f" (status {now.exit_status})"
                return f"the new daemon exited at start{code}"
            if started is not None and now.ready:
                break
            if time.monotonic() > give_up:
                return f"the new daemon was not ready within {self.deadline:.0f} s"
            await asyncio.sleep(self.poll_interval)
        try:
            seen = await self.self_check(max(5.0, give_up - time.monotonic()))
        except SelfCheckFailed as error:
            return f"the self-check failed: {error}"
        except Exception as error:
            return f"the self-check failed: {type(error).__name__}: {error}"
        after = await asyncio.to_thread(self.service.state)
        if not after.ready or after.invocation != started.invocation:
            return "the new daemon stopped during the self-check"
        logger.info("self-check passed: a viewer got %s", seen)
        return None

    def after_failure(
        self, now: float | None = None, settle: float = RESTART_SETTLE
    ) -> UpdateStatus | None:
        """systemd gave up on the daemon (peercam.service's OnFailure=). A release an
        update kept less than TRIAL_SECONDS ago passed its self-check but has not
        been proven for long: the one before it comes back and the daemon is started
        on it. None when that is not the case (the failure is then the daemon's or
        its settings', and another release would not help). Waits for an update
        under way: it may end without restarting the daemon."""
        with _exclusive(self.store.root, wait=True):
            return self._after_failure(time.time() if now is None else now, settle)

    def _after_failure(self, now: float, settle: float) -> UpdateStatus | None:
        trial = read_trial(self.status_dir)
        if trial is None:
            return None
        # A clock set back (a Pi has no clock of its own before the network's) keeps
        # the trial on; only time really past the trial ends it.
        kept_for = now - trial.kept_at
        if kept_for > TRIAL_SECONDS:
            return None
        # systemd 254 and later call OnFailure= before every automatic restart too:
        # only a daemon systemd stopped restarting counts, i.e. still failed once a
        # restart would have begun. (Result= cannot tell: systemd 252 leaves it at
        # exit-code when the start limit stops the restarts, as seen under qemu.)
        failed = self.service.state()
        if failed.active != "failed":
            return None
        time.sleep(settle)
        still = self.service.state()
        if still.active != "failed" or still.invocation != failed.invocation:
            return None
        current, previous = self.store.current(), self.store.previous()
        if current.path != Path(trial.release) or previous is None:
            return None
        if previous.path != Path(trial.previous):
            return None
        self.store.switch_to(previous)
        self.store.discard(current)
        end_trial(self.status_dir)
        reason = (
            f"the daemon kept failing {max(kept_for, 0) / 3600:.1f} h after the update was"
            " kept; the release before it is back"
        )
        status = UpdateStatus(
            "rolled_back", trial.version, trial.previous, trial.release, reason, started=now
        ).ended("rolled_back")
        write_status(self.status_dir, status)
        logger.error("update to %s: %s", trial.version, reason)
        self.service.restart()
        return status

    def recover(self) -> UpdateStatus | None:
        """At boot, before the daemon: finish an update a power cut interrupted. A
        release switched to but never confirmed is switched away from (the one before
        was proven); a half-installed one is removed. None when there was nothing."""
        try:
            with _exclusive(self.store.root, wait=False):
                return self._recover()
        except UpdateBusy:
            return None  # an update is running: it restarts the daemon itself

    def _recover(self) -> UpdateStatus | None:
        status = read_status(self.status_dir)
        if status is None or status.state not in ("installing", "switched"):
            return None
        if status.state == "switched" and self.store.current().path == Path(status.release):
            self.store.switch_to(Release(Path(status.previous)))
            self.store.discard(Release(Path(status.release)))
            status = status.ended(
                "rolled_back",
                reason="the power went off before the new release was confirmed",
            )
        elif status.state == "switched":
            status = status.ended(
                "rolled_back", reason="the power went off during the switch; nothing changed"
            )
        else:
            status = status.ended(
                "failed", reason="the power went off while installing; nothing changed"
            )
        self.store.prune()
        write_status(self.status_dir, status)
        return status
