"""Is the daemon that just started a working camera? A WHEP offer, as a viewer makes
it, must be answered and the picture must arrive: a release that starts and reports
ready but cannot negotiate or encode is rolled back all the same.

The updater runs as root, and what the daemon sends (its camera may be a file the
daemon chose) is decoded here: so root runs the check in a child process as
`nobody` (`check_unprivileged`), handing it the key on its standard input."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from peercam.config import Config

logger = logging.getLogger(__name__)


class SelfCheckFailed(Exception):
    pass


@dataclass(frozen=True)
class SelfCheckTarget:
    url: str  # the daemon's own base URL, on loopback
    key: str  # auth/local_check.py: the daemon's key for this
    tls: bool

    @classmethod
    def of(cls, config: Config, key: str) -> SelfCheckTarget:
        scheme = "https" if config.server.tls else "http"
        host = config.server.host
        # Where the daemon listens: loopback when it listens everywhere; the address
        # it was given otherwise (auth/local_check.py honours the key there too).
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        shown = f"[{host}]" if ":" in host else host
        return cls(f"{scheme}://{shown}:{config.server.port}/", key, config.server.tls)


def _loopback_tls() -> ssl.SSLContext:
    # Loopback to the daemon this machine just started, with a key honoured only from
    # loopback: the certificate (self-signed, or the owner's for a public name) is not
    # what is being checked here.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def check_daemon(target: SelfCheckTarget, within: float = 30.0) -> str:
    """Offer, answer, first video frame; returns the picture's size ("640x480").
    Raises SelfCheckFailed with the step that did not happen."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    arrived: asyncio.Queue[object] = asyncio.Queue()

    @pc.on("track")
    def on_track(track: object) -> None:
        arrived.put_nowait(track)

    location: str | None = None
    connector = aiohttp.TCPConnector(ssl=_loopback_tls() if target.tls else False)
    headers = {"Authorization": f"Bearer {target.key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        try:
            async with asyncio.timeout(within):
                await pc.setLocalDescription(await pc.createOffer())
                offer = pc.localDescription.sdp
                async with http.post(
                    urljoin(target.url, "whep"),
                    data=offer,
                    headers={"Content-Type": "application/sdp"},
                ) as response:
                    body = await response.text()
                    if response.status != 201:
                        raise SelfCheckFailed(
                            f"the WHEP offer was refused ({response.status}: {body[:200]})"
                        )
                    location = response.headers.get("Location")
                await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
                return await _first_frame(arrived)
        except TimeoutError:
            raise SelfCheckFailed(
                f"no picture within {within:.0f} s of the WHEP offer "
                f"(connection {pc.connectionState})"
            ) from None
        except aiohttp.ClientError as error:
            raise SelfCheckFailed(f"the daemon did not answer: {error}") from None
        finally:
            if location:
                try:
                    async with http.delete(urljoin(target.url, location)):
                        pass
                except aiohttp.ClientError:
                    logger.debug("hanging up the self-check failed", exc_info=True)
            await pc.close()


async def _first_frame(arrived: asyncio.Queue[object]) -> str:
    from aiortc.mediastreams import MediaStreamTrack
    from av import VideoFrame

    while True:
        track = await arrived.get()
        if isinstance(track, MediaStreamTrack) and track.kind == "video":
            frame = await track.recv()
            if isinstance(frame, VideoFrame):
                return f"{frame.width}x{frame.height}"


UNPRIVILEGED_USER = "nobody"


async def check_unprivileged(target: SelfCheckTarget, within: float) -> str:
    """check_daemon in a child process as `nobody` when run as root (else here)."""
    if os.geteuid() != 0:
        return await check_daemon(target, within)
    command = [sys.executable, "-m", "peercam.update.self_check", target.url,
               "--tls" if target.tls else "--no-tls", "--within", str(within)]  # fmt: skip
    child = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        user=UNPRIVILEGED_USER,
        group=_group_of(UNPRIVILEGED_USER),
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        async with asyncio.timeout(within + 15):
            out, err = await child.communicate(target.key.encode())
    except TimeoutError:
        child.kill()
        await child.wait()
        raise SelfCheckFailed(f"the self-check did not finish within {within:.0f} s") from None
    try:
        answer = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SelfCheckFailed(f"the self-check broke: {tail[0]}") from None
    if not answer.get("ok"):
        raise SelfCheckFailed(str(answer.get("error")))
    return str(answer.get("seen"))


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def main() -> None:
    """The child's side: the key on standard input, the outcome as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--within", type=float, default=30.0)
    args = parser.parse_args()
    key = sys.stdin.read().strip()
    target = SelfCheckTarget(args.url, key, args.tls)
    try:
        seen = asyncio.run(check_daemon(target, args.within))
    except SelfCheckFailed as error:
        print(json.dumps({"ok": False, "error": str(error)}))
        sys.exit(1)
    except Exception as error:
        print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    print(json.dumps({"ok": True, "seen": seen}))


def self_check_target(config: Config, state_dir: Path) -> SelfCheckTarget:
    """Where the configured daemon listens, with the key it made at its start in
    `state_dir`."""
    from peercam.auth.local_check import read_local_check_key

    try:
        key = read_local_check_key(state_dir)
    except OSError as error:
        raise SelfCheckFailed(f"the daemon left no self-check key: {error}") from None
    return SelfCheckTarget.of(config, key)


if __name__ == "__main__":
    main()
