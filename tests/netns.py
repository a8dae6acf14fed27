"""Test hosts in network namespaces: a camera, a viewer, and a router between them
that also runs the TURN server. Addresses exist only inside these namespaces.

    pc-cam  10.71.1.2 ── 10.71.1.1 ┐
                                   pc-net (forwards; TURN on 10.71.3.1)
    pc-view 10.71.2.2 ── 10.71.2.1 ┘

Rules to block paths are iptables rules in pc-net.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CAM, VIEW, NET = "pc-cam", "pc-view", "pc-net"
CAM_IP, VIEW_IP, TURN_IP = "10.71.1.2", "10.71.2.2", "10.71.3.1"
TURN_PORT = 3478
TURN_SECRET = "peercam-test-secret"


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=30)


def in_ns(namespace: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", namespace, *command, check=check)


def why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip") or not shutil.which("iptables"):
        return "iproute2 and iptables are needed"
    if not shutil.which("turnserver"):
        return "coturn's turnserver is needed"
    return None


def add_namespace(namespace: str) -> None:
    """A new namespace, its loopback up, IPv4 only. With IPv6 each link would get its
    link-local address a second or two after it came up (duplicate address detection),
    and a Chromium running by then takes that for a network change and fails what it
    was loading (net::ERR_NETWORK_CHANGED: seen as a page that never connected, in 2
    of ~20 clean-clone runs)."""
    run("ip", "netns", "add", namespace)
    in_ns(namespace, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
          "net.ipv6.conf.default.disable_ipv6=1")  # fmt: skip
    in_ns(namespace, "ip", "link", "set", "lo", "up")


def _teardown() -> None:
    for namespace in (CAM, VIEW, NET):
        run("ip", "netns", "del", namespace, check=False)


@contextmanager
def network() -> Iterator[None]:
    _teardown()
    try:
        for namespace in (CAM, VIEW, NET):
            add_namespace(namespace)
        for host, side, subnet in ((CAM, "cam", "10.71.1"), (VIEW, "view", "10.71.2")):
            run("ip", "link", "add", f"{side}0", "netns", host, "type", "veth",
                "peer", "name", f"{side}1", "netns", NET)  # fmt: skip
            in_ns(host, "ip", "addr", "add", f"{subnet}.2/24", "dev", f"{side}0")
            in_ns(host, "ip", "link", "set", f"{side}0", "up")
            # A default route: Chromium gathers no host candidates without one.
            in_ns(host, "ip", "route", "add", "default", "via", f"{subnet}.1")
            in_ns(NET, "ip", "addr", "add", f"{subnet}.1/24", "dev", f"{side}1")
            in_ns(NET, "ip", "link", "set", f"{side}1", "up")
        in_ns(NET, "ip", "addr", "add", f"{TURN_IP}/32", "dev", "lo")
        in_ns(NET, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield
    finally:
        _teardown()


def block_udp_between_hosts() -> None:
    """The direct path: UDP between camera and viewer is dropped; TCP (the page,
    signaling) and the TURN server stay reachable."""
    for source, target in (("10.71.1.0/24", "10.71.2.0/24"), ("10.71.2.0/24", "10.71.1.0/24")):
        in_ns(NET, "iptables", "-A", "FORWARD", "-p", "udp", "-s", source, "-d", target,
              "-j", "DROP")  # fmt: skip


def block_all_udp_from_viewer() -> None:
    """A network that lets no UDP out: the viewer can reach TURN only over TCP."""
    for chain in ("FORWARD", "INPUT"):
        in_ns(NET, "iptables", "-A", chain, "-p", "udp", "-s", "10.71.2.0/24", "-j", "DROP")


TLS_PORT = 5349


class Coturn:
    def __init__(
        self, log: Path, secret: str = TURN_SECRET, tls: tuple[Path, Path] | None = None
    ) -> None:
        self.log_path = log
        self.secret = secret
        self.tls = tls  # (certificate, key): also serve TURN over TLS on TLS_PORT
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", NET, "turnserver", "-n", "--no-cli", "--no-dtls",
             *self._tls_arguments(),
             f"--listening-ip={TURN_IP}", f"--relay-ip={TURN_IP}",
             f"--listening-port={TURN_PORT}", "--use-auth-secret",
             f"--static-auth-secret={self.secret}", "--realm=peercam.test", "--fingerprint",
             "--log-file=stdout", "--simple-log"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while f"{TURN_IP}" not in in_ns(NET, "ss", "-lnu", check=False).stdout:
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.1)

    def _tls_arguments(self) -> list[str]:
        if self.tls is None:
            return ["--no-tls"]
        certificate, key = self.tls
        return [f"--cert={certificate}", f"--pkey={key}", f"--tls-listening-port={TLS_PORT}"]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


PUBLIC_IP = "10.71.3.50"  # the router's "public" address, inside the test bed


def forward_ports_to_camera(first: int, last: int) -> None:
    """A home router's port forward: the public address's UDP ports reach the camera,
    and nothing else crosses between the two sides over UDP."""
    in_ns(NET, "ip", "addr", "add", f"{PUBLIC_IP}/32", "dev", "lo")
    in_ns(NET, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "-d", PUBLIC_IP,
          "--dport", f"{first}:{last}", "-j", "DNAT", "--to-destination", CAM_IP)  # fmt: skip
    for source, target in (("10.71.1.0/24", "10.71.2.0/24"), ("10.71.2.0/24", "10.71.1.0/24")):
        in_ns(NET, "iptables", "-A", "FORWARD", "-p", "udp", "-s", source, "-d", target,
              "-m", "conntrack", "!", "--ctstate", "DNAT", "-j", "DROP")  # fmt: skip


def block_plain_turn() -> None:
    """Only TURN over TLS gets through: the plain TURN port is closed both ways."""
    for protocol in ("udp", "tcp"):
        in_ns(NET, "iptables", "-A", "INPUT", "-p", protocol, "--dport", str(TURN_PORT),
              "-j", "DROP")  # fmt: skip


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signs for the TURN address: (ca, cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peercam test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TURN_IP)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(TURN_IP))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = directory / "ca.pem", directory / "turn.pem", directory / "turn.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return paths
