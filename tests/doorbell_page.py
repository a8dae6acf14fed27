"""Steps a household takes on the viewer page, shared by the remote-access tests."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page

from tests.browser import wait_js

PLAYER = "document.getElementById('clip-player')"


def answer_and_open_door(page: Page, ring: Callable[[], object]) -> None:
    """`ring()` rings the bell; the page answers, opens the door and hangs up."""
    ring()
    page.wait_for_selector("#ring", state="visible", timeout=15_000)
    page.click("#answer")
    page.wait_for_selector("#hangup", state="visible", timeout=15_000)
    page.click("#open-door")
    wait_js(page, "document.getElementById('notice').textContent.includes('Door opened')")
    page.click("#hangup")


def play_clip_from_its_bytes(page: Page, clip_id: str) -> None:
    """Open the clip list and play `clip_id` from bytes the page holds (blob:)."""
    page.click("#toggle-clips")
    page.wait_for_selector(f"li.clip[data-id='{clip_id}']", timeout=15_000)
    page.click(f"li.clip[data-id='{clip_id}'] button.play")
    wait_js(page, f"{PLAYER}.src.startsWith('blob:') && {PLAYER}.readyState >= 2", 15_000)
