#!/usr/bin/env python3
"""Make and sign peercam update bundles (device/peercam/update/bundle.py).

    make-update-bundle.py keygen DIR
        A new Ed25519 key pair: DIR/peercam-update-signing.pem (private: keep it
        safe, off the camera) and DIR/peercam-update-public.pem (goes into the image:
        `make image UPDATE_KEY=DIR/peercam-update-public.pem`).
    make-update-bundle.py build --key SIGNING.pem [--board aarch64|native] OUT
        peercam's wheel from this checkout and every dependency's for the board
        (aarch64: the image's, from PyPI, as image-build/fetch_wheels.py gathers them;
        native: this machine's), signed, in OUT.
    make-update-bundle.py pack --key SIGNING.pem --machine M --python X.Y WHEELS OUT
        Sign a directory of wheels gathered some other way.

Run it with the project's environment (.venv/bin/python): it needs peercam's own
package and `cryptography`."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "device"))

from peercam.update.bundle import load_signing_key, make_bundle, new_signing_key  # noqa: E402


def keygen(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    private, public = new_signing_key()
    signing = directory / "peercam-update-signing.pem"
    try:
        fd = os.open(signing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        sys.exit(f"make-update-bundle: {signing} exists; a signing key is never overwritten")
    with os.fdopen(fd, "wb") as file:
        file.write(private)
    (directory / "peercam-update-public.pem").write_bytes(public)
    print(f"signing key: {signing} (keep it; anyone holding it can update your cameras)")
    print(f"public key:  {directory / 'peercam-update-public.pem'} (into the image)")


def pack(key: Path, wheels: Path, out: Path, machine: str, python: str) -> None:
    files = sorted(wheels.glob("*.whl"))
    left = sorted(p.name for p in wheels.iterdir() if p.suffix != ".whl")
    if left:
        sys.exit(f"make-update-bundle: not wheels, cannot go in a bundle: {', '.join(left)}")
    manifest = make_bundle(
        files, load_signing_key(key.read_bytes()), out, machine=machine, python=python
    )
    size = out.stat().st_size >> 20
    print(f"{out}: peercam {manifest.version} for {machine}, Python {python}, "
          f"{len(manifest.wheels)} wheels, {size} MiB, signed")  # fmt: skip


def build(key: Path, board: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as name:
        wheels = Path(name) / "wheels"
        if board == "native":
            pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
            subprocess.run([*pip, "wheel", "-q", "--no-build-isolation", "-w", str(wheels),
                            str(REPO)], check=True)  # fmt: skip
            subprocess.run([*pip, "download", "-q", "--no-deps", "-d", str(wheels), "pip"],
                           check=True)  # fmt: skip
            machine = platform.machine()
            python = f"{sys.version_info.major}.{sys.version_info.minor}"
        else:
            cache = REPO / "image-build" / "cache"
            subprocess.run([sys.executable, str(REPO / "image-build" / "fetch_wheels.py"),
                            "--repo", str(REPO), "--cache", str(cache), "--out", str(wheels)],
                           check=True)  # fmt: skip
            sources = sorted(p.name for p in wheels.glob("*.tar.gz"))
            if sources:
                sys.exit(
                    "make-update-bundle: no aarch64 wheel yet for "
                    + ", ".join(sources)
                    + ": build the image once (make image), which compiles them into "
                    + f"{cache}"
                )
            machine, python = "aarch64", "3.11"
        pack(key, wheels, out, machine, python)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    keygen_command = commands.add_parser("keygen")
    keygen_command.add_argument("directory", type=Path)
    build_command = commands.add_parser("build")
    build_command.add_argument("--key", type=Path, required=True)
    build_command.add_argument("--board", choices=["aarch64", "native"], default="aarch64")
    build_command.add_argument("out", type=Path)
    pack_command = commands.add_parser("pack")
    pack_command.add_argument("--key", type=Path, required=True)
    pack_command.add_argument("--machine", required=True)
    pack_command.add_argument("--python", required=True)
    pack_command.add_argument("wheels", type=Path)
    pack_command.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "keygen":
        keygen(args.directory)
    elif args.command == "build":
        build(args.key, args.board, args.out)
    else:
        pack(args.key, args.wheels, args.out, args.machine, args.python)


if __name__ == "__main__":
    main()
