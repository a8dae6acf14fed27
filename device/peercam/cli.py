"""The `peercam` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

from peercam import __version__
from peercam.account_commands import add_commands
from peercam.config import Config, ConfigError, load_config, parse_size
from peercam.firstboot.command import add_command as add_firstboot_command
from peercam.service.log_rate import limit_repeats
from peercam.service.state_dir import state_directory
from peercam.settings.config_file import ConfigFile
from peercam.update.command import add_command as add_update_command


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
    run.add_argument("--port", type=int, help="HTTPS port (default 8443; 0 picks a free one)")
    run.add_argument(
        "--http-port", type=int, help="plain-HTTP port that redirects to HTTPS (default 8080)"
    )
    run.add_argument(
        "--rtsp-port", type=int, help="RTSP port for NVRs (default 8554; 0 picks a free one)"
    )
    run.add_argument("--onvif-port", type=int, help="ONVIF port (default 8000; 0 picks a free one)")
    run.add_argument("--state-dir", help="where credentials and the certificate are kept")
    run.add_argument(
        "--source", choices=["auto", "test", "picamera2", "v4l2", "file"], help="camera source"
    )
    run.add_argument("--size", type=_size, help="picture size, WIDTHxHEIGHT")
    run.add_argument("--fps", type=int, help="frames per second")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    ring = commands.add_parser("ring", help="ring the doorbell of a running daemon")
    ring.add_argument(
        "--url", default="https://127.0.0.1:8443", help="the daemon (default %(default)s)"
    )
    ring.add_argument("--config", type=Path, help="TOML config file (to trust its certificate)")
    ring.add_argument("--state-dir", help="the daemon's state directory (its certificate)")
    ring.add_argument(
        "--token", help="an admin token (`peercam token create`); default $PEERCAM_TOKEN"
    )
    add_commands(commands)
    add_firstboot_command(commands)
    add_update_command(commands)
    check = commands.add_parser("check", help="report the board's cameras, encoders, audio, GPIO")
    check.add_argument("--config", type=Path, help="TOML config file")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--state-dir", help="the daemon's state directory (its admin)")
    check.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    def given(*names: str) -> dict[str, Any]:
        return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}

    server = given("host", "port", "http_port", "state_dir")
    camera = given("source", "size", "fps")
    rtsp = {"port": args.rtsp_port} if getattr(args, "rtsp_port", None) is not None else {}
    onvif = {"port": args.onvif_port} if getattr(args, "onvif_port", None) is not None else {}
    sections = (("server", server), ("camera", camera), ("rtsp", rtsp), ("onvif", onvif))
    return {name: values for name, values in sections if values}


def ring_doorbell(url: str, token: str | None, config: Config) -> int:
    if not token:
        print("peercam: ring needs --token or PEERCAM_TOKEN (an admin token)", file=sys.stderr)
        return 2
    request = urllib.request.Request(
        url.rstrip("/") + "/api/ring",
        method="POST",
        data=b"",
        headers={"Authorization": f"Bearer {token}"},
    )
    from peercam.tls.certificate import CERT_NAME  # cryptography: only for this command

    # The daemon's own self-signed certificate is trusted; nothing else is.
    own = state_directory(config.server.state_dir) / CERT_NAME
    context = ssl.create_default_context(cafile=str(own) if own.is_file() else None)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            state = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"peercam: cannot ring {url}: {error}", file=sys.stderr)
        return 1
    print(f"peercam: rang; the doorbell is {state.get('call', '?')}")
    return 0


def entry() -> NoReturn:
    """The `peercam` command: main(), then the process ends as a native runtime
    loaded by it needs (service/process_exit.py)."""
    from peercam.service.process_exit import end_process

    end_process(main())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "warning").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    limit_repeats(logging.root.handlers)
    # aioice and aiortc log every candidate pair at INFO; a busy camera needs less.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    if args.command == "firstboot":
        # Before the config is read: first boot is what writes it.
        from peercam.firstboot.command import run_command

        return run_command(args)
    if args.command == "update":
        # Root, reading a file the daemon may write: update/command.py reads it itself.
        from peercam.update.command import run_command as run_update

        return run_update(args)
    overrides = _overrides(args)
    config_path = Path(args.config) if args.config else None
    settings_file: ConfigFile | None = None
    if args.command == "run":
        # The settings page saves where the daemon reads: the --config file, else one
        # of its own in the state directory (read at start once the page wrote it).
        state_dir = overrides.get("server", {}).get("state_dir")
        own = state_directory(state_dir) / "peercam.toml"
        settings_file = ConfigFile(config_path or own, overrides)
        if config_path is None and own.is_file():
            config_path = own
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        print(f"peercam: config error: {error}", file=sys.stderr)
        return 2
    if args.command == "ring":
        return ring_doorbell(args.url, args.token or os.environ.get("PEERCAM_TOKEN"), config)
    if args.command in ("passwd", "token"):
        return _manage_credentials(config, args)
    if args.command == "check":
        from peercam.check import run_check

        return run_check(config, args.json)
    from peercam.service.native_memory import limit_arenas

    limit_arenas()
    from peercam.daemon import serve

    return asyncio.run(serve(config, settings_file))


def _manage_credentials(config: Config, args: argparse.Namespace) -> int:
    from peercam.account_commands import run_passwd, run_token
    from peercam.auth.store import CredentialError, open_store

    try:
        store = open_store(state_directory(config.server.state_dir))
    except CredentialError as error:
        print(f"peercam: {error}", file=sys.stderr)
        return 2
    return run_passwd(store, args) if args.command == "passwd" else run_token(store, args)


if __name__ == "__main__":
    sys.exit(main())
