"""The push channel's commands: refusals are clear and change nothing; one talker at
a time; rings from the API and the command line reach every open channel."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.access import basic
from tests.alsa_fixture import fake_sound_card
from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess
from tests.whep_viewer import WhepViewer

CONFIG = """
[camera]
source = "test"
size = "320x240"
[talkback]
device = "peercam_speaker"
"""


async def next_of(socket: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await socket.receive_json(timeout=10)
        if message["type"] == kind:
            return message


async def command(socket: aiohttp.ClientWebSocketResponse, payload: object) -> dict[str, Any]:
    if isinstance(payload, str):
        await socket.send_str(payload)
    else:
        await socket.send_json(payload)
    return await next_of(socket, "result")


def session_id(viewer: WhepViewer) -> str:
    assert viewer.answer is not None
    return viewer.answer.location.rsplit("/", 1)[1]


def start(start_daemon: StartDaemon, tmp_path: Path) -> DaemonProcess:
    card = fake_sound_card(tmp_path / "card", seconds=2)
    return start_daemon(CONFIG, env=card.env)


async def test_bad_commands_are_refused_with_a_reason(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start(start_daemon, tmp_path)
    async with (
        WhepViewer(daemon.access) as viewer,
        daemon.access.session() as http,
        http.ws_connect(daemon.base + "/events") as socket,
    ):
        state = await next_of(socket, "state")
        assert state["call"] == "idle"
        me = session_id(viewer)
        cases = [
            ("{not json", "not JSON"),
            ([1, 2], "a command is a JSON object"),
            ({"cmd": "launch", "session": me}, "unknown command 'launch'"),
            ({"cmd": "answer"}, "no such session"),
            ({"cmd": "answer", "session": "forged-session-id"}, "no such session"),
            ({"cmd": "answer", "session": me}, "nothing is ringing"),
            ({"cmd": "hangup", "session": me}, "you are not in a call"),
            ({"cmd": "untalk", "session": me}, "you are not talking"),
            ({"cmd": "open-door", "session": me}, "no door relay is configured"),
        ]
        for payload, reason in cases:
            result = await command(socket, payload)
            assert result["ok"] is False and reason in result["reason"], (payload, result)
        # Nothing was disturbed: the viewer still streams, the bell is still idle.
        await viewer.video_frames(10)
        assert (await command(socket, {"cmd": "decline", "session": me}))["reason"] == (
            "nothing is ringing"
        )


async def test_one_talker_at_a_time(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = start(start_daemon, tmp_path)
    async with (
        WhepViewer(daemon.access) as first,
        WhepViewer(daemon.access) as second,
        daemon.access.session() as http,
        http.ws_connect(daemon.base + "/events") as socket,
    ):
        a, b = session_id(first), session_id(second)
        await first.video_frames(5)
        await second.video_frames(5)  # connected: its going away is seen at once
        assert (await command(socket, {"cmd": "talk", "session": a}))["ok"] is True
        refused = await command(socket, {"cmd": "talk", "session": b})
        assert refused["ok"] is False
        assert refused["reason"] == "admin is talking; wait for them to stop"
        assert (await command(socket, {"cmd": "untalk", "session": b}))["ok"] is False
        assert (await command(socket, {"cmd": "untalk", "session": a}))["ok"] is True
        assert (await command(socket, {"cmd": "talk", "session": b}))["ok"] is True
        # The talker leaves without a word (no DELETE): the floor is freed for the others.
        await second.pc.close()
        # Until the daemon sees b gone, a is refused because b holds the floor.
        for _ in range(50):
            result = await command(socket, {"cmd": "talk", "session": a})
            if result["ok"]:
                break
            assert "admin is talking" in result["reason"]
            await asyncio.sleep(0.2)
        assert result["ok"] is True
        async with http.get(daemon.base + "/api/state") as response:
            assert (await response.json())["talker"] == "admin"


async def test_viewers_are_told_who_talks_by_name_not_address_or_session(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start(start_daemon, tmp_path)
    passwd = [sys.executable, "-m", "peercam", "passwd", "--state-dir", str(daemon.state_dir)]
    await asyncio.to_thread(
        subprocess.run, [*passwd, "--user", "family", "--stdin"], input="family-password\n",
        text=True, check=True, timeout=30,
    )  # fmt: skip
    family = daemon.access.with_headers(basic("family", "family-password"))
    async with (
        WhepViewer(daemon.access) as admin_page,
        daemon.access.session() as admin_http,
        admin_http.ws_connect(daemon.base + "/events") as admin,
        family.session() as family_http,
        family_http.ws_connect(daemon.base + "/events") as viewer,
    ):
        me = session_id(admin_page)
        await admin_page.video_frames(5)
        await next_of(viewer, "state")
        assert (await command(admin, {"cmd": "talk", "session": me}))["ok"] is True
        told = [await next_of(viewer, "talker")]
        async with admin_http.post(daemon.base + "/api/ring") as response:
            assert response.status == 202
        assert (await command(admin, {"cmd": "answer", "session": me}))["ok"] is True
        told.append(await next_of(viewer, "answered"))
        async with family_http.ws_connect(daemon.base + "/events") as again:
            told.append(await next_of(again, "state"))
        async with family_http.get(daemon.base + "/api/state") as response:
            told.append(await response.json())
    assert told[0]["talker"] == "admin" and told[1]["by"] == "admin", told
    assert told[2]["talker"] == told[3]["talker"] == "admin", told
    for message in told:
        text = json.dumps(message)
        assert "127.0.0.1" not in text and me[:6] not in text, message
    # The owner's log still says which session and address it was.
    assert f"talk from admin (session {me[:6]} from 127.0.0.1): done" in daemon.log()


async def test_ring_from_the_api_and_the_command_line(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start(start_daemon, tmp_path)
    async with (
        daemon.access.session() as http,
        http.ws_connect(daemon.base + "/events") as first,
        http.ws_connect(daemon.base + "/events") as second,
    ):
        async with http.post(daemon.base + "/api/ring") as response:
            assert response.status == 202
            assert (await response.json())["call"] == "ringing"
        for socket in (first, second):
            ring = await next_of(socket, "ring")
            assert ring["origin"] == "api"
        state = ["--state-dir", str(daemon.state_dir)]
        made = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "peercam", "token", *state, "create", "bell", "--role", "admin"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        token = made.stdout.strip()
        # The command line trusts the daemon's own certificate from the state directory.
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "peercam", "ring", "--url", daemon.base, *state],
            capture_output=True, text=True, timeout=30, env={**os.environ, "PEERCAM_TOKEN": token},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "the doorbell is ringing" in result.stdout
        assert (await next_of(first, "ring"))["origin"] == "api"
    unreachable = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "peercam", "ring", "--url", "https://127.0.0.1:9", "--token", "x"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert unreachable.returncode == 1 and "cannot ring" in unreachable.stderr
