"""Headless Chromium (Debian's package) driven by Playwright, as the real viewer."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.access import TEST_PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # The daemon's self-signed certificate, as a user accepts it on the warning page.
    "--ignore-certificate-errors",
]


@contextmanager
def chromium(
    extra_flags: list[str] | None = None, executable: str = CHROMIUM
) -> Iterator[BrowserContext]:
    with chromiums([executable], extra_flags) as (context,):
        yield context


@contextmanager
def chromiums(
    executables: list[str], extra_flags: list[str] | None = None
) -> Iterator[list[BrowserContext]]:
    """A browser per executable (each a wrapper that may start it in a network
    namespace of its own), with profiles of their own, under one Playwright."""
    profiles = [tempfile.mkdtemp(prefix="peercam-chromium-") for _ in executables]
    try:
        with sync_playwright() as playwright, ExitStack() as contexts:
            opened = []
            for profile, executable in zip(profiles, executables, strict=True):
                context = playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=executable,
                    headless=True,
                    args=FLAGS + (extra_flags or []),
                )
                contexts.callback(context.close)
                opened.append(context)
            yield opened
    finally:
        for profile in profiles:
            shutil.rmtree(profile, ignore_errors=True)


def open_page(
    page: Page,
    base: str,
    path: str = "/",
    user: str = "admin",
    password: str = TEST_PASSWORD,
) -> None:
    """Go to `path`, logging in through the login page the way a user does."""
    _record_troubles(page)
    for attempt in range(3):
        try:
            page.goto(base + path)
            break
        except PlaywrightError as error:
            # Chromium aborts a navigation when it sees interfaces change, as they do
            # while a test sets up its network namespaces; a user would press reload.
            if "ERR_NETWORK_CHANGED" not in str(error) or attempt == 2:
                raise
            time.sleep(0.5)
    if urlsplit(page.url).path == "/login":
        page.fill("#user", user)
        page.fill("#password", password)
        with page.expect_navigation():
            page.click("#submit")
        if urlsplit(page.url).path == "/login":
            shown = page.text_content("#error")
            raise AssertionError(f"login as {user} failed: {shown}")


# What each page reported going wrong (console errors and warnings, uncaught errors,
# failed requests), told when a wait on it fails.
_TROUBLES: WeakKeyDictionary[Page, list[str]] = WeakKeyDictionary()


def _record_troubles(page: Page) -> None:
    if page in _TROUBLES:
        return
    troubles = _TROUBLES[page] = []

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            troubles.append(f"{message.type}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: troubles.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda r: troubles.append(f"request failed: {r.url} {r.failure}"))


def troubles(page: Page) -> str:
    """What the page reported going wrong, and where it is, for a failure message."""
    try:
        status = page.evaluate(
            "(() => { const s = document.getElementById('status');"
            " return s ? `${s.dataset.state}: ${s.innerText}` : null; })()"
        )
    except PlaywrightError as error:
        status = f"(not read: {error})"
    said = _TROUBLES.get(page, [])[-20:]
    return f"page {page.url}, status {status}; it reported: {said or 'nothing'}"


def page_stats(page: Page) -> dict[str, Any]:
    """The page's own getStats() reading (web/stats.js), fresh; empty while the page's
    script has not yet started its viewer."""
    result: dict[str, Any] = page.evaluate(
        "async () => window.peercam && window.peercam.stats"
        " ? await window.peercam.stats.read() : {}"
    )
    return result


def wait_for_stats(
    page: Page, condition: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    """Poll the page's stats until `condition(stats)` holds; fail with the last reading.

    Polled from Python because Playwright's wait_for_function does not await a
    Promise: an async predicate would count as true at once.
    """
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = page_stats(page)
        if stats and condition(stats):
            return stats
        time.sleep(0.2)
    raise AssertionError(
        f"stats never met the condition within {timeout} s; last: {stats}; {troubles(page)}"
    )


def wait_js(page: Page, expression: str, timeout: float = 30_000) -> None:
    """Wait until `expression` is true in the page, polled from here.

    Playwright's wait_for_function evaluates its string with eval() inside the page,
    which the page's Content-Security-Policy (no unsafe-eval) rightly forbids;
    page.evaluate runs through DevTools and is not subject to it.
    """
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not true within {timeout / 1000:.0f} s: {expression}; {troubles(page)}"
            )
        time.sleep(0.1)


# The page's selected ICE pair as getStats() gives it: candidate types and protocol
# (a test that a scenario plays over the path it leaves open), and frames decoded.
SELECTED_PAIR = """
async () => {
  const session = window.peercam && window.peercam.session;
  if (!session) return null;
  const byId = new Map();
  (await session.pc.getStats()).forEach((s) => byId.set(s.id, s));
  const stats = [...byId.values()];
  const transport = stats.find((s) => s.type === 'transport');
  const pair = transport && byId.get(transport.selectedCandidatePairId);
  const video = stats.find((s) => s.type === 'inbound-rtp' && s.kind === 'video');
  if (!pair) return { state: session.pc.connectionState, frames: video?.framesDecoded ?? 0 };
  const local = byId.get(pair.localCandidateId);
  const remote = byId.get(pair.remoteCandidateId);
  return {
    state: session.pc.connectionState,
    local: local.candidateType, remote: remote.candidateType,
    remoteAddress: remote.address, remotePort: remote.port,
    protocol: local.protocol, relayProtocol: local.relayProtocol ?? null,
    frames: video?.framesDecoded ?? 0,
  };
}
"""
