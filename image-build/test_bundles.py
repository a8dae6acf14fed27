"""Update bundles for testing updates, made from this checkout: a good release, a
broken one (its daemon exits with status 3 before it serves), one that fails later
(its daemon serves once, then exits with status 3 at every start after: the update's
self-check passes, systemd gives up on it afterwards), and the good one with one byte
of a wheel changed after signing. Used by tests/test_update.py (this
machine's wheels) and by `make image-test` (the card's: aarch64, Python 3.11).

    test_bundles.py --board native|aarch64 --key SIGNING.pem --out DIR [--version V]

Writes DIR/good.peercam-update (version V), DIR/broken.peercam-update (V.1),
DIR/later.peercam-update (V.2) and DIR/tampered.peercam-update; prints their versions
as JSON."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "device"))

from peercam.update.bundle import WHEELS, load_signing_key, make_bundle  # noqa: E402


def pip(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments],
                   check=True, capture_output=True, timeout=900)  # fmt: skip


BREAKS = {
    # A release broken in a way no test caught: `peercam run` returns 3 at once.
    "broken": "    return 3\n",
    # One that breaks only from its second start on (a migration gone wrong, say).
    "later": (
        "    started = Path(os.environ.get('STATE_DIRECTORY', '/var/lib/peercam'))"
        " / 'test-bundle-started'\n"
        "    if started.exists():\n"
        "        return 3\n"
        "    started.touch()\n"
    ),
}


def peercam_wheel(out: Path, work: Path, version: str, kind: str) -> Path:
    """peercam's wheel from this checkout as `version`, broken as BREAKS[kind] says."""
    source = work / f"source-{version}"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "device", source / "device", ignore=ignore)
    shutil.copytree(REPO / "web", source / "web", ignore=ignore)
    init = source / "device" / "peercam" / "__init__.py"
    text = init.read_text()
    current = text.split('__version__ = "')[1].split('"')[0]
    init.write_text(text.replace(f'__version__ = "{current}"', f'__version__ = "{version}"'))
    if kind in BREAKS:
        cli = source / "device" / "peercam" / "cli.py"
        text = cli.read_text()
        marker = "    limit_arenas()\n"
        if (
            marker not in text
            or "\nimport os\n" not in text
            or "from pathlib import Path\n" not in text
        ):
            sys.exit("test_bundles: cli.py changed; cannot make the broken releases")
        cli.write_text(text.replace(marker, marker + BREAKS[kind], 1))
    pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source))
    return next(out.glob(f"peercam-{version}-*.whl"))


def dependency_wheels(board: str, directory: Path) -> tuple[str, str]:
    """Every wheel but peercam's into `directory`; (machine, python) they are for."""
    if board == "native":
        pip("wheel", "-q", "--no-build-isolation", "-w", str(directory), str(REPO))
        pip("download", "-q", "--no-deps", "-d", str(directory), "pip")
        found = (platform.machine(), f"{sys.version_info.major}.{sys.version_info.minor}")
    else:
        cache = REPO / "image-build" / "cache" / "wheels"
        subprocess.run([sys.executable, str(REPO / "image-build" / "fetch_wheels.py"),
                        "--repo", str(REPO), "--cache", str(cache), "--out", str(directory)],
                       check=True, capture_output=True, timeout=900)  # fmt: skip
        sources = [p.name for p in directory.glob("*.tar.gz")]
        if sources:
            sys.exit(f"test_bundles: no aarch64 wheel for {sources}: build the image first")
        found = ("aarch64", "3.11")
    for wheel in directory.glob("peercam-*.whl"):
        wheel.unlink()
    return found


def tamper(good: Path, target: Path) -> None:
    """`good` with the last byte of its first dependency wheel changed."""
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(target, "w") as out:
        victim = next(n for n in source.namelist()
                      if n.startswith(WHEELS) and "peercam-" not in n)  # fmt: skip
        for name in source.namelist():
            content = source.read(name)
            if name == victim:
                content = content[:-1] + bytes([content[-1] ^ 1])
            out.writestr(name, content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--board", choices=["native", "aarch64"], required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", default="99.0.1")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = load_signing_key(args.key.read_bytes())
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        deps = work / "deps"
        machine, python = dependency_wheels(args.board, deps)
        versions = {"good": args.version, "broken": args.version + ".1"}
        versions["later"] = args.version + ".2"
        for kind, version in versions.items():
            wheel = peercam_wheel(work / "built", work, version, kind)
            make_bundle([wheel, *deps.glob("*.whl")], key, args.out / f"{kind}.peercam-update",
                        machine=machine, python=python)  # fmt: skip
    tamper(args.out / "good.peercam-update", args.out / "tampered.peercam-update")
    print(json.dumps({**versions, "machine": machine, "python": python}))


if __name__ == "__main__":
    main()
