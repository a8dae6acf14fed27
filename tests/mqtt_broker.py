"""A real MQTT broker for the tests: Debian's mosquitto, with TLS (its own CA) and a
password, on a free port of 127.0.0.1. It can be killed and started again on the same
port, as a broker restarting under a running camera would be.

Broker(directory, websockets=True) adds a plain (no TLS) MQTT-over-WebSocket listener
on another port of 127.0.0.1, for the page's client (web/mqtt_ws.js), with the same
password. Debian's mosquitto 2.0.11 is built with websockets, but refuses to start with
a websockets listener alone ("Unable to start any listening sockets"): it always comes
second, beside the TLS one."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.free_ports import unused_tcp_port

USER, PASSWORD = "peercam", "broker-secret"
# mosquitto's line for each message a client publishes (log_type all).
_RECEIVED = re.compile(
    r"Received PUBLISH from (?P<client>\S+) \(d\d, q\d, r(?P<retain>\d), m\d+, '(?P<topic>[^']*)'"
)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_tls(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for `host` (an address) signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test broker CA"))
        .issuer_name(_name("test broker CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


class Broker:
    def __init__(
        self,
        directory: Path,
        websockets: bool = False,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        """`netns`: run inside that network namespace, listening on `host` there; its
        WebSocket listener then uses TLS too (wss://), as a page served over HTTPS
        may open no plain WebSocket to another host."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is not installed (make install-test installs it)")
        self.binary = binary
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.host = host
        self.netns = netns
        self.ca, cert, key = _write_tls(directory, host)
        passwords = directory / "passwords"
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(passwords), USER, PASSWORD],
            check=True, capture_output=True,
        )  # fmt: skip
        passwords.chmod(0o600)
        self.port = unused_tcp_port()
        self.ws_port: int | None = None
        while websockets and self.ws_port in (None, self.port):
            self.ws_port = unused_tcp_port()
        self.config = directory / "mosquitto.conf"
        tls = f"cafile {self.ca}\ncertfile {cert}\nkeyfile {key}\n"
        self.config.write_text(
            f"listener {self.port} {host}\n"
            + tls
            # Per listener: the TLS files above belong to the first listener only;
            # the password applies to every listener.
            + (
                f"listener {self.ws_port} {host}\nprotocol websockets\n" + (tls if netns else "")
                if self.ws_port is not None
                else ""
            )
            + f"allow_anonymous false\npassword_file {passwords}\n"
            "persistence false\n"
            # As root, mosquitto would drop to its own user, which cannot read the
            # test's files under pytest's private temporary directory.
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"log_dest file {directory / 'mosquitto.log'}\n"
            "log_type all\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        """The WebSocket listener's address (Broker(..., websockets=True) only)."""
        assert self.ws_port is not None, "this broker has no websockets listener"
        return f"{'wss' if self.netns else 'ws'}://{self.host}:{self.ws_port}/"

    def start(self) -> None:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.process = subprocess.Popen([*prefix, self.binary, "-c", str(self.config)])
        try:
            self._wait_listening(prefix)
        except BaseException:
            self.kill()  # never a broker left running behind a failed start
            raise

    def _wait_listening(self, prefix: list[str]) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 10
        for port in (self.port, self.ws_port):
            if port is None:
                continue
            while self.netns is not None:
                listening = subprocess.run(
                    [*prefix, "ss", "-lnt"], capture_output=True, text=True, check=False
                ).stdout
                # The WebSocket listener binds every address (libwebsockets in 2.0.11
                # ignores the listener's address): the port is what to look for.
                if f":{port} " in listening:
                    break
                if self.process.poll() is not None:
                    pytest.fail(f"mosquitto exited: {self.log()[-2000:]}")
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.05)
            while self.netns is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if self.process.poll() is not None:
                        pytest.fail(f"mosquitto exited: {self.log()[-2000:]}")
                    assert time.monotonic() < deadline, "mosquitto did not listen"
                    time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def published(self) -> list[tuple[str, str, bool]]:
        """(client, topic, retained) of each PUBLISH the broker received, from its own
        log: what it was sent, whether or not any subscriber was there to see it."""
        found = []
        for match in _RECEIVED.finditer(self.log()):
            found.append((match["client"], match["topic"], match["retain"] == "1"))
        return found

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def peercam_config(self, **more: object) -> str:
        """The daemon's [mqtt] section for this broker."""
        lines = [
            "[mqtt]",
            "enabled = true",
            'host = "127.0.0.1"',
            f"port = {self.port}",
            "tls = true",
            f'ca_file = "{self.ca}"',
            f'username = "{USER}"',
            f'password = "{PASSWORD}"',
            *(f"{key} = {_toml(value)}" for key, value in more.items()),
        ]
        return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
