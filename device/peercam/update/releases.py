"""Installed releases of peercam, side by side, and which one runs.

    ROOT/releases/VERSION-DIGEST/   one Python environment per installed bundle
    ROOT/current  -> the release systemd starts (/usr/bin/peercam leads through it)
    ROOT/previous -> the one before, what a failed update goes back to
The release the card was made with (or install.sh installed) lives outside, in
/opt/peercam, and is `current` until the first update. A switch is one rename of a
symbolic link, so after a power cut `current` names the old release or the new one,
never neither; a release's directory gets its final name only once it is complete."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from peercam.update.bundle import VerifiedBundle

logger = logging.getLogger(__name__)

FACTORY = Path("/opt/peercam")
_PARTIAL = ".partial"
UPLOADED = "uploaded.bundle"  # root's copy of a bundle uploaded on the page


class InstallFailed(Exception):
    pass


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(path: Path) -> None:
    """Everything under `path` on the disk, before anything points at it."""
    for directory, _, files in os.walk(path):
        for name in files:
            file = Path(directory, name)
            if file.is_symlink():
                continue
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_directory(Path(directory))


@dataclass(frozen=True)
class Release:
    path: Path

    @property
    def name(self) -> str:
        # Updates are installed under ROOT/releases; anything else is the release the
        # card was made with (or install.sh installed).
        return self.path.name if self.path.parent.name == "releases" else "factory"

    @property
    def command(self) -> Path:
        return self.path / "bin" / "peercam"

    def version(self) -> str | None:
        """The peercam version installed in this release's environment."""
        found = sorted(self.path.glob("lib/python3*/site-packages/peercam-*.dist-info"))
        return found[0].name[len("peercam-") : -len(".dist-info")] if found else None


class ReleaseStore:
    def __init__(
        self,
        root: Path,
        factory: Path = FACTORY,
        base_python: Path | None = None,
    ) -> None:
        self.root = root
        self.factory = factory
        # The interpreter new environments are made from: the one under this release.
        self.base_python = base_python or Path(getattr(sys, "_base_executable", sys.executable))

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def _link(self, name: str) -> Release | None:
        link = self.root / name
        if not link.is_symlink():
            return None
        target = Path(os.readlink(link))
        return Release(target) if (target / "bin" / "peercam").exists() else None

    def current(self) -> Release:
        """What runs: `current`, or the factory release when there is none (a fresh
        card, or a link left pointing at a release that is gone)."""
        return self._link("current") or Release(self.factory)

    def previous(self) -> Release | None:
        return self._link("previous")

    def _point(self, name: str, release: Release) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".{name}.new"
        temporary.unlink(missing_ok=True)
        os.symlink(release.path, temporary)
        os.replace(temporary, self.root / name)
        _fsync_directory(self.root)

    def switch_to(self, release: Release) -> Release:
        """Make `release` current; the one that was becomes previous. Returns it."""
        was = self.current()
        if was.path != release.path:
            self._point("previous", was)
        self._point("current", release)
        return was

    def install(self, bundle: VerifiedBundle) -> Release:
        """A new environment holding the bundle's release (or the one already made
        from the same bundle), complete and on disk before this returns."""
        # Named by the whole manifest: a bundle that changes only a dependency is a
        # release of its own.
        target = self.releases / f"{bundle.manifest.version}-{bundle.manifest.digest[:12]}"
        if (target / "bin" / "peercam").exists():
            return Release(target)
        self.releases.mkdir(parents=True, exist_ok=True)
        building = target.with_name(target.name + _PARTIAL)
        shutil.rmtree(building, ignore_errors=True)
        try:
            with tempfile.TemporaryDirectory(dir=self.root, prefix=".wheels-") as wheels_dir:
                wheels = bundle.extract_wheels(Path(wheels_dir))
                pip = next(w for w in wheels if w.name.startswith("pip-"))
                self._make_environment(building, pip, Path(wheels_dir), bundle.manifest.version)
            # Each environment's scripts name its own interpreter by path: built under
            # the partial name, they must be told the final one before the rename.
            _retarget_scripts(building, target)
            self._compile(building, target)
            _sync_tree(building)
            building.rename(target)
            _fsync_directory(self.releases)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return Release(target)

    def _make_environment(self, path: Path, pip: Path, wheels: Path, version: str) -> None:
        # --system-site-packages: picamera2 and libcamera are the system's, not wheels.
        steps = [
            [str(self.base_python), "-m", "venv", "--without-pip", "--system-site-packages",
             str(path)],
            [str(self.base_python), str(pip / "pip"), "--python", str(path / "bin" / "python3"),
             "install", "--quiet", "--no-index", "--no-compile", "--disable-pip-version-check",
             "--find-links", str(wheels), f"peercam=={version}"],
        ]  # fmt: skip
        for command in steps:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise InstallFailed(
                    f"installing the release failed ({Path(command[1]).name}): " + _tail(done)
                )

    def _compile(self, building: Path, target: Path) -> None:
        """Bytecode for the whole release, as it will be found at `target`: the service
        cannot write it next to a read-only release, and a Pi Zero would otherwise
        compile everything at every start. In a process of its own: compileall's
        parallel workers are forked, and a fork of this process (the daemon's or the
        CLI's, with threads running) can inherit a lock another thread held — the
        worker then never returns and the update hangs (seen once in CI: the forked
        worker blocked inside the import machinery's compile)."""
        done = subprocess.run(
            [str(self.base_python), "-m", "compileall", "-q", "-j", "0",
             "-s", str(building), "-p", str(target), str(building)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            # As before: a file some package ships that does not compile (test data,
            # another Python's syntax) is left to compile, or not, when imported.
            logger.warning("some of the release did not compile to bytecode: %s", _tail(done))

    def discard(self, release: Release) -> None:
        """Remove a release that failed, so that nothing goes back to it."""
        if release.path == self.current().path or release.path.parent != self.releases:
            return
        previous = self.previous()
        if previous is not None and previous.path == release.path:
            (self.root / "previous").unlink()
            _fsync_directory(self.root)
        shutil.rmtree(release.path, ignore_errors=True)

    def prune(self) -> list[Path]:
        """Remove releases neither current nor previous (and half-made ones)."""
        keep = {r.path for r in (self.current(), self.previous()) if r is not None}
        removed: list[Path] = []
        for entry in self.releases.iterdir() if self.releases.is_dir() else []:
            if entry not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        # What a power cut left beside them: wheels being extracted, an upload's copy.
        for entry in [*self.root.glob(".wheels-*"), self.root / UPLOADED]:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return removed


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    """The last lines a failed step printed, for its error."""
    return " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])


def _retarget_scripts(built: Path, final: Path) -> None:
    old, new = str(built).encode(), str(final).encode()
    for script in (built / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        content = script.read_bytes()
        if content.startswith(b"#!") and old in content.split(b"\n", 1)[0]:
            first, _, rest = content.partition(b"\n")
            script.write_bytes(first.replace(old, new) + b"\n" + rest)
    config = built / "pyvenv.cfg"
    config.write_bytes(config.read_bytes().replace(old, new))
