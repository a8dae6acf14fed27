"""Gather everything pip needs to install peercam on the image, from this machine.

peercam's own wheel is built from the checkout; its dependencies are resolved here (the
same Python minor version as Debian bookworm's, 3.11) and each pinned version is
downloaded as an aarch64 wheel from PyPI. A package with no such wheel comes as its
source archive, built later inside the image by its own compiler, unless the cache
already holds the wheel built last time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Debian bookworm: glibc 2.36, CPython 3.11. pip does not widen --platform by itself.
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{n}_aarch64" for n in range(17, 37)]
TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3"]


def pip(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments],
        capture_output=True,
        text=True,
    )


def must(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        sys.exit(f"fetch_wheels: pip failed:\n{result.stdout}\n{result.stderr}")


def pinned_requirements(wheel: Path, scratch: Path) -> list[str]:
    report = scratch / "report.json"
    must(pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
             str(wheel)))  # fmt: skip
    items = json.loads(report.read_text())["install"]
    return [
        f"{item['metadata']['name']}=={item['metadata']['version']}"
        for item in items
        if item["metadata"]["name"].lower() != "peercam"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True, help="wheels built earlier")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        must(pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(args.out),
                 str(args.repo)))  # fmt: skip
        wheel = next(args.out.glob("peercam-*.whl"))
        requirements = pinned_requirements(wheel, scratch)
    # pip itself, run from its wheel inside the image to install the rest.
    must(pip("download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(args.out), "pip"))
    built: list[str] = []
    for requirement in requirements:
        name, version = requirement.split("==")
        cached = [
            p for p in args.cache.glob("*.whl")
            if p.name.lower().startswith(f"{name.replace('-', '_').lower()}-{version}-")
        ]  # fmt: skip
        if cached:
            shutil.copy(cached[0], args.out)
            continue
        platform = [arg for p in PLATFORMS for arg in ("--platform", p)]
        wheel_result = pip("download", "--no-deps", "--only-binary=:all:", *platform, *TARGET,
                           "-q", "-d", str(args.out), requirement)  # fmt: skip
        if wheel_result.returncode == 0:
            continue
        must(pip("download", "--no-deps", "--no-binary=:all:", "-q", "-d", str(args.out),
                 requirement))  # fmt: skip
        built.append(requirement)
    print(f"fetch_wheels: {len(requirements)} dependencies; to build in the image: "
          f"{', '.join(built) or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
