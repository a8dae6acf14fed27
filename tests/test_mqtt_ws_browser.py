"""The page's MQTT client (web/mqtt_ws.js) in real Chromium against real mosquitto
over its websockets listener: binary payloads both ways (every byte value, 100 and 128
KiB), messages to and from a Python client (aiomqtt, over the broker's TLS listener), a
wrong password refused, the broker dying or going silent ending the link once.

The wire format itself (remaining lengths at every width, packets split across and
packed into WebSocket messages, the exact bytes the client sends) is checked against a
scripted broker: Playwright answers the page's WebSocket itself.

The page is served over plain HTTP from 127.0.0.1 (a secure context), by a server in
the test: a page Playwright answers itself has no address, and Chromium's local network
access checks then refuse its WebSocket to the broker on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import re
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from playwright.sync_api import BrowserContext, Page, WebSocketRoute

from tests.browser import chromium, wait_js
from tests.mqtt_broker import PASSWORD, USER, Broker

pytestmark = pytest.mark.timeout(60)

WEB = Path(__file__).resolve().parent.parent / "web"
SCRIPTED = "ws://scripted-broker.test/mqtt"

# In the page: one link at a time, what it hears kept for the test to read.
HELPERS = """async () => {
    window.mqtt = await import('/mqtt_ws.js');
    window.b64 = (bytes) => {
        let text = '';
        for (let at = 0; at < bytes.length; at += 8192) {
            text += String.fromCharCode(...bytes.subarray(at, at + 8192));
        }
        return btoa(text);
    };
    window.unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    window.within = (promise, ms, what) => Promise.race([promise, new Promise((_, reject) =>
        setTimeout(() => reject(new Error('timed out: ' + what)), ms))]);
    window.openLink = async (url, options) => {
        const link = new window.mqtt.MqttLink(url, options);
        const record = { link, messages: [], closes: [] };
        link.onmessage = (topic, bytes) => record.messages.push({ topic, bytes: b64(bytes) });
        link.onclose = (reason) => record.closes.push(reason);
        window.r = record;
        try {
            await link.connect();
            return null;
        } catch (error) {
            return error.message;
        }
    };
    window.outcome = (promise) => promise.then(() => 'ok', (error) => 'rejected: ' + error.message);
}"""


def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/mqtt_ws.js":
            body, kind = (WEB / "mqtt_ws.js").read_bytes(), "text/javascript"
        else:
            body, kind = b"<!doctype html><title>mqtt_ws</title>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def context() -> Iterator[BrowserContext]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(context: BrowserContext, origin: str) -> Iterator[Page]:
    page = context.new_page()
    page.goto(f"{origin}/")
    page.evaluate(HELPERS)
    yield page
    page.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path / "broker", websockets=True)
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.process.send_signal(signal.SIGCONT)  # in case a test paused it
    running.kill()


def connect(page: Page, url: str, **options: Any) -> str | None:
    """None once connected, else why not (the Error connect() rejected with)."""
    error: str | None = page.evaluate("([url, options]) => openLink(url, options)", [url, options])
    return error


def login(client_id: str, password: str = PASSWORD) -> dict[str, Any]:
    return {"username": USER, "password": password, "clientId": client_id}


def echo(page: Page, topic: str, payload: bytes) -> dict[str, Any]:
    """Subscribe, publish, and the message as the page got it back from the broker."""
    result: dict[str, Any] = page.evaluate(
        """async ([topic, payload]) => {
            const link = window.r.link;
            await within(link.subscribe(topic), 10000, 'SUBACK');
            const arrived = new Promise((resolve) => {
                link.onmessage = (topic, bytes) => resolve({ topic, bytes: b64(bytes),
                    isUint8Array: bytes instanceof Uint8Array });
            });
            await within(link.publish(topic, unb64(payload)), 10000, 'PUBACK');
            return await within(arrived, 10000, 'the message back');
        }""",
        [topic, b64(payload)],
    )
    result["bytes"] = unb64(result["bytes"])
    return result


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def messages(page: Page) -> list[tuple[str, bytes]]:
    """What the page's onmessage has heard so far."""
    got = page.evaluate("window.r.messages")
    return [(message["topic"], unb64(message["bytes"])) for message in got]


def test_round_trip_of_every_byte_value_and_a_clean_close(page: Page, broker: Broker) -> None:
    assert connect(page, broker.ws_url, **login("page-echo")) is None
    assert page.evaluate("window.r.link.connected") is True
    # MQTT 3.1.1, clean session, keepalive 30 s, the user name given.
    connected = re.search(r"New client connected from \S+ as page-echo \((.*?)\)", broker.log())
    assert connected is not None and connected[1] == "p2, c1, k30, u'peercam'"

    payload = bytes(range(256)) + bytes(reversed(range(256)))
    back = echo(page, "peercam/test/echo", payload)
    assert back["topic"] == "peercam/test/echo"
    assert back["isUint8Array"] is True
    assert back["bytes"] == payload
    # QoS 1 both ways: the broker got a QoS 1 PUBLISH and its own was acknowledged.
    assert "Received PUBLISH from page-echo (d0, q1, r0, m" in broker.log()
    until(lambda: "Received PUBACK from page-echo" in broker.log(), "the page's PUBACK")

    page.evaluate("window.r.link.close(); window.r.link.close()")
    assert page.evaluate("window.r.closes") == ["closed by this side"]
    assert page.evaluate("window.r.link.connected") is False
    until(lambda: "Received DISCONNECT from page-echo" in broker.log(), "DISCONNECT")
    refused = page.evaluate(
        "outcome(window.r.link.publish('peercam/test/echo', new Uint8Array(1)))"
    )
    assert refused == "rejected: not connected"


def test_payloads_of_100_and_128_kib(page: Page, broker: Broker) -> None:
    """100 KiB there and back; 128 KiB, the most a link takes, to the broker. (mosquitto
    2.0.11 sends to a WebSocket at about 40 KB/s, 4 KB per turn of its 100 ms loop:
    the 100 KiB echo takes 2.5 s of the broker's time; the scripted broker below sends
    128 KiB to the page.)"""
    assert connect(page, broker.ws_url, **login("page-big")) is None
    payload = random.Random(20).randbytes(100 * 1024)
    back = echo(page, "peercam/test/big", payload)
    assert back["bytes"] == payload

    largest = page.evaluate(
        """() => outcome(window.r.link.publish('peercam/test/largest',
            Uint8Array.from({ length: 128 * 1024 }, (_, i) => i % 251)))"""
    )
    assert largest == "ok"
    assert re.search(
        r"Received PUBLISH from page-big \(d0, q1, r0, m\d+, 'peercam/test/largest', "
        r"\.\.\. \(131072 bytes\)\)",
        broker.log(),
    )
    too_big = page.evaluate(
        "outcome(window.r.link.publish('peercam/test/x', new Uint8Array(128 * 1024 + 1)))"
    )
    assert too_big == "rejected: payload of 131073 bytes exceeds 131072"
    assert page.evaluate("window.r.link.connected") is True
    assert page.evaluate("window.r.closes") == []


def _in_thread(work: Callable[[], Any]) -> Future[Any]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(work)
    pool.shutdown(wait=False)
    return future


def _python_client(broker: Broker, identifier: str) -> aiomqtt.Client:
    tls = ssl.create_default_context(cafile=str(broker.ca))
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=USER,
        password=PASSWORD,
        identifier=identifier,
        tls_context=tls,
    )


def test_python_publisher_reaches_the_page(page: Page, broker: Broker) -> None:
    assert connect(page, broker.ws_url, **login("page-sub")) is None
    assert page.evaluate("outcome(window.r.link.subscribe('peercam/cam1/to-device/+'))") == "ok"
    payload = bytes(range(255, -1, -1)) * 3

    async def publish() -> None:
        async with _python_client(broker, "python-pub") as client:
            await client.publish("peercam/cam1/to-device/phone", payload, qos=1)

    _in_thread(lambda: asyncio.run(publish())).result(timeout=20)
    wait_js(page, "window.r.messages.length === 1", timeout=10_000)
    assert messages(page) == [("peercam/cam1/to-device/phone", payload)]


def test_page_reaches_a_python_subscriber(page: Page, broker: Broker) -> None:
    assert connect(page, broker.ws_url, **login("page-pub")) is None
    subscribed = threading.Event()

    async def receive() -> tuple[str, bytes]:
        async with _python_client(broker, "python-sub") as client:
            await client.subscribe("peercam/cam1/to-camera", qos=1)
            subscribed.set()
            async with asyncio.timeout(15):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes | bytearray)
                    return str(message.topic), bytes(message.payload)
        raise AssertionError("unreachable")

    received = _in_thread(lambda: asyncio.run(receive()))
    assert subscribed.wait(15), "the Python client did not subscribe"
    payload = bytes(range(256)) * 4
    sent = page.evaluate(
        "(payload) => outcome(window.r.link.publish('peercam/cam1/to-camera', unb64(payload)))",
        b64(payload),
    )
    assert sent == "ok"
    assert received.result(timeout=20) == ("peercam/cam1/to-camera", payload)


def test_wrong_password_is_refused_with_the_reason(page: Page, broker: Broker) -> None:
    error = connect(page, broker.ws_url, **login("page-wrong", password="not-" + PASSWORD))
    # mosquitto answers a wrong password for MQTT 3.1.1 with CONNACK 5.
    assert error == "the broker refused the connection: not authorized (CONNACK 5)"
    assert page.evaluate("window.r.closes") == [error]
    assert page.evaluate("window.r.link.connected") is False
    again = page.evaluate("outcome(window.r.link.connect())")
    assert again == "rejected: an MqttLink connects once; make a new one to reconnect"


def test_no_broker_there_is_said_at_once(page: Page, broker: Broker) -> None:
    """Said by the refused socket, not by the 10 s connect timer: that timer is held
    by the test and never fires, so the answer cannot have come from it."""
    broker.kill()
    hold_timers(page, timeouts=(10_000,))
    error = connect(page, broker.ws_url, **login("page-nothing"))
    assert error is not None
    assert error.startswith(f"could not reach the broker at {broker.ws_url} (WebSocket code 1006")
    assert page.evaluate("window.held.timeouts.length") == 1  # armed, never fired
    assert page.evaluate("window.r.closes") == [error]


def test_broker_stopping_ends_the_link_once(page: Page, broker: Broker) -> None:
    assert connect(page, broker.ws_url, **login("page-killed")) is None
    assert page.evaluate("outcome(window.r.link.subscribe('peercam/test/#'))") == "ok"
    broker.kill()
    wait_js(page, "window.r.closes.length > 0", timeout=10_000)
    closes = page.evaluate("window.r.closes")
    assert len(closes) == 1
    assert closes[0].startswith("the broker closed the connection (WebSocket code ")
    assert page.evaluate("window.r.link.connected") is False
    page.evaluate("window.r.link.close()")
    assert page.evaluate("window.r.closes.length") == 1


def test_a_silent_broker_ends_the_link_after_one_and_a_half_keepalives(
    page: Page, broker: Broker
) -> None:
    """The page's ping interval and PINGRESP timers are held by the test and fired by
    it, so what ends the link is shown by cause, not timed: an answered ping clears its
    timer; an unanswered one ends the link when its timer (1.5 keepalives) fires, and
    not before. The keepalive is long so that mosquitto, which drops a client silent
    for 1.5 keepalives too, stays out of it."""
    hold_timers(page, timeouts=(90_000,), intervals=(60_000,))
    assert connect(page, broker.ws_url, keepalive=60, **login("page-ping")) is None
    assert page.evaluate("window.held.intervals.length") == 1  # pings every 60 s
    # A ping the broker answers: its PINGRESP timer is cleared, the link stays up.
    page.evaluate("window.held.intervals[0].fire()")
    until(lambda: "Sending PINGRESP to page-ping" in broker.log(), "a PINGREQ answered", 10)
    wait_js(page, "window.held.cleared.length === 1", timeout=5_000)
    assert page.evaluate("window.held.timeouts.length") == 1
    assert page.evaluate("window.r.link.connected") is True
    assert broker.process is not None
    broker.process.send_signal(signal.SIGSTOP)  # the connection stays open, nothing answers
    # Not awaited here: it settles only when the link ends.
    page.evaluate(
        """() => {
            window.waiting = 'pending';
            outcome(window.r.link.publish('peercam/test/ping', Uint8Array.of(1)))
                .then((result) => { window.waiting = result; });
        }"""
    )
    page.evaluate("window.held.intervals[0].fire()")  # the next ping, never answered
    assert page.evaluate("window.held.timeouts.length") == 2
    assert page.evaluate("window.r.closes") == []
    assert page.evaluate("window.r.link.connected") is True
    assert page.evaluate("window.waiting") == "pending"
    page.evaluate("window.held.timeouts[1].fire()")  # 1.5 keepalives have passed
    assert page.evaluate("window.r.closes") == ["no PINGRESP from the broker within 90 s"]
    # The publish the broker never acknowledged fails with the link.
    wait_js(page, "window.waiting !== 'pending'", timeout=5_000)
    assert page.evaluate("window.waiting") == "rejected: no PINGRESP from the broker within 90 s"


def hold_timers(
    page: Page, timeouts: tuple[int, ...] = (), intervals: tuple[int, ...] = ()
) -> None:
    """The page's setTimeout / setInterval calls with exactly these delays are kept in
    window.held for the test to fire (`.fire()`), never by the clock; clearing a held
    one is noted in window.held.cleared. Every other delay runs as usual."""
    page.evaluate(
        """([timeouts, intervals]) => {
            const real = {};
            for (const name of ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval']) {
                real[name] = window[name].bind(window);
            }
            const held = { timeouts: [], intervals: [], cleared: [] };
            const byId = new Map();
            window.held = held;
            let next = 1e9;
            const hold = (list, fn, ms, rest) => {
                const timer = { id: next++, ms, fire: () => fn(...rest) };
                list.push(timer);
                byId.set(timer.id, timer);
                return timer.id;
            };
            const clear = (id, realClear) => {
                if (byId.has(id)) held.cleared.push(byId.get(id).ms);
                else realClear(id);
            };
            window.setTimeout = (fn, ms, ...rest) => timeouts.includes(ms)
                ? hold(held.timeouts, fn, ms, rest) : real.setTimeout(fn, ms, ...rest);
            window.setInterval = (fn, ms, ...rest) => intervals.includes(ms)
                ? hold(held.intervals, fn, ms, rest) : real.setInterval(fn, ms, ...rest);
            window.clearTimeout = (id) => clear(id, real.clearTimeout);
            window.clearInterval = (id) => clear(id, real.clearInterval);
        }""",
        [list(timeouts), list(intervals)],
    )


# --- The wire format, against a broker scripted here ------------------------------


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def body_of(packet: bytes) -> bytes:
    at = 1
    while packet[at] & 0x80:
        at += 1
    return packet[at + 1 :]


def string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def publish_packet(topic: str, payload: bytes, packet_id: int | None = None) -> bytes:
    if packet_id is None:
        return mqtt(0x30, string(topic) + payload)
    return mqtt(0x32, string(topic) + packet_id.to_bytes(2, "big") + payload)


def test_wire_format_against_a_scripted_broker(page: Page) -> None:
    """Remaining lengths of one, two and three bytes at their edges; packets split
    across WebSocket messages (inside the length too) and several in one message; the
    exact CONNECT, SUBSCRIBE, PUBLISH and PUBACK bytes; SUBACK 0x80; a malformed
    length ending the link."""
    from_page: list[bytes] = []
    routes: list[WebSocketRoute] = []
    topic = "t/x"
    head = len(string(topic))
    # Payload sizes putting the PUBLISH's remaining length at 127, 128, 16383, 16384
    # (QoS 0 and QoS 1), and one of the largest accepted.
    deliveries = [
        publish_packet(topic, bytes([1]) * (127 - head)),
        publish_packet(topic, bytes([2]) * (128 - head - 2), packet_id=7),
        publish_packet(topic, bytes([3]) * (16383 - head)),
        publish_packet(topic, bytes([4]) * (16384 - head - 2), packet_id=8),
        publish_packet(topic, bytes(range(256)) * 512, packet_id=65535),
    ]

    def script(ws: WebSocketRoute) -> None:
        routes.append(ws)

        def on_message(message: str | bytes) -> None:
            assert isinstance(message, bytes), "the page sent a text frame"
            from_page.append(message)
            kind = message[0] >> 4
            if kind == 1:  # CONNECT: CONNACK in two messages
                ws.send(b"\x20")
                ws.send(b"\x02\x00\x00")
            elif kind == 8 and len(from_page) == 2:  # first SUBSCRIBE
                suback = mqtt(0x90, message[2:4] + b"\x01")
                stream = suback + b"".join(deliveries)
                # The SUBACK with the first two PUBLISHes in one message, the rest
                # cut at places that split a header and a two-byte length.
                cuts = [0, len(suback) + len(deliveries[0]) + len(deliveries[1]) + 1]
                cuts += [cuts[-1] + 1, cuts[-1] + 2, cuts[-1] + 3, cuts[-1] + 5000]
                cuts += [cuts[-1] + len(deliveries[2]), cuts[-1] + len(deliveries[2]) + 2]
                cuts += [len(stream)]
                for start, end in itertools.pairwise(cuts):
                    ws.send(stream[start:end])
            elif kind == 8:  # any later SUBSCRIBE is refused
                ws.send(mqtt(0x90, message[2:4] + b"\x80"))
            elif kind == 3:  # the page's PUBLISH (QoS 1): PUBACK its packet id
                ws.send(mqtt(0x40, body_of(message)[head : head + 2]))

        ws.on_message(on_message)

    page.route_web_socket(SCRIPTED, script)
    options = {"username": "u", "password": "p\u00e9", "clientId": "wire", "keepalive": 300}
    assert connect(page, SCRIPTED, **options) is None
    assert from_page[0] == mqtt(
        0x10,
        string("MQTT") + bytes([4, 0x80 | 0x40 | 0x02]) + (300).to_bytes(2, "big")
        + string("wire") + string("u") + string("p\u00e9"),
    )  # fmt: skip

    assert page.evaluate(f"outcome(window.r.link.subscribe('{topic}'))") == "ok"
    assert from_page[1] == mqtt(0x82, (1).to_bytes(2, "big") + string(topic) + b"\x01")
    wait_js(page, f"window.r.messages.length === {len(deliveries)}", timeout=10_000)
    for (got_topic, got_payload), packet in zip(messages(page), deliveries, strict=True):
        assert got_topic == topic
        qos = (packet[0] >> 1) & 3
        assert got_payload == body_of(packet)[head + (2 if qos else 0) :]
    # A PUBACK for each QoS 1 delivery, none for QoS 0.
    until(lambda: len(from_page) >= 5, "three PUBACKs")
    assert from_page[2:5] == [mqtt(0x40, (n).to_bytes(2, "big")) for n in (7, 8, 65535)]

    refused = page.evaluate("outcome(window.r.link.subscribe('t/forbidden'))")
    assert refused == "rejected: the broker refused the subscription (SUBACK 0x80)"
    assert from_page[5] == mqtt(0x82, (2).to_bytes(2, "big") + string("t/forbidden") + b"\x01")

    payload = bytes(range(200))
    sent = page.evaluate(
        f"(p) => outcome(window.r.link.publish('{topic}', unb64(p)))", b64(payload)
    )
    assert sent == "ok"
    assert from_page[6] == publish_packet(topic, payload, packet_id=3)
    assert from_page[6][1:3] == bytes([0x80 | (207 % 128), 207 // 128])  # two-byte length

    assert page.evaluate("window.r.closes") == []
    routes[0].send(b"\x30\xff\xff\xff\xff\x01")
    wait_js(page, "window.r.closes.length > 0", timeout=5_000)
    assert page.evaluate("window.r.closes") == [
        "protocol error: remaining length longer than four bytes"
    ]


def test_connect_gives_up_after_10_seconds(page: Page) -> None:
    """A broker that accepts the WebSocket and never answers CONNECT. The page's
    setTimeout is watched rather than waited on: the test fires the 10 s timer."""
    page.route_web_socket(SCRIPTED, lambda ws: None)
    page.evaluate(
        """(url) => {
            const real = window.setTimeout;
            window.timers = [];
            window.setTimeout = (fn, ms, ...rest) => {
                if (ms === 10000) { window.timers.push(fn); return 0; }
                return real(fn, ms, ...rest);
            };
            window.pending = window.openLink(url, {});
        }""",
        SCRIPTED,
    )
    wait_js(page, "window.timers.length === 1", timeout=5_000)
    assert page.evaluate("window.r.closes") == []
    page.evaluate("window.timers[0]()")
    assert page.evaluate("window.pending") == "no answer from the broker within 10 s"
    assert page.evaluate("window.r.closes") == ["no answer from the broker within 10 s"]
