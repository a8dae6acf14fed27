"""A home, the internet and a phone, in network namespaces, for remote access.

    nat-home (camera)  192.168.77.2 ─ 192.168.77.1  nat-hgw  100.64.0.2 ─┐
                       192.168.78.1 ─┐             (home router: NAT)     │
                                     │                                   nat-inet
    nat-phone          192.168.78.2 ─┘ "home Wi-Fi"                       │ 203.0.113.10:
    (Chromium)         10.88.0.2 ─ 10.88.0.1  nat-pgw  100.65.0.2 ───────┘ mosquitto, coturn
                       "mobile data"         (carrier NAT)

Both routers masquerade and let nothing in that was not an answer to something sent
out (conntrack ESTABLISHED,RELATED): the camera cannot be reached from outside at all,
as behind a home router with no port forward or a carrier-grade NAT. The internet
routes only between the routers' public sides and its own server address.

The phone starts at home (its Wi-Fi link straight to the camera, where it pairs and
the page is cached) and then leaves: `leave_home` takes the Wi-Fi link down and
brings mobile data up, as a phone walking out of the door does. Only addresses in
these namespaces are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.netns import add_namespace, in_ns, run

HOME, HOME_ROUTER, INTERNET, PHONE_ROUTER, PHONE = (
    "nat-home", "nat-hgw", "nat-inet", "nat-pgw", "nat-phone",
)  # fmt: skip
NAMESPACES = (HOME, HOME_ROUTER, INTERNET, PHONE_ROUTER, PHONE)
CAMERA_WIFI_IP = "192.168.78.1"  # the camera as the phone reaches it at home
SERVER_IP = "203.0.113.10"  # mosquitto and coturn, "on the internet"
HOME_PUBLIC, PHONE_PUBLIC = "100.64.0.2", "100.65.0.2"
TURN_PORT = 3478
TURN_SECRET = "peercam-nat-secret"


def why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "turnserver", "mosquitto"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is needed (make install-test installs it)"
    return None


def _link(a: str, a_name: str, a_ip: str, b: str, b_name: str, b_ip: str) -> None:
    run("ip", "link", "add", a_name, "netns", a, "type", "veth", "peer", "name", b_name,
        "netns", b)  # fmt: skip
    for namespace, name, address in ((a, a_name, a_ip), (b, b_name, b_ip)):
        in_ns(namespace, "ip", "addr", "add", address, "dev", name)
        in_ns(namespace, "ip", "link", "set", name, "up")


def _masquerade(router: str, inside: str, outside: str) -> None:
    """NAT with no way in: only answers to what went out."""
    in_ns(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    in_ns(router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", outside, "-j", "MASQUERADE")
    in_ns(router, "iptables", "-P", "FORWARD", "DROP")
    in_ns(router, "iptables", "-A", "FORWARD", "-i", inside, "-o", outside, "-j", "ACCEPT")
    in_ns(router, "iptables", "-A", "FORWARD", "-i", outside, "-o", inside, "-m", "conntrack",
          "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
    # Nothing from outside reaches the router itself either (no open port to forward).
    in_ns(router, "iptables", "-A", "INPUT", "-i", outside, "-m", "conntrack", "--ctstate",
          "NEW", "-j", "DROP")  # fmt: skip


def _teardown() -> None:
    for namespace in NAMESPACES:
        run("ip", "netns", "del", namespace, check=False)


@contextmanager
def network() -> Iterator[None]:
    _teardown()
    try:
        for namespace in NAMESPACES:
            add_namespace(namespace)
        _link(HOME, "lan0", "192.168.77.2/24", HOME_ROUTER, "lan1", "192.168.77.1/24")
        in_ns(HOME, "ip", "route", "add", "default", "via", "192.168.77.1")
        _link(HOME_ROUTER, "wan0", f"{HOME_PUBLIC}/24", INTERNET, "home1", "100.64.0.1/24")
        in_ns(HOME_ROUTER, "ip", "route", "add", "default", "via", "100.64.0.1")
        _masquerade(HOME_ROUTER, "lan1", "wan0")
        _link(PHONE_ROUTER, "wan0", f"{PHONE_PUBLIC}/24", INTERNET, "phone1", "100.65.0.1/24")
        in_ns(PHONE_ROUTER, "ip", "route", "add", "default", "via", "100.65.0.1")
        _link(PHONE, "mob0", "10.88.0.2/24", PHONE_ROUTER, "lan1", "10.88.0.1/24")
        _masquerade(PHONE_ROUTER, "lan1", "wan0")
        in_ns(INTERNET, "ip", "addr", "add", f"{SERVER_IP}/32", "dev", "lo")
        in_ns(INTERNET, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The home Wi-Fi: the phone straight to the camera. Mobile data waits.
        _link(HOME, "wifi1", f"{CAMERA_WIFI_IP}/24", PHONE, "wifi0", "192.168.78.2/24")
        in_ns(PHONE, "ip", "link", "set", "mob0", "down")
        # A default route: Chromium gathers no host candidates without one.
        in_ns(PHONE, "ip", "route", "add", "default", "via", CAMERA_WIFI_IP)
        yield
    finally:
        _teardown()


def leave_home() -> None:
    """The phone walks out: Wi-Fi gone, mobile data up behind the carrier's NAT."""
    in_ns(PHONE, "ip", "link", "set", "wifi0", "down")
    in_ns(PHONE, "ip", "link", "set", "mob0", "up")
    in_ns(PHONE, "ip", "route", "replace", "default", "via", "10.88.0.1")


def block_direct_udp() -> None:
    """No direct path between the two NATs (as between two symmetric NATs): UDP from
    one router's public side to the other's is dropped; the server stays reachable."""
    for source, target in ((HOME_PUBLIC, PHONE_PUBLIC), (PHONE_PUBLIC, HOME_PUBLIC)):
        in_ns(INTERNET, "iptables", "-A", "FORWARD", "-p", "udp", "-s", source, "-d", target,
              "-j", "DROP")  # fmt: skip


def reachable_from_phone(address: str, port: int) -> bool:
    """Whether a TCP connection from the phone to `address` gets through."""
    script = (
        "import socket,sys\n"
        "try:\n"
        f" socket.create_connection(('{address}', {port}), timeout=3).close()\n"
        "except OSError:\n"
        " sys.exit(1)\n"
    )
    return in_ns(PHONE, "python3", "-c", script, check=False).returncode == 0


class Coturn:
    def __init__(self, log: str) -> None:
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", INTERNET, "turnserver", "-n", "--no-cli", "--no-dtls",
                 "--no-tls", f"--listening-ip={SERVER_IP}", f"--relay-ip={SERVER_IP}",
                 f"--listening-port={TURN_PORT}", "--use-auth-secret",
                 f"--static-auth-secret={TURN_SECRET}", "--realm=peercam.test",
                 "--fingerprint", "--log-file=stdout", "--simple-log"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def listening(self) -> bool:
        return f"{SERVER_IP}:{TURN_PORT}" in in_ns(INTERNET, "ss", "-lnu", check=False).stdout

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
