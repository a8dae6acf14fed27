"""The `peercam` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from peercam import __version__
from peercam.config import ConfigError, load_config, parse_size


def _size(text: str) -> str:
    try:
        parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peercam", description=__doc__)
    parser.add_argument("--version", action="version", version=f"peercam {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve the camera to browsers over WebRTC")
    run.add_argument("--config", type=Path, help="TOML config file")
    run.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    run.add_argument("--port", type=int, help="HTTP port (default 8080; 0 picks a free one)")
    run.add_argument(
        "--source", choices=["auto", "test", "picamera2", "v4l2", "file"], help="camera source"
    )
    run.add_argument("--size", type=_size, help="picture size, WIDTHxHEIGHT")
    run.add_argument("--fps", type=int, help="frames per second")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    ring = commands.add_parser("ring", help="ring the doorbell of a running daemon")
    ring.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the daemon (default %(default)s)"
    )
    check = commands.add_parser("check", help="report the board's cameras, encoders, audio, GPIO")
    check.add_argument("--config", type=Path, help="TOML config file")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    def given(*names: str) -> dict[str, Any]:
        return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}

    server = given("host", "port")
    camera = given("source", "size", "fps")
    return {name: values for name, values in (("server", server), ("camera", camera)) if values}


def ring_doorbell(url: str) -> int:
    request = urllib.request.Request(url.rstrip("/") + "/api/ring", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            state = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"peercam: cannot ring {url}: {error}", file=sys.stderr)
        return 1
    print(f"peercam: rang; the doorbell is {state.get('call', '?')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "warning").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aioice and aiortc log every candidate pair at INFO; a busy camera needs less.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    if args.command == "ring":
        return ring_doorbell(args.url)
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as error:
        print(f"peercam: config error: {error}", file=sys.stderr)
        return 2
    if args.command == "check":
        from peercam.check import run_check

        return run_check(config, args.json)
    from peercam.daemon import serve

    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
