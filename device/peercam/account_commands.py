"""`peercam passwd` and `peercam token`: manage who may use the camera.

They change the credentials file in the state directory; a running daemon picks
the change up on its next request."""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys
from pathlib import Path

from peercam.auth.passwords import WeakPassword
from peercam.auth.store import CredentialError, CredentialStore
from peercam.firstboot.password import apply_boot_password


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    passwd = commands.add_parser("passwd", help="set a user's password (default: admin)")
    passwd.add_argument("--config", help="TOML config file (for server.state_dir)")
    passwd.add_argument("--state-dir", help="where credentials are kept")
    passwd.add_argument("--user", default="admin", help="user name (default %(default)s)")
    passwd.add_argument(
        "--role", choices=["viewer", "admin"], help="role (new users: admin for admin, else viewer)"
    )
    passwd.add_argument(
        "--stdin", action="store_true", help="read the password from standard input"
    )
    passwd.add_argument("--remove", action="store_true", help="remove the user instead")
    passwd.add_argument(
        "--from-boot-config",
        metavar="FILE",
        help="take the admin password from FILE's `password = ...` line, then blank it",
    )

    token = commands.add_parser("token", help="API tokens for NVRs and home automation")
    token.add_argument("--config", help="TOML config file (for server.state_dir)")
    token.add_argument("--state-dir", help="where credentials are kept")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token; it is shown only once")
    create.add_argument("name")
    create.add_argument("--role", choices=["viewer", "admin"], default="viewer")
    create.add_argument("--days", type=float, help="expire after this many days (default never)")
    actions.add_parser("list", help="list tokens (never their values)")
    revoke = actions.add_parser("revoke", help="revoke a token by name or id")
    revoke.add_argument("name")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise WeakPassword("the two passwords differ")
    return first


def run_passwd(store: CredentialStore, args: argparse.Namespace) -> int:
    if args.from_boot_config:
        problem = apply_boot_password(Path(args.from_boot_config), store)
        if problem:
            print(f"peercam: {problem}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.remove:
            store.remove_user(args.user)
            print(f"peercam: removed user {args.user}")
            return 0
        role = args.role or ("admin" if args.user == "admin" else None)
        if role is None and args.user not in store.users:
            role = "viewer"
        user = store.set_password(args.user, _read_password(args.stdin), role)
    except (WeakPassword, CredentialError) as error:
        print(f"peercam: {error}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("peercam: no password given; nothing changed", file=sys.stderr)
        return 1
    print(f"peercam: password set for {user.name} ({user.role}) in {store.path}")
    return 0


def run_token(store: CredentialStore, args: argparse.Namespace) -> int:
    try:
        if args.action == "create":
            if args.days is not None and args.days <= 0:
                raise CredentialError("--days must be more than 0")
            value = store.create_token(args.name, args.role, args.days)
            print(value)
            print(
                f"peercam: token {args.name} ({args.role}) made; it is not shown again. "
                "Send it as `Authorization: Bearer <token>`; an NVR or Home Assistant's "
                f"ONVIF integration takes user {args.name} and the token as the password.",
                file=sys.stderr,
            )
        elif args.action == "list":
            for token in sorted(store.tokens.values(), key=lambda t: t.created):
                expires = (
                    "never"
                    if token.expires is None
                    else datetime.datetime.fromtimestamp(token.expires).isoformat(" ", "minutes")
                )
                print(f"{token.id}  {token.name:<24} {token.role:<6} expires {expires}")
        else:
            gone = store.revoke_token(args.name)
            print(f"peercam: revoked token {gone.name} ({gone.id})")
    except CredentialError as error:
        print(f"peercam: {error}", file=sys.stderr)
        return 2
    return 0
