"""Wi-Fi and hostname from the boot partition.

Raspberry Pi OS manages Wi-Fi with NetworkManager; our Debian image with
wpa_supplicant and systemd-networkd. The step writes what the root has: a
NetworkManager keyfile, or a wpa_supplicant file for wlan0 (the passphrase stored as
its derived key, not as text) with its unit enabled."""

from __future__ import annotations

import hashlib
import re
import uuid

from peercam.firstboot.system_root import SystemRoot
from peercam.service.private_file import write_private

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
NM_CONNECTION = "/etc/NetworkManager/system-connections/peercam-wifi.nmconnection"
WPA_CONFIG = "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
COUNTRY_OPTION = "/etc/modprobe.d/peercam-wifi-country.conf"


def apply_hostname(values: dict[str, str], root: SystemRoot) -> list[str]:
    name = values.get("hostname", "").strip().lower()
    if not name:
        return []
    if not _HOSTNAME.match(name):
        return [
            f"hostname {name[:63]!r} not used: letters, digits and '-' only, "
            "at most 63, not starting or ending with '-'"
        ]
    root.at("/etc/hostname").write_text(name + "\n")
    hosts = root.at("/etc/hosts")
    lines = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1\tlocalhost"]
    lines = [line for line in lines if not line.startswith("127.0.1.1")]
    lines.append(f"127.0.1.1\t{name}")
    hosts.write_text("\n".join(lines) + "\n")
    root.set_kernel_hostname(name)
    return []


def _wifi_problem(ssid: str, passphrase: str, country: str) -> str | None:
    if not ssid:
        return "wifi_password or wifi_country given without wifi_ssid: Wi-Fi not set"
    if len(ssid.encode()) > 32:
        return "wifi_ssid is longer than 32 bytes: Wi-Fi not set"
    if passphrase and not (8 <= len(passphrase) <= 63 or _HEX_KEY.match(passphrase)):
        return "wifi_password must have 8 to 63 characters: Wi-Fi not set"
    if country and not _COUNTRY.match(country):
        return (
            f"wifi_country {country[:8]!r} is not a two-letter country code such as GB: "
            "Wi-Fi not set"
        )
    return None


def apply_wifi(values: dict[str, str], root: SystemRoot) -> list[str]:
    ssid = values.get("wifi_ssid", "")
    passphrase = values.get("wifi_password", "")
    country = values.get("wifi_country", "").strip().upper()
    if not (ssid or passphrase or country):
        return []
    problem = _wifi_problem(ssid, passphrase, country)
    if problem:
        return [problem]
    if country:
        # The radio's regulatory domain: channels and power allowed where it is.
        root.at(COUNTRY_OPTION).parent.mkdir(parents=True, exist_ok=True)
        root.at(COUNTRY_OPTION).write_text(f"options cfg80211 ieee80211_regdom={country}\n")
    if root.at("/etc/NetworkManager").is_dir():
        write_private(root.at(NM_CONNECTION), _nm_keyfile(ssid, passphrase).encode())
        return []
    write_private(root.at(WPA_CONFIG), _wpa_config(ssid, passphrase, country).encode())
    root.enable("wpa_supplicant@wlan0.service")
    return []


def _keyfile_escape(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return "\\s" + escaped[1:] if escaped.startswith(" ") else escaped


def _nm_keyfile(ssid: str, passphrase: str) -> str:
    security = (
        f"[wifi-security]\nkey-mgmt=wpa-psk\npsk={_keyfile_escape(passphrase)}\n\n"
        if passphrase
        else ""
    )
    return (
        "[connection]\nid=peercam-wifi\n"
        f"uuid={uuid.uuid4()}\ntype=wifi\nautoconnect=true\n\n"
        f"[wifi]\nmode=infrastructure\nssid={_keyfile_escape(ssid)}\n\n"
        f"{security}[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n"
    )


def _wpa_config(ssid: str, passphrase: str, country: str) -> str:
    # The SSID in hex: any byte an SSID may hold, with no quoting rules to get wrong.
    lines = ["ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev", "update_config=0"]
    if country:
        lines.append(f"country={country}")
    network = [f"\tssid={ssid.encode().hex()}", "\tscan_ssid=1"]
    if not passphrase:
        network.append("\tkey_mgmt=NONE")
    else:
        # WPA's pre-shared key is PBKDF2-HMAC-SHA1(passphrase, SSID, 4096, 32 bytes):
        # the card's passphrase does not stay on the camera as text.
        key = (
            passphrase.lower()
            if _HEX_KEY.match(passphrase)
            else hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()
        )
        network += ["\tkey_mgmt=WPA-PSK", f"\tpsk={key}"]
    return "\n".join([*lines, "network={", *network, "}"]) + "\n"
