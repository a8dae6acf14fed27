"""Signed updates (device/peercam/update/): bundles refused with their reason, and real
releases built from this checkout installed beside the running one, switched to, and
kept or rolled back by what the real daemon does under a stand-in for systemd
(tests/systemd_standin.py; the real systemd runs in `make image-test`)."""

from __future__ import annotations

import asyncio
import json
import marshal
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peercam.auth.local_check import LocalCheckKey, read_local_check_key
from peercam.config import load_config
from peercam.update.bundle import (
    MANIFEST,
    SIGNATURE,
    BundleRefused,
    VerifiedBundle,
    load_signing_key,
    load_trusted_keys,
    make_bundle,
    new_signing_key,
    this_board,
    verify_bundle,
)
from peercam.update.paths import KEYS_VARIABLE, RELEASES_VARIABLE
from peercam.update.releases import Release, ReleaseStore
from peercam.update.self_check import (
    SelfCheckFailed,
    SelfCheckTarget,
    check_daemon,
    check_unprivileged,
    self_check_target,
)
from peercam.update.service_manager import ServiceState
from peercam.update.status import UpdateStatus, read_status, write_status
from peercam.update.trial import Trial, start_trial
from peercam.update.updater import Updater
from tests.access import TEST_PASSWORD, basic, bearer
from tests.conftest import CAMERA_320, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.free_ports import unused_tcp_port
from tests.systemd_standin import NotifyService

ROOT = Path(__file__).resolve().parent.parent
BOARD = this_board()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(private key file, directory of trusted public keys)."""
    directory = tmp_path_factory.mktemp("keys")
    private, public = new_signing_key()
    (directory / "signing.pem").write_bytes(private)
    (directory / "trusted").mkdir()
    (directory / "trusted" / "release.pem").write_bytes(public)
    return directory / "signing.pem", directory / "trusted"


def _fake_wheels(directory: Path) -> list[Path]:
    directory.mkdir(exist_ok=True)
    wheels = []
    for name in ("peercam-9.0.0-py3-none-any.whl", "pip-26.0-py3-none-any.whl",
                 "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl"):  # fmt: skip
        path = directory / name
        path.write_bytes(os.urandom(4096))
        wheels.append(path)
    return wheels


def _rewrite(bundle: Path, target: Path, change: dict[str, bytes | None]) -> None:
    """A copy of `bundle` with entries replaced (None: left out) or added."""
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            if name in change:
                replacement = change[name]
                if replacement is not None:
                    out.writestr(name, replacement)
            else:
                out.writestr(name, source.read(name))
        for name, content in change.items():
            if name not in source.namelist() and content is not None:
                out.writestr(name, content)


def test_a_bundle_is_refused_with_its_reason_unless_whole_signed_and_for_this_board(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, trusted_dir = keys
    trusted = load_trusted_keys(trusted_dir)
    key = load_signing_key(private.read_bytes())
    good = tmp_path / "good.bundle"
    manifest = make_bundle(_fake_wheels(tmp_path / "w"), key, good, machine=BOARD[0],
                           python=BOARD[1])  # fmt: skip
    assert manifest.version == "9.0.0"
    verified = verify_bundle(good, trusted)
    assert verified.manifest == manifest
    extracted = verified.extract_wheels(tmp_path / "out")
    assert sorted(p.name for p in extracted) == sorted(manifest.wheels)

    with zipfile.ZipFile(good) as archive:
        raw = archive.read(MANIFEST)
        wheel = "wheels/numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl"
        content = archive.read(wheel)
    other_key = load_signing_key(new_signing_key()[0])
    body = json.loads(raw)
    body["version"] = "9.9.9"
    forged = json.dumps(body).encode()
    cases: dict[str, tuple[dict[str, bytes | None], str]] = {
        "a wheel changed": ({wheel: content[:-1] + bytes([content[-1] ^ 1])},
                            "differs from the signed manifest"),
        "the manifest changed": ({MANIFEST: forged}, "signature does not match"),
        "another key": ({SIGNATURE: other_key.sign(raw)}, "signature does not match"),
        "another key, manifest changed": ({MANIFEST: forged, SIGNATURE: other_key.sign(forged)},
                                          "signature does not match"),
        "unsigned": ({SIGNATURE: None}, "not signed"),
        "no manifest": ({MANIFEST: None}, "has no manifest"),
        "a file added": ({"wheels/evil-1.0-py3-none-any.whl": b"x"},
                         "not listed: wheels/evil-1.0-py3-none-any.whl"),
        "a wheel left out": ({wheel: None}, f"missing: {wheel}"),
    }  # fmt: skip
    for name, (change, reason) in cases.items():
        bad = tmp_path / f"{name}.bundle"
        _rewrite(good, bad, change)
        with pytest.raises(BundleRefused, match=reason):
            verify_bundle(bad, trusted)

    (tmp_path / "text.bundle").write_text("hello")
    with pytest.raises(BundleRefused, match="not a peercam update bundle"):
        verify_bundle(tmp_path / "text.bundle", trusted)
    (tmp_path / "cut.bundle").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BundleRefused, match=r"not a peercam update bundle|damaged"):
        verify_bundle(tmp_path / "cut.bundle", trusted)
    with pytest.raises(BundleRefused, match="no update key"):
        verify_bundle(good, [])
    with pytest.raises(BundleRefused, match=f"for {BOARD[0]} boards; this one is sparc64"):
        verify_bundle(good, trusted, board=("sparc64", BOARD[1]))
    with pytest.raises(BundleRefused, match=f"for Python {BOARD[1]}; this camera has 3.13"):
        verify_bundle(good, trusted, board=(BOARD[0], "3.13"))
    # Never a path from the archive: a manifest naming ../ is refused (signed or not).
    evil = Path(tmp_path / "e")
    evil.mkdir()
    (evil / "peercam-1.0-py3-none-any.whl").write_bytes(b"p")
    (evil / "pip-1.0-py3-none-any.whl").write_bytes(b"p")
    traversal = tmp_path / "traversal.bundle"
    make_bundle(list(evil.iterdir()), key, traversal, machine=BOARD[0], python=BOARD[1])
    body = json.loads(zipfile.ZipFile(traversal).read(MANIFEST))
    body["wheels"]["../../x.whl"] = "0" * 64
    sneaky = json.dumps(body).encode()
    _rewrite(traversal, tmp_path / "t2.bundle", {MANIFEST: sneaky, SIGNATURE: key.sign(sneaky)})
    with pytest.raises(BundleRefused, match="not a file name"):
        verify_bundle(tmp_path / "t2.bundle", trusted)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> Path:
    """good (0.9.1), broken (0.9.1.1: its daemon exits at start) and tampered bundles
    of real releases built from this checkout for this machine, as `make image-test`
    makes them for the card (image-build/test_bundles.py)."""
    directory = tmp_path_factory.mktemp("bundles")
    done = subprocess.run(
        [sys.executable, str(ROOT / "image-build" / "test_bundles.py"), "--board", "native",
         "--key", str(keys[0]), "--out", str(directory), "--version", "0.9.1"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["broken"] == "0.9.1.1"
    return directory


class Camera:
    """A camera as the image sets it up: releases under `root`, the running one
    through root/current (as /usr/bin/peercam leads), under a systemd stand-in."""

    def __init__(self, workdir: Path, trusted: Path) -> None:
        self.workdir = workdir
        self.store = ReleaseStore(workdir / "releases", factory=Path(sys.prefix))
        self.store.switch_to(Release(self.store.factory))
        self.port = unused_tcp_port()
        self.config_path = workdir / "peercam.toml"
        self.config_path.write_text(
            CAMERA_320
            + f"""
[audio]
enabled = false
[server]
host = "127.0.0.1"
port = {self.port}
redirect_http = false
state_dir = "{workdir / "state"}"
[rtsp]
enabled = false
[onvif]
enabled = false
"""
        )
        self.config = load_config(self.config_path)
        self.trusted = trusted
        self.log = (workdir / "daemon.log").open("w")
        command = self.store.root / "current" / "bin" / "peercam"
        env = {"PEERCAM_PASSWORD": TEST_PASSWORD, KEYS_VARIABLE: str(trusted),
               RELEASES_VARIABLE: str(self.store.root)}  # fmt: skip
        self.service = NotifyService(
            lambda: [str(command), "run", "--config", str(self.config_path)], self.log, env
        )

    def updater(self) -> Updater:
        return Updater(
            self.store,
            load_trusted_keys(self.trusted),
            self.service,
            self.self_check,
            deadline=120.0,
            board=BOARD,
        )

    async def self_check(self, within: float) -> str:
        return await check_daemon(self_check_target(self.config, self.workdir / "state"), within)

    def api(self, path: str) -> dict[str, object]:
        import ssl

        context = ssl.create_default_context(cafile=str(self.workdir / "state" / "tls-cert.pem"))
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}{path}", headers=basic("admin", TEST_PASSWORD)
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            body: dict[str, object] = json.loads(response.read())
            return body

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while not self.service.state().ready:
            assert time.monotonic() < deadline, self.log_text()
            time.sleep(0.1)

    def log_text(self) -> str:
        self.log.flush()
        return (self.workdir / "daemon.log").read_text()[-3000:]

    def close(self) -> None:
        self.service.close()
        self.log.close()


@pytest.fixture
def camera(tmp_path: Path, keys: tuple[Path, Path]) -> Iterator[Camera]:
    found = Camera(tmp_path, keys[1])
    yield found
    found.close()


def test_a_good_update_is_kept_and_one_whose_daemon_exits_at_start_is_rolled_back(
    bundles: Path, camera: Camera
) -> None:
    camera.service.restart()
    camera.wait_ready()
    assert camera.api("/api/update")["release"] == "factory"
    factory_pid = camera.service.main_pid()
    good, broken = bundles / "good.peercam-update", bundles / "broken.peercam-update"
    updater = camera.updater()
    refused = asyncio.run(updater.apply(bundles / "tampered.peercam-update"))
    assert refused.state == "refused" and "differs from the signed manifest" in refused.reason
    assert camera.service.main_pid() == factory_pid  # nothing restarted

    kept = asyncio.run(updater.apply(good))
    assert kept.state == "kept", (kept, camera.log_text())
    release = camera.store.current()
    assert release.path.parent == camera.store.releases and release.name.startswith("0.9.1-")
    assert camera.store.previous() == Release(Path(sys.prefix))
    assert camera.service.main_pid() != factory_pid
    state = camera.api("/api/update")
    assert state["running"] == "0.9.1" and state["release"] == release.name
    assert isinstance(state["last"], dict) and state["last"]["state"] == "kept"
    assert kept.install_seconds is not None and kept.switch_seconds is not None
    # The new daemon runs from the release's own environment, not the test's.
    exe = os.readlink(f"/proc/{camera.service.main_pid()}/exe")
    assert Path(exe).resolve() == (release.path / "bin" / "python3").resolve()
    assert (release.path / "pyvenv.cfg").read_text().count(".partial") == 0
    command = (release.path / "bin" / "peercam").read_text().splitlines()[0]
    assert command == f"#!{release.path}/bin/python3"
    # Compiled ahead (the service cannot write bytecode into a read-only release), each
    # file naming its source where the release ended up, not where it was built.
    site = next((release.path / "lib").glob("python3*/site-packages"))
    compiled = next((site / "peercam" / "__pycache__").glob("cli.*.pyc"))
    code = marshal.loads(compiled.read_bytes()[16:])
    assert code.co_filename == str(site / "peercam" / "cli.py"), code.co_filename

    good_pid = camera.service.main_pid()
    rolled = asyncio.run(updater.apply(broken))
    assert rolled.state == "rolled_back", (rolled, camera.log_text())
    assert "exited at start (status 3)" in rolled.reason
    assert camera.store.current() == release
    assert not any(p.name.startswith("0.9.1.1-") for p in camera.store.releases.iterdir())
    assert camera.service.main_pid() not in (0, good_pid)
    state = camera.api("/api/update")
    assert state["running"] == "0.9.1"
    assert isinstance(state["last"], dict) and state["last"]["state"] == "rolled_back"
    assert "exited at start" in str(state["last"]["reason"])
    # The same good bundle again: nothing to do, nothing restarted.
    pid = camera.service.main_pid()
    again = asyncio.run(updater.apply(good))
    assert again.state == "kept" and "already running" in again.reason
    assert camera.service.main_pid() == pid


def _fake_release(store: ReleaseStore, name: str) -> Release:
    path = store.releases / name
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "peercam").write_text("#!/bin/sh\n")
    return Release(path)


def test_after_a_power_cut_an_unconfirmed_release_is_switched_away_from(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases", factory=tmp_path / "factory")
    (tmp_path / "factory" / "bin").mkdir(parents=True)
    (tmp_path / "factory" / "bin" / "peercam").write_text("#!/bin/sh\n")
    old = _fake_release(store, "1.0-aaa")
    new = _fake_release(store, "1.1-bbb")
    store.switch_to(old)
    updater = Updater(store, [], _NoService(), _no_check)
    # Cut after the switch, before the new daemon was confirmed.
    write_status(store.root, UpdateStatus("switched", "1.1", str(old.path), str(new.path)))
    store.switch_to(new)
    recovered = updater.recover()
    assert recovered is not None and recovered.state == "rolled_back"
    assert "power went off before the new release was confirmed" in recovered.reason
    assert store.current() == old and not new.path.exists()
    assert updater.recover() is None  # done once
    # Cut while installing: the half-made release is removed, the running one stays.
    (store.releases / "1.2-ccc.partial" / "bin").mkdir(parents=True)
    write_status(store.root, UpdateStatus("installing", "1.2", str(old.path)))
    recovered = updater.recover()
    assert recovered is not None and recovered.state == "failed"
    assert store.current() == old and not (store.releases / "1.2-ccc.partial").exists()
    status = read_status(store.root)
    assert status is not None and status.state == "failed"
    # While an update runs (it holds the lock), the boot-time recovery keeps out.
    write_status(store.root, UpdateStatus("switched", "1.3", str(old.path), str(new.path)))
    import fcntl

    fd = os.open(store.root / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert updater.recover() is None
        status = read_status(store.root)
        assert status is not None and status.state == "switched"
    finally:
        os.close(fd)


class _GivenUp:
    """A service systemd stopped restarting, or (restarting=True) one it is about to
    restart: systemd 254 and later run OnFailure= then too."""

    def __init__(self) -> None:
        self.restarts = 0
        self.restarting = False
        self.running = False
        self.asked = 0

    def restart(self) -> None:
        self.restarts += 1

    def state(self) -> ServiceState:
        self.asked += 1
        if self.running:
            return ServiceState("active", "running", 0, "run-6", None)
        if self.restarting and self.asked % 2 == 0:
            return ServiceState("activating", "auto-restart", 5, "run-5", 3)
        return ServiceState("failed", "failed", 4, "run-4", 3)


def test_a_daemon_that_fails_for_good_soon_after_an_update_gets_the_release_before(
    tmp_path: Path,
) -> None:
    store = ReleaseStore(tmp_path / "releases", factory=tmp_path / "factory")
    old = _fake_release(store, "1.0-aaa")
    new = _fake_release(store, "1.1-bbb")
    store.switch_to(old)
    store.switch_to(new)
    service = _GivenUp()
    updater = Updater(store, [], service, _no_check)
    kept_at = 1_000_000.0
    # No update kept: a failing daemon is its settings' or the camera's business.
    assert updater.after_failure(kept_at, settle=0) is None
    start_trial(store.root, Trial("1.1", str(new.path), str(old.path), kept_at))
    # Three days on the trial is over.
    assert updater.after_failure(kept_at + 3 * 86400, settle=0) is None
    assert store.current() == new and service.restarts == 0
    # systemd about to restart it by itself: not given up on yet.
    service.restarting = True
    assert updater.after_failure(kept_at + 60, settle=0) is None
    service.restarting = False
    # Someone went back by hand: nothing to do.
    store.switch_to(old)
    assert updater.after_failure(kept_at + 60, settle=0) is None
    store.switch_to(new)
    # An upload refused since does not end the trial of the release still running.
    write_status(store.root, UpdateStatus("refused", "", str(new.path), reason="unsigned"))
    # Five hours after it was kept systemd gave up: the release before comes back.
    undone = updater.after_failure(kept_at + 5 * 3600, settle=0)
    assert undone is not None and undone.state == "rolled_back" and undone.version == "1.1"
    assert "kept failing 5.0 h after the update was kept" in undone.reason
    assert store.current() == old and not new.path.exists()
    assert service.restarts == 1
    status = read_status(store.root)
    assert status is not None and status.state == "rolled_back"
    assert updater.after_failure(kept_at + 5 * 3600, settle=0) is None  # once
    # A clock set back since the update (no clock of its own before the network's)
    # keeps the trial on.
    newer = _fake_release(store, "1.2-ccc")
    store.switch_to(newer)
    start_trial(store.root, Trial("1.2", str(newer.path), str(old.path), kept_at))
    undone = updater.after_failure(kept_at - 3600, settle=0)
    assert undone is not None and store.current() == old


def test_the_trial_waits_for_an_update_under_way(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases", factory=tmp_path / "factory")
    old = _fake_release(store, "1.0-aaa")
    new = _fake_release(store, "1.1-bbb")
    store.switch_to(old)
    store.switch_to(new)
    start_trial(store.root, Trial("1.1", str(new.path), str(old.path), time.time()))
    service = _GivenUp()
    updater = Updater(store, [], service, _no_check)
    import fcntl
    import threading

    fd = os.open(store.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    outcome: list[UpdateStatus | None] = []
    waiting = threading.Thread(target=lambda: outcome.append(updater.after_failure()))
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive() and store.current() == new  # held off by the update
    # The update ended by restarting the daemon, which now runs.
    service.running = True
    os.close(fd)
    waiting.join(10)
    assert outcome == [None] and store.current() == new and service.restarts == 0


class _NoService:
    def restart(self) -> None:
        raise AssertionError("recovery runs before the daemon: it restarts nothing")

    def state(self) -> ServiceState:
        raise AssertionError("not asked")


async def _no_check(within: float) -> str:
    raise AssertionError("not asked")


@pytest.mark.skipif(os.geteuid() != 0, reason="`peercam update` installs as root")
def test_the_command_refuses_a_tampered_bundle_and_says_why(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    good = _fake_bundle(tmp_path, keys, "good.bundle")
    tampered = tmp_path / "tampered.bundle"
    with zipfile.ZipFile(good) as archive:
        raw = archive.read(MANIFEST).replace(b"9.0.0", b"9.0.1")
    _rewrite(good, tampered, {MANIFEST: raw})
    config = tmp_path / "peercam.toml"
    releases = tmp_path / "releases"
    config.write_text("")
    env = {**os.environ, KEYS_VARIABLE: str(keys[1]), RELEASES_VARIABLE: str(releases)}
    done = subprocess.run(
        [sys.executable, "-m", "peercam", "update", "--config", str(config), str(tampered)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "refused: the signature does not match" in done.stderr
    assert "Traceback" not in done.stderr
    status = read_status(releases)
    assert status is not None and status.state == "refused"
    assert not (releases / "releases").exists()
    shown = subprocess.run(
        [sys.executable, "-m", "peercam", "update", "--config", str(config), "--status"],
        capture_output=True, text=True, timeout=60, check=True, env=env,
    )  # fmt: skip
    assert json.loads(shown.stdout)["state"] == "refused"

    # What the page left for root (peercam-update.service): copied out of the daemon's
    # directory, checked, and gone from both places whatever the outcome; a link left
    # there instead of a file is not followed.
    state = tmp_path / "state"
    (state / "update").mkdir(parents=True)
    (state / "update" / "incoming.bundle").write_bytes(tampered.read_bytes())
    uploaded = [sys.executable, "-m", "peercam", "update", "--config", str(config),
                "--uploaded", "--state-dir", str(state)]  # fmt: skip
    done = subprocess.run(uploaded, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and "refused: the signature does not match" in done.stderr
    assert not (state / "update" / "incoming.bundle").exists()
    assert not (releases / "uploaded.bundle").exists()
    (state / "update" / "incoming.bundle").symlink_to(good)
    done = subprocess.run(uploaded, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and "no uploaded bundle" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (state / "update" / "incoming.bundle").is_symlink() and good.is_file()


def _daemon_taking_updates(
    tmp_path: Path, keys: tuple[Path, Path], start_daemon: StartDaemon
) -> tuple[DaemonProcess, Path]:
    """A daemon trusting the test key, and where its updates' status is written."""
    releases = tmp_path / "releases"
    daemon = start_daemon(
        CAMERA_320, env={KEYS_VARIABLE: str(keys[1]), RELEASES_VARIABLE: str(releases)}
    )
    return daemon, releases


def _fake_bundle(tmp_path: Path, keys: tuple[Path, Path], name: str) -> Path:
    """A signed bundle of random bytes named as wheels: whole, never installable."""
    bundle = tmp_path / name
    make_bundle(_fake_wheels(tmp_path / f"{name}-wheels"), load_signing_key(keys[0].read_bytes()),
                bundle, machine=BOARD[0], python=BOARD[1])  # fmt: skip
    return bundle


def test_the_page_takes_a_signed_upload_for_the_updater_and_refuses_others(
    tmp_path: Path, keys: tuple[Path, Path], start_daemon: StartDaemon
) -> None:
    daemon, _ = _daemon_taking_updates(tmp_path, keys, start_daemon)
    good = _fake_bundle(tmp_path, keys, "good.bundle")
    tampered = tmp_path / "tampered.bundle"
    _rewrite(good, tampered, {SIGNATURE: None})

    def post(body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            daemon.base + "/api/update", data=body, method="POST",
            headers={**(basic("admin", TEST_PASSWORD) if headers is None else headers),
                     "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        try:
            context = daemon.access.ssl_context()
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read()
            json_body = error.headers.get_content_type() == "application/json"
            return error.code, json.loads(text) if json_body else {"text": text.decode()}

    incoming = daemon.state_dir / "update" / "incoming.bundle"
    status, body = post(tampered.read_bytes())
    assert status == 422 and body["error"] == "the bundle is not signed"
    status, body = post(b"")
    assert status == 400
    status, body = post(b"PK\x03\x04 not really")
    assert status == 422 and "not a peercam update bundle" in str(body["error"])
    assert not incoming.exists()
    status, body = post(good.read_bytes(), {})
    assert status == 401
    assert not incoming.exists()

    status, body = post(good.read_bytes())
    assert status == 202 and body == {"version": "9.0.0", "state": "waiting"}
    assert incoming.read_bytes() == good.read_bytes()
    status, body = post(good.read_bytes())
    assert status == 409
    state = json.loads(daemon.get("/api/update"))
    assert state["waiting"] is True and state["release"] == "factory"
    assert not list((daemon.state_dir / "update").glob(".upload*"))

    # The updater's self-check key: a viewer's rights, from loopback only.
    checker_key = read_local_check_key(daemon.state_dir)
    as_checker = daemon.access.with_headers(bearer(checker_key))
    assert b"<html" in as_checker.urlopen("/").lower()
    with pytest.raises(urllib.error.HTTPError) as refused:
        as_checker.urlopen("/api/update")
    assert refused.value.code == 403
    checker = LocalCheckKey(tmp_path / "elsewhere")
    checker.renew()
    fresh = read_local_check_key(tmp_path / "elsewhere")
    assert checker.matches(fresh, "127.0.0.1") and checker.matches(fresh, "::1")
    assert not checker.matches(fresh, "192.168.1.20")
    assert not checker.matches(checker_key, "127.0.0.1")  # another daemon's


def test_chromium_uploads_from_the_settings_page_and_follows_the_outcome(
    tmp_path: Path, keys: tuple[Path, Path], start_daemon: StartDaemon
) -> None:
    """As an admin does it: a wrong file is refused beside the form; a good one is
    taken, and the page follows the updater (here the test writes its verdict, as
    the root updater does across the daemon's restart) to what it did."""
    from tests.browser import chromium, open_page, wait_js

    daemon, releases = _daemon_taking_updates(tmp_path, keys, start_daemon)
    good = _fake_bundle(tmp_path, keys, "good.peercam-update")
    tampered = tmp_path / "tampered.peercam-update"
    _rewrite(good, tampered, {"wheels/pip-26.0-py3-none-any.whl": b"changed"})
    with chromium() as browser:
        page = browser.new_page()
        open_page(page, daemon.base, "/settings")
        wait_js(page, "document.body.dataset.loaded !== undefined")
        wait_js(page, "document.getElementById('update-running').textContent.includes('peercam')")
        assert "(as installed)" in (page.text_content("#update-running") or "")
        assert page.text_content("#update-last") == "No update yet."

        page.set_input_files("#update-file", str(tampered))
        page.click("#update-form button[type=submit]")
        page.locator("#update-error").wait_for(state="visible")
        assert "pip-26.0-py3-none-any.whl differs from the signed manifest" in (
            page.text_content("#update-error") or ""
        )
        page.set_input_files("#update-file", str(good))
        page.click("#update-form button[type=submit]")
        wait_js(page, "document.getElementById('update-last').textContent"
                ".includes('Checked: peercam 9.0.0')")  # fmt: skip
        assert (daemon.state_dir / "update" / "incoming.bundle").exists()
        write_status(releases, UpdateStatus("switched", "9.0.0").ended(
            "rolled_back", reason="the new daemon exited at start (status 3)"))  # fmt: skip
        wait_js(page, "document.getElementById('update-last').dataset.state === 'rolled_back'")
        assert "rolled back: the new daemon exited at start (status 3)" in (
            page.text_content("#update-last") or ""
        )


def test_the_signing_script_makes_a_key_pair_and_a_bundle_the_camera_accepts(
    tmp_path: Path,
) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "make-update-bundle.py")]
    subprocess.run([*script, "keygen", str(tmp_path / "keys")], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    signing = tmp_path / "keys" / "peercam-update-signing.pem"
    assert signing.stat().st_mode & 0o777 == 0o600
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (tmp_path / "keys" / "peercam-update-public.pem").rename(trusted / "release.pem")
    wheels = tmp_path / "w"
    _fake_wheels(wheels)
    out = tmp_path / "release.peercam-update"
    done = subprocess.run(
        [*script, "pack", "--key", str(signing), "--machine", "aarch64", "--python", "3.11",
         str(wheels), str(out)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "peercam 9.0.0 for aarch64, Python 3.11, 3 wheels" in done.stdout
    verified = verify_bundle(out, load_trusted_keys(trusted), board=("aarch64", "3.11"))
    assert verified.manifest.version == "9.0.0"
    # A second keygen never overwrites a signing key.
    again = subprocess.run([*script, "keygen", str(tmp_path / "keys")], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert again.returncode == 1 and "is never overwritten" in again.stderr
    assert "Traceback" not in again.stderr
    (wheels / "pyalsaaudio-0.11.0.tar.gz").write_bytes(b"source")
    refused = subprocess.run(
        [*script, "pack", "--key", str(signing), "--machine", "aarch64", "--python", "3.11",
         str(wheels), str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1 and "not wheels" in refused.stderr


def test_hostile_archives_and_older_releases_are_refused_not_crashed_on(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, trusted_dir = keys
    trusted = load_trusted_keys(trusted_dir)
    key = load_signing_key(private.read_bytes())
    good = _fake_bundle(tmp_path, keys, "good.bundle")
    with zipfile.ZipFile(good) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}

    def written(name: str, change: Callable[[str, bytes], tuple[bytes, int]]) -> Path:
        """The bundle's entries rewritten: each (content, compression) by `change`."""
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as out:
            for entry, content in entries.items():
                data, compression = change(entry, content)
                out.writestr(entry, data, compress_type=compression)
        return path

    # Deflated (a bomb would be): refused before anything is inflated.
    deflated = written("deflated.bundle", lambda n, c: (c, zipfile.ZIP_DEFLATED))
    with pytest.raises(BundleRefused, match="compressed or encrypted"):
        verify_bundle(deflated, trusted)
    padded = b" " * 70_000
    big = written("big.bundle", lambda n, c: (c + padded if n == MANIFEST else c, 0))
    with pytest.raises(BundleRefused, match="manifest is too big"):
        verify_bundle(big, trusted)
    short = written("short.bundle", lambda n, c: (c[:10] if n == SIGNATURE else c, 0))
    with pytest.raises(BundleRefused, match="not an Ed25519 signature"):
        verify_bundle(short, trusted)
    # An entry whose stored bytes end early: the reader's own error, said as damage.
    raw = bytearray(good.read_bytes())
    at = raw.find(b"PK\x03\x04", raw.find(b"wheels/"))  # a later wheel's header
    raw[at - 100 : at] = b"\0" * 100
    (tmp_path / "torn.bundle").write_bytes(bytes(raw))
    with pytest.raises(BundleRefused):
        verify_bundle(tmp_path / "torn.bundle", trusted)
    # Older than what runs: refused unless root asks for it on the camera.
    with pytest.raises(BundleRefused, match=r"older than 10\.0 which runs"):
        verify_bundle(good, trusted, not_older_than="10.0")
    assert verify_bundle(good, trusted, not_older_than="9.0.0").manifest.version == "9.0.0"
    body = json.loads(entries[MANIFEST])
    body["version"] = "not a version"
    odd = json.dumps(body).encode()
    _rewrite(good, tmp_path / "odd.bundle", {MANIFEST: odd, SIGNATURE: key.sign(odd)})
    with pytest.raises(BundleRefused, match="is not one"):
        verify_bundle(tmp_path / "odd.bundle", trusted)


class _StoreWithoutPip(ReleaseStore):
    """Releases made instantly (a directory with bin/peercam), for the updater's own
    logic; real installs are test_a_good_update_is_kept..."""

    def install(self, bundle: VerifiedBundle) -> Release:
        return _fake_release(self, f"{bundle.manifest.version}-{bundle.manifest.digest[:12]}")


class _NeverReady:
    """A service that is restarted and then never reports ready."""

    def __init__(self) -> None:
        self.restarts = 0

    def restart(self) -> None:
        self.restarts += 1

    def state(self) -> ServiceState:
        return ServiceState("activating", "start", 0, f"run-{self.restarts}", None)


def test_an_update_stopped_half_way_switches_back_before_it_ends(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store = _StoreWithoutPip(tmp_path / "releases", factory=tmp_path / "factory")
    (tmp_path / "factory" / "bin").mkdir(parents=True)
    (tmp_path / "factory" / "bin" / "peercam").write_text("#!/bin/sh\n")
    old = _fake_release(store, "1.0-aaa")
    store.switch_to(old)
    bundle = _fake_bundle(tmp_path, keys, "new.bundle")
    service = _NeverReady()
    updater = Updater(store, load_trusted_keys(keys[1]), service, _no_check, board=BOARD,
                      poll_interval=0.05)  # fmt: skip

    async def stop_half_way() -> None:
        task = asyncio.create_task(updater.apply(bundle))
        for _ in range(500):
            found = read_status(store.root)
            if found is not None and found.state == "switched":
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # waiting for the never-ready daemon
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_half_way())
    status = read_status(store.root)
    assert status is not None and status.state == "rolled_back"
    assert "interrupted (CancelledError" in status.reason
    assert store.current() == old
    assert [p.name for p in store.releases.iterdir()] == ["1.0-aaa"]
    assert service.restarts == 2  # into the new release, and back


def test_the_self_check_key_works_on_loopback_however_the_daemon_listens(tmp_path: Path) -> None:
    anywhere = LocalCheckKey(tmp_path / "a")
    anywhere.renew()
    key = read_local_check_key(tmp_path / "a")
    assert anywhere.matches(key, "::ffff:127.0.0.1")  # a dual-stack socket's view
    assert not anywhere.matches(key, "::ffff:192.168.1.2")
    one_address = LocalCheckKey(tmp_path / "b", "192.168.1.2")
    one_address.renew()
    key = read_local_check_key(tmp_path / "b")
    assert one_address.matches(key, "192.168.1.2") and not one_address.matches(key, "192.168.1.3")
    config = load_config(None, {"server": {"host": "192.168.1.2", "port": 8443}})
    assert SelfCheckTarget.of(config, "k").url == "https://192.168.1.2:8443/"
    config = load_config(None, {"server": {"host": "::", "port": 9}})
    assert SelfCheckTarget.of(config, "k").url == "https://[::1]:9/"
    assert SelfCheckTarget.of(load_config(None), "k").url == "https://127.0.0.1:8443/"


def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0:
        return False
    command = ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import peercam"]
    tried = subprocess.run(command, capture_output=True, timeout=60)
    return tried.returncode == 0


@pytest.mark.skipif(
    not _nobody_can_run_python(),
    reason="needs root, and this environment's Python readable by `nobody` "
    "(the card's /usr/bin/python3 is; make image-test runs it there)",
)
def test_root_runs_the_self_check_as_nobody(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(CAMERA_320)
    key = read_local_check_key(daemon.state_dir)
    target = SelfCheckTarget(daemon.base + "/", key, tls=True)
    assert asyncio.run(check_unprivileged(target, 30)) == "320x240"
    with pytest.raises(SelfCheckFailed, match="refused"):
        asyncio.run(check_unprivileged(SelfCheckTarget(daemon.base + "/", "wrong", True), 30))
