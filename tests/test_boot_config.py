"""The boot partition's peercam.txt, and the admin password set from it."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from peercam.auth.passwords import verify_password
from peercam.auth.store import CredentialStore
from peercam.firstboot.boot_config import parse_boot_config
from peercam.firstboot.password import apply_boot_password


def test_the_format_a_user_writes_by_hand() -> None:
    config = parse_boot_config(
        "\ufeff# peercam settings\n"
        "wifi_ssid = My Home Wi-Fi   # the network\n"
        'password = "pa#ss word"\n'
        "\n"
        "Hostname='doorbell'\n"
        "this line is wrong\n"
        "hostname = frontdoor\n"
    )
    assert config.values == {
        "wifi_ssid": "My Home Wi-Fi",
        "password": "pa#ss word",
        "hostname": "frontdoor",
    }
    assert config.lines["password"] == 3
    assert config.problems == [
        "line 6: expected `key = value`, got 'this line is wrong'",
        "line 7: hostname is set twice; the last one counts",
    ]


def test_the_password_is_hashed_and_removed_from_the_card(tmp_path: Path) -> None:
    boot = tmp_path / "peercam.txt"
    boot.write_text("hostname = frontdoor\npassword = 'correct horse'\ncamera = auto\n")
    store = CredentialStore(tmp_path / "state")
    assert apply_boot_password(boot, store) is None
    assert verify_password(store.users["admin"].password_hash, "correct horse")
    text = boot.read_text()
    assert "correct horse" not in text
    assert "hostname = frontdoor" in text and "camera = auto" in text
    assert "# password = (set " in text
    assert stat.S_IMODE(boot.stat().st_mode) == 0o600
    # Run again (the next boot): nothing to do, the password stays.
    assert apply_boot_password(boot, store) is None
    assert verify_password(store.users["admin"].password_hash, "correct horse")


def test_a_short_password_stays_on_the_card_with_a_reason(tmp_path: Path) -> None:
    boot = tmp_path / "peercam.txt"
    boot.write_text("password = short\n")
    store = CredentialStore(tmp_path / "state")
    problem = apply_boot_password(boot, store)
    assert problem is not None and "line 1" in problem and "at least 8 characters" in problem
    assert "admin" not in store.users and "password = short" in boot.read_text()


def test_the_command_line_takes_it_from_the_boot_partition(tmp_path: Path) -> None:
    boot = tmp_path / "peercam.txt"
    boot.write_text("password = from-the-card\n")
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "passwd", "--state-dir", str(tmp_path / "state"),
         "--from-boot-config", str(boot)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    store = CredentialStore(tmp_path / "state")
    assert verify_password(store.users["admin"].password_hash, "from-the-card")
