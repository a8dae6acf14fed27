"""WS-Discovery (peercam/onvif/discovery.py) as ONVIF clients meet it: the WSDiscovery
client Home Assistant's ONVIF integration uses, and probes written by hand.

That client skips loopback addresses, so the camera and the client are two network
namespaces joined by a veth link. The camera has a second link too, holding its
default route: a camera that answered with its first or its default-route address
would name one the client cannot reach.

    camera ns: far0 10.73.2.1 (default route) ─ far1
               lan0 10.73.1.1 ───────────────── lan1 10.73.1.2 (.3)  client ns

The responder runs in a small process in the camera's namespace; the WSDiscovery
client in another in the client's. Hand-written probes leave from sockets the test
makes inside the client's namespace (see `socket_in`).
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peercam.onvif.discovery import SOURCE_BURST
from peercam.onvif.discovery_messages import (
    MATCH_STRCMP0,
    DiscoveryIdentity,
    MalformedMessage,
    Probe,
    onvif_scopes,
    parse_message,
    probe_matches,
    scope_matches,
)
from tests.netns import in_ns, run

ROOT = Path(__file__).resolve().parent.parent
CAMERA_IP, CLIENT_IP, SECOND_CLIENT_IP, FAR_IP = "10.73.1.1", "10.73.1.2", "10.73.1.3", "10.73.2.1"
GROUP, PORT = "239.255.255.250", 3702
DEVICE_UUID = "5f0c7c1e-2d3b-4c5d-9e8f-0a1b2c3d4e5f"
EPR = f"urn:uuid:{DEVICE_UUID}"
NAME, HARDWARE = "Entrée porch", "Raspberry Pi 4"
XADDR = f"http://{CAMERA_IP}:8000/onvif/device_service"

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"


def _why_no_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip") or not shutil.which("ss"):
        return "iproute2 (ip, ss) is needed"
    return None


def _why_no_client() -> str | None:
    if importlib.util.find_spec("wsdiscovery") is None:
        return "the WSDiscovery package (Home Assistant's ONVIF discovery client) is needed"
    return _why_no_namespaces()


needs_namespaces = pytest.mark.skipif(
    _why_no_namespaces() is not None, reason=str(_why_no_namespaces())
)
needs_client = pytest.mark.skipif(_why_no_client() is not None, reason=str(_why_no_client()))


# -- the two hosts -----------------------------------------------------------------

_names = itertools.count()


@dataclass(frozen=True)
class Link:
    camera: str  # namespace names
    client: str


@pytest.fixture
def link() -> Iterator[Link]:
    n = next(_names)
    hosts = Link(f"wsd{os.getpid()}-{n}-cam", f"wsd{os.getpid()}-{n}-cli")
    try:
        for namespace in (hosts.camera, hosts.client):
            run("ip", "netns", "add", namespace)
            in_ns(namespace, "ip", "link", "set", "lo", "up")
        cam = hosts.camera
        # Made first, so it is the camera's first interface as well as its way out.
        run("ip", "link", "add", "far0", "netns", cam, "type", "veth", "peer", "name", "far1",
            "netns", cam)  # fmt: skip
        in_ns(cam, "ip", "addr", "add", f"{FAR_IP}/24", "dev", "far0")
        for name in ("far0", "far1"):
            in_ns(cam, "ip", "link", "set", name, "up")
        in_ns(cam, "ip", "route", "add", "default", "via", "10.73.2.254")
        run("ip", "link", "add", "lan0", "netns", cam, "type", "veth", "peer", "name", "lan1",
            "netns", hosts.client)  # fmt: skip
        in_ns(cam, "ip", "addr", "add", f"{CAMERA_IP}/24", "dev", "lan0")
        in_ns(cam, "ip", "link", "set", "lan0", "up")
        for address in (CLIENT_IP, SECOND_CLIENT_IP):
            in_ns(hosts.client, "ip", "addr", "add", f"{address}/24", "dev", "lan1")
        in_ns(hosts.client, "ip", "link", "set", "lan1", "up")
        yield hosts
    finally:
        for namespace in (hosts.camera, hosts.client):
            run("ip", "netns", "del", namespace, check=False)


class _Lines:
    """JSON lines from a process's stdout, waited for with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line)

    def next(self, within: float, what: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._queue.get(timeout=within)))
        except queue.Empty:
            raise AssertionError(f"no {what} within {within} s") from None


RESPONDER = """
import asyncio, json, logging, os, sys
from peercam.onvif.discovery import WsDiscoveryResponder
from peercam.onvif.discovery_messages import DiscoveryIdentity, onvif_scopes

def sockets():
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return sum(link.startswith("socket:") for link in links)

async def main(settings):
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s %(message)s")
    identity = DiscoveryIdentity(settings["uuid"], onvif_scopes(settings["name"], "Raspberry Pi 4"))
    responder = WsDiscoveryResponder(
        identity, lambda ip: f"http://{ip}:8000/onvif/device_service",
        max_delay=settings["max_delay"],
    )
    await responder.start()
    print(json.dumps({"addresses": responder.addresses, "sockets": sockets()}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await responder.stop()
    others = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    print(json.dumps({"tasks": others, "sockets": sockets()}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # stays up to be looked at

asyncio.run(main(json.loads(sys.argv[1])))
"""


class Responder:
    """peercam's responder in the camera's namespace, started at once."""

    def __init__(self, link: Link, log: Path, max_delay: float = 0.05) -> None:
        settings = {"uuid": DEVICE_UUID, "name": NAME, "max_delay": max_delay}
        self.log = log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", link.camera, sys.executable, "-c", RESPONDER,
             json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            text=True, cwd=ROOT,
        )  # fmt: skip
        self.lines = _Lines(self.process)
        self.started = self.lines.next(10, f"start:\n{self._log()}")

    def _log(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return self.lines.next(10, f"stop:\n{self._log()}")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._stderr.close()


@pytest.fixture
def responders() -> Iterator[list[Responder]]:
    started: list[Responder] = []
    yield started
    for responder in started:
        responder.close()


def start_responder(
    started: list[Responder], link: Link, tmp_path: Path, max_delay: float = 0.05
) -> Responder:
    responder = Responder(link, tmp_path / f"responder{len(started)}.log", max_delay)
    started.append(responder)
    return responder


# -- probes written by hand --------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def socket_in(namespace: str, address: str) -> socket.socket:
    """A UDP socket in `namespace`, bound to `address`. A socket belongs to the network
    namespace of the thread that made it, for good: a short-lived thread enters the
    namespace and makes it, and the test uses it from here."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            with open(f"/var/run/netns/{namespace}") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, 0))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
            made.append(sock)
        except BaseException as error:
            made.append(error)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def envelope(action: str, body: str, message_id: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>'
        f'<e:Envelope xmlns:e="{SOAP}" xmlns:w="{WSA}" xmlns:wsd="{WSD}"'
        f' xmlns:dn="{DN}" xmlns:tds="{TDS}" xmlns:pr="http://example.org/printers">'
        f"<e:Header><w:MessageID>{message_id}</w:MessageID>"
        f"<w:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</w:To>"
        f"<w:Action>{WSD}/{action}</w:Action></e:Header>"
        f"<e:Body>{body}</e:Body></e:Envelope>"
    ).encode()


def probe(types: str = "", scopes: str = "", match_by: str = "") -> tuple[str, bytes]:
    message_id = uuid.uuid4().urn
    rule = f' MatchBy="{match_by}"' if match_by else ""
    parts = (f"<wsd:Types>{types}</wsd:Types>" if types else "") + (
        f"<wsd:Scopes{rule}>{scopes}</wsd:Scopes>" if scopes else ""
    )
    return message_id, envelope("Probe", f"<wsd:Probe>{parts}</wsd:Probe>", message_id)


def resolve(address: str) -> tuple[str, bytes]:
    message_id = uuid.uuid4().urn
    body = (
        f"<wsd:Resolve><w:EndpointReference><w:Address>{address}</w:Address>"
        f"</w:EndpointReference></wsd:Resolve>"
    )
    return message_id, envelope("Resolve", body, message_id)


def answers(sock: socket.socket, seconds: float) -> dict[str, list[ET.Element]]:
    """The answers that arrive within `seconds`, by the MessageID they relate to."""
    found: dict[str, list[ET.Element]] = {}
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            break
        root = ET.fromstring(data)
        relates = root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}RelatesTo", "")
        found.setdefault(relates, []).append(root)
    return found


# -- the WSDiscovery client, as Home Assistant drives it ---------------------------

SEARCH = """
import json, sys
from wsdiscovery.discovery import ThreadedWSDiscovery as WSDiscovery
from wsdiscovery.qname import QName
from wsdiscovery.scope import Scope

def described(service):
    return {"epr": service.getEPR(), "xaddrs": service.getXAddrs(),
            "types": [t.getFullname() for t in service.getTypes()],
            "scopes": [s.getValue() for s in service.getScopes()]}

matches = []
discovery = WSDiscovery(ttl=4)  # homeassistant/components/onvif/config_flow.py: wsdiscovery()
original = discovery._handle_probematches
def handle_probematches(env, addr):  # counts the answers that came as ProbeMatches
    matches.extend(m.getEPR() for m in env.getProbeResolveMatches())
    original(env, addr)
discovery._handle_probematches = handle_probematches
result = {}
try:
    discovery.start()
    discovery.clearRemoteServices()
    found = discovery.searchServices(
        scopes=[Scope("onvif://www.onvif.org/Profile/Streaming")], timeout=1.5)
    result["home_assistant"] = [described(s) for s in found]
    discovery.clearRemoteServices()
    found = discovery.searchServices(
        types=[QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter")],
        timeout=1.5)
    result["network_video_transmitter"] = [described(s) for s in found]
    result["probe_matches"] = matches
finally:
    discovery.stop()
    discovery._stopThreads()
print(json.dumps(result))
"""

LISTEN = """
import json, sys, threading
from wsdiscovery.discovery import ThreadedWSDiscovery as WSDiscovery

hello, bye = threading.Event(), threading.Event()
def on_hello(service):
    if not hello.is_set():
        print(json.dumps({"hello": {"epr": service.getEPR(), "xaddrs": service.getXAddrs(),
                                    "scopes": [s.getValue() for s in service.getScopes()]}}),
              flush=True)
    hello.set()
def on_bye(epr):
    if not bye.is_set():
        print(json.dumps({"bye": epr}), flush=True)
    bye.set()

discovery = WSDiscovery()
discovery.setRemoteServiceHelloCallback(on_hello)
discovery.setRemoteServiceByeCallback(on_bye)
discovery.start()
try:
    print(json.dumps({"ready": True}), flush=True)
    hello.wait(15) and bye.wait(15)
finally:
    discovery.stop()
"""


def home_assistant_reading(service: dict[str, Any]) -> dict[str, Any]:
    """What homeassistant/components/onvif/config_flow.py async_discovery() takes
    from a discovered service."""
    url = urlparse(service["xaddrs"][0])
    device: dict[str, Any] = {
        "device_id": None, "name": service["epr"], "host": url.hostname,
        "port": url.port or 80, "hardware": None,
    }  # fmt: skip
    for scope in service["scopes"]:
        if scope.lower().startswith("onvif://www.onvif.org/name"):
            device["name"] = scope.split("/")[-1]
        if scope.lower().startswith("onvif://www.onvif.org/hardware"):
            device["hardware"] = scope.split("/")[-1]
        if scope.lower().startswith("onvif://www.onvif.org/mac"):
            device["device_id"] = scope.split("/")[-1]
    return device


# -- tests -------------------------------------------------------------------------


def test_scope_matching_follows_the_specification() -> None:
    ours = "onvif://www.onvif.org/Profile/Streaming"
    assert scope_matches("onvif://www.onvif.org/Profile/Streaming", ours)
    assert scope_matches("onvif://www.onvif.org/Profile", ours)  # by whole segments
    assert scope_matches("ONVIF://WWW.onvif.org/Profile/", ours)
    assert not scope_matches("onvif://www.onvif.org/Prof", ours)
    assert not scope_matches("onvif://www.onvif.org/profile", ours)  # paths keep their case
    assert not scope_matches("onvif://www.onvif.org/Profile/../Profile", ours)
    assert not scope_matches("onvif://example.org/Profile", ours)
    assert scope_matches(ours, ours, MATCH_STRCMP0)
    assert not scope_matches("onvif://www.onvif.org/Profile", ours, MATCH_STRCMP0)
    assert not scope_matches(ours, ours, f"{WSD}/ldap")  # a rule we do not know
    named = DiscoveryIdentity(DEVICE_UUID, onvif_scopes("Front door", "Pi"))
    assert scope_matches("onvif://www.onvif.org/name/Front%20door", named.scopes[4])


def test_scopes_read_back_as_home_assistant_reads_them() -> None:
    scopes = onvif_scopes("Bob's cam / 2", "Pi 4", "city/Paris", mac="dc:a6:32:01:02:03")
    # The WSDiscovery client turns %20 back into spaces before Home Assistant reads.
    service = {"epr": EPR, "xaddrs": [XADDR], "scopes": [s.replace("%20", " ") for s in scopes]}
    assert home_assistant_reading(service) == {
        "device_id": "dc:a6:32:01:02:03", "name": "Bob's cam %2F 2", "host": CAMERA_IP,
        "port": 8000, "hardware": "Pi 4",
    }  # fmt: skip
    assert "onvif://www.onvif.org/location/city/Paris" in scopes
    assert not any(c.isspace() for c in " ".join(scopes).replace(" onvif://", ""))


_SAMPLE = probe(types="dn:NetworkVideoTransmitter", scopes="onvif://www.onvif.org/Profile")[1]


@st.composite
def _damaged_probes(draw: st.DrawFn) -> bytes:
    data = _SAMPLE
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        data = data[:at] + draw(st.binary(max_size=8)) + data[at + cut :]
    return data


def _declared_as(encoding: str) -> bytes:
    return _SAMPLE.replace(b'encoding="utf-8"', f'encoding="{encoding}"'.encode())


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=512)
    | _damaged_probes()
    | st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True).map(_declared_as)
)
def test_any_datagram_is_read_or_refused(data: bytes) -> None:
    """Nothing a stranger sends raises anything but MalformedMessage."""
    identity = DiscoveryIdentity(DEVICE_UUID, onvif_scopes(NAME, HARDWARE))
    try:
        message = parse_message(data)
    except MalformedMessage:
        return
    if isinstance(message, Probe):
        probe_matches(identity, message)


@needs_client
def test_home_assistant_finds_the_camera(
    link: Link, tmp_path: Path, responders: list[Responder]
) -> None:
    responder = start_responder(responders, link, tmp_path, max_delay=0.5)  # the real delay
    assert sorted(responder.started["addresses"]) == [CAMERA_IP, FAR_IP]
    time.sleep(0.3)  # past the repeated Hello: the services found came from probes
    searched = subprocess.run(
        ["ip", "netns", "exec", link.client, sys.executable, "-c", SEARCH],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert searched.returncode == 0, searched.stderr[-3000:]
    result = json.loads(searched.stdout)
    assert EPR in result["probe_matches"]

    [found] = result["home_assistant"]
    assert found["epr"] == EPR
    assert found["xaddrs"] == [XADDR]  # the address on the client's link, not far0's
    assert home_assistant_reading(found) == {
        "device_id": None, "name": NAME, "host": CAMERA_IP, "port": 8000,
        "hardware": HARDWARE,
    }  # fmt: skip

    [found] = result["network_video_transmitter"]
    assert found["epr"] == EPR and found["xaddrs"] == [XADDR]
    assert sorted(found["types"]) == sorted([f"{DN}:NetworkVideoTransmitter", f"{TDS}:Device"])
    assert "onvif://www.onvif.org/Profile/Streaming" in found["scopes"]


@needs_client
def test_hello_on_start_and_bye_on_stop(
    link: Link, tmp_path: Path, responders: list[Responder]
) -> None:
    listener = subprocess.Popen(
        ["ip", "netns", "exec", link.client, sys.executable, "-c", LISTEN],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        lines = _Lines(listener)
        assert lines.next(10, "listener")["ready"]
        responder = start_responder(responders, link, tmp_path)
        hello = lines.next(5, "Hello")["hello"]
        assert hello["epr"] == EPR
        assert hello["xaddrs"] == [XADDR]  # each interface's Hello names its own address
        assert f"onvif://www.onvif.org/name/{NAME}" in hello["scopes"]  # %20: a space again
        responder.stop()
        assert lines.next(5, "Bye") == {"bye": EPR}
    finally:
        listener.terminate()
        listener.wait(10)


@needs_namespaces
def test_only_matching_probes_and_resolves_are_answered(
    link: Link, tmp_path: Path, responders: list[Responder]
) -> None:
    start_responder(responders, link, tmp_path)
    sock = socket_in(link.client, CLIENT_IP)
    # No more answerable ones than one sender's burst (SOURCE_BURST): the rest would
    # be refused by the rate limit, not by matching.
    answerable = [
        probe(),
        probe(types="tds:Device"),
        probe(scopes="onvif://www.onvif.org/Profile"),
        resolve(f"urn:uuid:{DEVICE_UUID.upper()}"),
    ]
    assert len(answerable) <= SOURCE_BURST
    not_ours = [
        probe(types="pr:Printer"),
        probe(types="dn:NetworkVideoTransmitter pr:Printer"),  # every type must be ours
        probe(types="xx:Device"),  # a prefix never declared
        probe(scopes="onvif://www.onvif.org/name/Someone%20else"),
        probe(scopes="onvif://www.onvif.org/Prof"),
        probe(scopes="onvif://www.onvif.org/Profile/Streaming onvif://www.onvif.org/Profile/G"),
        probe(scopes="onvif://www.onvif.org/Profile", match_by=f"{WSD}/ldap"),
        resolve("urn:uuid:00000000-0000-0000-0000-000000000000"),
    ]
    with sock:
        for _, data in not_ours + answerable:
            sock.sendto(data, (GROUP, PORT))
        got = answers(sock, 1.0)
    assert set(got) == {message_id for message_id, _ in answerable}
    for message_id, _ in answerable:
        root = got[message_id][0]
        action = root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}Action")
        expected = "ResolveMatches" if message_id == answerable[-1][0] else "ProbeMatches"
        assert action == f"{WSD}/{expected}"
        assert root.findtext(f".//{{{WSD}}}XAddrs") == XADDR
        assert root.findtext(f".//{{{WSA}}}Address") == EPR


@needs_namespaces
def test_hostile_datagrams_do_not_stop_it(
    link: Link, tmp_path: Path, responders: list[Responder]
) -> None:
    responder = start_responder(responders, link, tmp_path)
    sock = socket_in(link.client, CLIENT_IP)
    good_id, good = probe()
    _, big = probe()
    entities = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    laughs = f'<?xml version="1.0"?><!DOCTYPE z [{entities}]><z>&l9;</z>'  # a billion lols
    hostile = [
        b"\x00\xff garbage \x13\x37",
        good[: len(good) // 2],  # truncated
        laughs.encode(),
        laughs.encode("utf-16"),  # the same, past any filter on bytes
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
        b"<a>" * 5000,  # deep
        b'<?xml version="1.0" encoding="no-such-thing"?><a/>',
        big.replace(b"<e:Body>", b"<e:Body>" + b" " * 60_000),  # a matching probe, 60 KB
    ]
    with sock:
        for data in hostile:
            sock.sendto(data, (CAMERA_IP, PORT))
        sock.sendto(good, (GROUP, PORT))
        got = answers(sock, 1.0)
    assert set(got) == {good_id}  # nothing for the 60 KB one, though it matched
    assert responder.process.poll() is None
    log = responder.log.read_text()
    assert "Traceback" not in log
    assert log.count("WS-Discovery: ignored") == 1, log  # the rest were not logged


@needs_namespaces
def test_answers_are_rate_limited_per_sender(
    link: Link, tmp_path: Path, responders: list[Responder]
) -> None:
    start_responder(responders, link, tmp_path)
    flooding = socket_in(link.client, CLIENT_IP)
    other = socket_in(link.client, SECOND_CLIENT_IP)
    with flooding, other:
        for _ in range(20):
            flooding.sendto(probe()[1], (GROUP, PORT))
        other_id, data = probe()
        other.sendto(data, (GROUP, PORT))
        flood_answers = answers(flooding, 1.0)
        assert other_id in answers(other, 0.2)  # the flood did not shut others out
    assert 1 <= len(flood_answers) <= SOURCE_BURST + 1


@needs_namespaces
def test_stop_leaves_no_task_and_no_socket(
    link: Link, tmp_path: Path, responders: list[Responder]
) -> None:
    responder = start_responder(responders, link, tmp_path)
    assert f":{PORT}" in in_ns(link.camera, "ss", "-Hlun").stdout
    stopped = responder.stop()
    assert stopped["tasks"] == []
    assert stopped["sockets"] == responder.started["sockets"] - 1
    assert f":{PORT}" not in in_ns(link.camera, "ss", "-Hlun").stdout
    assert responder.process.poll() is None  # stopped, not exited
    _, data = probe()
    with socket_in(link.client, CLIENT_IP) as sock:
        sock.sendto(data, (GROUP, PORT))
        assert answers(sock, 0.4) == {}
