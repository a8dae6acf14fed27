"""First boot applies the boot partition's peercam.txt: run against a scratch root
laid out like the camera's, never against this machine's /etc."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
import urllib.error
from pathlib import Path

import pytest

from peercam.auth.passwords import verify_password
from peercam.auth.setup_code import SetupCode
from peercam.auth.store import CredentialStore
from peercam.config import load_config
from peercam.firstboot.first_boot import (
    UNIT,
    FirstBootPaths,
    recorded_problems,
    run_first_boot,
)
from peercam.firstboot.system_root import SystemRoot
from peercam.firstboot.writable_root import on_read_only
from tests.access import Access, basic
from tests.conftest import StartDaemon

FIRSTBOOT_LINK = "etc/systemd/system/multi-user.target.wants/" + UNIT
SSH_LINK = "etc/systemd/system/multi-user.target.wants/ssh.service"
WPA_LINK = "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5Zm9ydGVzdHNvbmx5bm90cmVhbA me@pc"


@pytest.fixture
def root(tmp_path: Path) -> SystemRoot:
    """A root as the image has it: hosts file, the first-boot unit enabled."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tpeercam\n")
    (tmp_path / "boot/firmware").mkdir(parents=True)
    link = tmp_path / FIRSTBOOT_LINK
    link.parent.mkdir(parents=True)
    link.symlink_to("/lib/systemd/system/" + UNIT)
    return SystemRoot(tmp_path)


def boot_file(root: SystemRoot, text: str) -> Path:
    path = root.at("/boot/firmware/peercam.txt")
    path.write_text(text)
    return path


def first_boot(root: SystemRoot, *, only_if_changed: bool = False) -> list[str]:
    result = run_first_boot(root, FirstBootPaths.within(root), only_if_changed=only_if_changed)
    return result.problems


def test_a_whole_card_applies_and_its_secrets_leave_it(root: SystemRoot) -> None:
    card = boot_file(
        root,
        "# peercam settings\n"
        "password = 'correct horse battery'\n"
        "wifi_ssid = IEEE\n"
        "wifi_password = password\n"
        "wifi_country = gb\n"
        "hostname = FrontDoor\n"
        "camera = test\n"
        "fps = 15\n"
        "video.codecs = h264\n"
        "gpio.doorbell_pin = 17\n",
    )
    assert first_boot(root) == []

    assert root.at("/etc/hostname").read_text() == "frontdoor\n"
    hosts = root.at("/etc/hosts").read_text()
    assert "127.0.1.1\tfrontdoor" in hosts and "\tpeercam" not in hosts
    # wpa_supplicant gets the derived key (IEEE 802.11i's own test vector), not the text.
    wpa = root.at("/etc/wpa_supplicant/wpa_supplicant-wlan0.conf")
    assert "psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e" in (
        wpa.read_text()
    )
    assert f"ssid={b'IEEE'.hex()}" in wpa.read_text() and "country=GB" in wpa.read_text()
    assert "password" not in wpa.read_text()
    assert stat.S_IMODE(wpa.stat().st_mode) == 0o600
    assert (root.path / WPA_LINK).is_symlink()
    assert "ieee80211_regdom=GB" in root.at("/etc/modprobe.d/peercam-wifi-country.conf").read_text()

    store = CredentialStore(root.at("/var/lib/peercam"))
    assert verify_password(store.users["admin"].password_hash, "correct horse battery")
    left = card.read_text()
    assert "correct horse" not in left and "wifi_password = password" not in left
    assert "wifi_ssid = IEEE" in left and "fps = 15" in left

    settings = root.at("/etc/peercam/peercam.toml")
    assert tomllib.loads(settings.read_text()) == {
        "camera": {"source": "test", "fps": 15},
        "video": {"codecs": ["h264"]},
        "gpio": {"doorbell_pin": 17},
    }
    config = load_config(settings)
    assert config.camera.fps == 15 and config.gpio.doorbell_pin == 17
    # Done once: the unit has disabled itself.
    assert not (root.path / FIRSTBOOT_LINK).is_symlink()
    assert recorded_problems(root.at("/var/lib/peercam")) == []


def test_bad_values_are_reported_and_the_rest_applies(root: SystemRoot) -> None:
    card = boot_file(
        root,
        "password = short\n"
        "hostname = -bad_name-\n"
        "wifi_ssid = Home\n"
        "wifi_password = 1234\n"
        "fps = 500\n"
        "camera = webcam\n"
        "resolution = 640x480\n"
        "gpio.no_such_pin = 3\n"
        "colour = blue\n"
        "this is not a setting\n",
    )
    problems = first_boot(root)
    text = "\n".join(problems)
    for expected in (
        "line 10: expected `key = value`",
        "line 9: unknown setting colour",
        "hostname '-bad_name-' not used",
        "wifi_password must have 8 to 63 characters",
        "line 5: fps = '500' not used: camera.fps: Input should be less than or equal to 60",
        "line 6: camera = 'webcam' not used",
        "line 8: gpio.no_such_pin = '3' not used: unknown key gpio.no_such_pin",
        "line 1: password not used: a password needs at least 8 characters",
    ):
        assert expected in text, (expected, problems)
    assert len(problems) == 8, problems
    # Secrets are not repeated in the messages.
    assert "1234" not in text and "short" not in text.replace("short password", "")
    # What was good still applied; the daemon starts on defaults for the rest.
    config = load_config(root.at("/etc/peercam/peercam.toml"))
    assert config.camera.size == "640x480" and config.camera.fps == 30
    assert config.camera.source == "auto"
    assert not root.at("/etc/hostname").exists()
    assert not root.at("/etc/wpa_supplicant/wpa_supplicant-wlan0.conf").exists()
    # The short password stays on the card, so the line the message names is there.
    assert "password = short" in card.read_text()
    assert "admin" not in CredentialStore(root.at("/var/lib/peercam")).users
    assert recorded_problems(root.at("/var/lib/peercam")) == problems


def test_network_manager_gets_a_keyfile(root: SystemRoot) -> None:
    root.at("/etc/NetworkManager/system-connections").mkdir(parents=True)
    boot_file(root, "wifi_ssid = ' Cafe \\ Net'\nwifi_password = 'a long secret'\n")
    assert first_boot(root) == []
    keyfile = root.at("/etc/NetworkManager/system-connections/peercam-wifi.nmconnection")
    text = keyfile.read_text()
    assert "ssid=\\sCafe \\\\ Net\n" in text and "psk=a long secret\n" in text
    assert "key-mgmt=wpa-psk" in text
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert not (root.path / WPA_LINK).exists()


def test_ssh_stays_off_without_a_key(root: SystemRoot) -> None:
    boot_file(root, "ssh = on\n")
    assert first_boot(root) == [
        "ssh = on needs ssh_key (password logins over SSH are off): SSH stays off"
    ]
    assert not (root.path / SSH_LINK).exists()


def test_ssh_with_a_key(root: SystemRoot) -> None:
    boot_file(root, f"ssh = yes\nssh_key = {KEY}\n")
    assert first_boot(root) == []
    assert (root.path / SSH_LINK).is_symlink()
    keys = root.at("/root/.ssh/authorized_keys")
    assert keys.read_text() == KEY + "\n"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    # Turned off again on a later edit of the card.
    boot_file(root, f"ssh = off\nssh_key = {KEY}\n")
    assert first_boot(root, only_if_changed=True) == []
    assert not (root.path / SSH_LINK).exists()
    assert keys.read_text() == KEY + "\n"


def test_an_edited_card_applies_again_and_an_unchanged_one_does_not(
    root: SystemRoot,
) -> None:
    boot_file(root, "password = 'first password'\nfps = 20\n")
    assert first_boot(root) == []
    state = root.at("/var/lib/peercam")
    before = (state / "firstboot.json").read_text()
    # The daemon's unit runs it before every start: nothing changed, nothing done.
    result = run_first_boot(root, FirstBootPaths.within(root), only_if_changed=True)
    assert not result.applied and (state / "firstboot.json").read_text() == before
    # A forgotten password: the user writes a new one on the card with a PC.
    card = root.at("/boot/firmware/peercam.txt")
    card.write_text(card.read_text() + "password = 'second password'\n")
    result = run_first_boot(root, FirstBootPaths.within(root), only_if_changed=True)
    assert result.applied and result.problems == []
    assert verify_password(CredentialStore(state).users["admin"].password_hash, "second password")
    assert load_config(root.at("/etc/peercam/peercam.toml")).camera.fps == 20


def test_an_invalid_settings_file_is_moved_aside(root: SystemRoot) -> None:
    settings = root.at("/etc/peercam/peercam.toml")
    settings.parent.mkdir(parents=True)
    settings.write_text("[camera]\nfps = 'many'\n")
    boot_file(root, "fps = 25\n")
    problems = first_boot(root)
    assert len(problems) == 1 and "moved to peercam.toml.invalid" in problems[0]
    assert load_config(settings).camera.fps == 25
    assert "'many'" in root.at("/etc/peercam/peercam.toml.invalid").read_text()


def test_no_card_file_disables_the_unit_and_changes_nothing(root: SystemRoot) -> None:
    result = run_first_boot(root, FirstBootPaths.within(root))
    assert not result.applied
    assert not (root.path / FIRSTBOOT_LINK).is_symlink()
    assert not root.at("/var/lib/peercam").exists()


def test_the_command(root: SystemRoot) -> None:
    boot_file(root, "password = 'correct horse battery'\nfps = 12\nnonsense = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "firstboot", "--root", str(root.path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "applied" in result.stdout and "(1 problems)" in result.stdout
    assert "peercam.txt: line 3: unknown setting nonsense" in result.stderr
    assert load_config(root.at("/etc/peercam/peercam.toml")).camera.fps == 12


def test_the_daemon_starts_on_safe_defaults_and_shows_what_was_not_used(
    root: SystemRoot, start_daemon: StartDaemon
) -> None:
    boot_file(root, "password = short\ncamera = test\nfps = 500\nresolution = 320x240\n")
    problems = first_boot(root)
    assert len(problems) == 2
    state = root.at("/var/lib/peercam")
    daemon = start_daemon(
        root.at("/etc/peercam/peercam.toml").read_text(),
        "--state-dir", str(state),
        env={"PEERCAM_PASSWORD": ""},
    )  # fmt: skip
    page = Access(daemon.base, state / "tls-cert.pem", {"Accept": "text/html"})
    # No admin yet (the card's password was too short): the setup page says why.
    try:
        page.urlopen("/")
        raise AssertionError("the setup page must answer 503")
    except urllib.error.HTTPError as error:
        assert error.code == 503
        body = error.read().decode()
    assert "Not used from peercam.txt" in body
    assert "password not used: a password needs at least 8 characters" in body
    assert "fps = &#x27;500&#x27; not used" in body  # escaped, not markup
    assert "; 320x240 at 30 fps" in daemon.log()
    # Once an admin exists, the page shows the same to admins, not to viewers.
    for user, role in (("admin", "admin"), ("guest", "viewer")):
        subprocess.run(
            [sys.executable, "-m", "peercam", "passwd", "--state-dir", str(state),
             "--user", user, "--role", role, "--stdin"],
            input="long enough password\n", check=True, timeout=60, text=True,
        )  # fmt: skip
    admin = page.with_headers(basic("admin", "long enough password"))
    assert json.loads(admin.urlopen("/api/session"))["notices"] == problems
    viewer = page.with_headers(basic("guest", "long enough password"))
    assert "notices" not in json.loads(viewer.urlopen("/api/session"))


def test_the_card_the_image_ships_applies_cleanly(root: SystemRoot) -> None:
    template = Path(__file__).resolve().parent.parent / "image-build/boot/peercam.txt"
    boot_file(root, template.read_text())
    assert first_boot(root) == []
    config = load_config(root.at("/etc/peercam/peercam.toml"))
    assert (config.camera.source, config.camera.size, config.camera.fps) == ("auto", "1280x720", 30)
    # No password on a fresh card: the daemon shows its setup page until one is set.
    assert not root.at("/var/lib/peercam/credentials.json").exists()
    assert root.at("/etc/hostname").read_text() == "peercam\n"


def test_a_card_without_a_password_shows_the_setup_code_until_an_admin_exists(
    root: SystemRoot,
) -> None:
    """Issue 23: the owner of a fresh card reads the code the camera's page asks for
    off the card itself; it stays the same across starts and goes once used."""
    boot_file(root, "camera = test\n")

    def firstboot() -> None:
        subprocess.run(
            [sys.executable, "-m", "peercam", "firstboot", "--root", str(root.path),
             "--if-changed"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    firstboot()
    card = root.at("/boot/firmware/peercam-setup.txt")
    state = root.at("/var/lib/peercam")
    code = SetupCode(state).current()
    assert code is not None
    assert f"peercam setup code: {code[:5]}-{code[5:]}" in card.read_text()
    assert "https://peercam.local:8443/" in card.read_text()
    written = card.stat().st_ino
    firstboot()  # the next start: the same code, the card's file left as it was
    assert SetupCode(state).current() == code and card.stat().st_ino == written
    subprocess.run(
        [sys.executable, "-m", "peercam", "passwd", "--state-dir", str(state), "--stdin"],
        input="long enough password\n", check=True, timeout=60, text=True,
    )  # fmt: skip
    firstboot()
    assert not card.exists() and SetupCode(state).current() is None


def test_the_time_zone_the_page_set_becomes_the_systems_at_the_next_start(
    root: SystemRoot,
) -> None:
    zoneinfo = root.at("/usr/share/zoneinfo/Europe/Berlin")
    zoneinfo.parent.mkdir(parents=True)
    zoneinfo.write_bytes(Path("/usr/share/zoneinfo/Europe/Berlin").read_bytes())
    config = root.at("/etc/peercam/peercam.toml")
    config.parent.mkdir(parents=True)
    config.write_text('[server]\ntime_zone = "Europe/Berlin"\n')
    subprocess.run(
        [sys.executable, "-m", "peercam", "firstboot", "--root", str(root.path), "--if-changed"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    localtime = root.at("/etc/localtime")
    assert os.readlink(localtime) == "/usr/share/zoneinfo/Europe/Berlin"
    assert root.at("/etc/timezone").read_text() == "Europe/Berlin\n"
    # The daemon may now rewrite its settings: its file and directory are its own.
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # A zone this system lacks is left alone, with a word in the journal.
    config.write_text('[server]\ntime_zone = "America/New_York"\n')
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "firstboot", "--root", str(root.path), "--if-changed"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert os.readlink(localtime) == "/usr/share/zoneinfo/Europe/Berlin"
    assert "no /usr/share/zoneinfo/America/New_York on this system" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")
def test_a_read_only_card_is_writable_for_the_step_that_writes_it_only(tmp_path: Path) -> None:
    """The image mounts its boot partition read-only: a step that must write there
    (a secret taken off peercam.txt, the setup code) gets it writable for that step
    alone, and finds it read-only again after."""
    card = tmp_path / "card"
    card.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "peercam-test", str(card)],
                   check=True)  # fmt: skip
    try:
        live = SystemRoot(Path("/"), live=True)
        target = card / "peercam-setup.txt"
        with pytest.raises(OSError):
            target.write_text("code")
        on_read_only(live, lambda: target.write_text("code"), target)
        assert target.read_text() == "code"
        assert os.statvfs(card).f_flag & os.ST_RDONLY
        # One that writes nothing there leaves it read-only throughout.
        assert on_read_only(live, target.read_text, target) == "code"
        # Not the live system (an image being prepared): never remounted.
        with pytest.raises(OSError):
            on_read_only(SystemRoot(tmp_path, live=False), lambda: target.write_text("x"), target)
    finally:
        subprocess.run(["umount", str(card)], check=True)
