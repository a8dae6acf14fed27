"""How long a SIP call to a house phone takes to ring, and its mouth-to-ear delay each
way (issue 27), with real software: the daemon (its microphone and speaker alsa-lib
`file` PCMs on FIFOs, as bench/audio_latency.py), Debian's kamailio as the PBX and
baresip as the phone, all on loopback.

What is timed, on this machine's one clock:
- ring → phone ringing: `POST /api/ring` sent → the INVITE leaving peercam → the
  phone's 180 Ringing back at peercam (each packet's kernel timestamp, from a packet
  socket on loopback).
- visitor → phone: a click written into the microphone FIFO in real time → the RTP
  packet carrying it leaving peercam for the phone. The phone's own share (its jitter
  buffer and playout) is not in it: baresip does not say when it plays.
- phone → visitor: the click's time at the phone's microphone → played by peercam's
  speaker (read from the speaker FIFO). baresip plays a WAV of clicks; a click's time
  at its microphone is taken as its packet's send time less the rest of the packet's
  20 ms after the click (what an ideal phone would do: send a frame as it fills).
Prints and publishes p50/p95; asserts nothing.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from bench.audio_latency import ASOUNDRC, MicrophoneFeed, SpeakerTap, pair_up
from bench.processes import start_peercam, stop
from bench.report import percentile, publish

PHONE_RTP = (41000, 41010)  # baresip's media ports: its packets are told apart by them
ETH_P_IP = 0x0800
# A socket bound to IPv4 sees each loopback packet once, as it arrives (packets leaving
# are shown only to ETH_P_ALL taps); on loopback that is the moment it was sent.
PACKET_HOST = 0
SO_TIMESTAMPNS = 35  # Linux's; Python's socket module does not name it
CLICK_THRESHOLD = 0.3 * 32767
PHONE_RATE = 8000
FRAME = 160  # PCMU samples per 20 ms packet

CONFIG = """
[camera]
source = "test"
size = "320x240"
fps = 15
[audio]
source = "alsa"
device = "bench_mic"
codecs = ["opus", "pcmu"]
[talkback]
device = "bench_speaker"
[doorbell]
ring_timeout = {ring_timeout}
[ringback]
enabled = false
[sip]
enabled = true
registrar = "127.0.0.1:{registrar}"
domain = "{domain}"
user = "{user}"
password = "{password}"
call = ["{phone}"]
listen_port = {sip_port}
ring_seconds = {ring_seconds}
codecs = ["pcmu"]
"""


@dataclass(frozen=True)
class Datagram:
    at: float  # kernel receive time, wall-clock ms
    source_port: int
    destination_port: int
    payload: bytes


class LoopbackSniffer(threading.Thread):
    """Every UDP datagram on loopback once, stamped by the kernel (root only)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.datagrams: list[Datagram] = []
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self._socket.bind(("lo", ETH_P_IP))
        self._socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._socket.settimeout(0.5)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data, ancillary, _, address = self._socket.recvmsg(65_535, 64)
            except TimeoutError:
                continue
            if address[2] != PACKET_HOST or len(data) < 28 or data[9] != socket.IPPROTO_UDP:
                continue
            at = time.time() * 1000
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    at = seconds * 1000 + nanoseconds / 1e6
            header = (data[0] & 0x0F) * 4
            source, destination = struct.unpack("!HH", data[header : header + 4])
            self.datagrams.append(Datagram(at, source, destination, data[header + 8 :]))

    def close(self) -> None:
        self.stopping.set()
        self.join(2)
        self._socket.close()


def click_offset(payload: bytes, decoder: av.AudioCodecContext) -> int | None:
    """The sample where a click starts in one PCMU RTP packet, if it holds one."""
    if len(payload) < 12 + FRAME or payload[1] & 0x7F != 0:
        return None
    frames = decoder.decode(av.Packet(payload[12:]))
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]) if frames else None
    if samples is None:
        return None
    loud = np.flatnonzero(np.abs(samples) > CLICK_THRESHOLD)
    return int(loud[0]) if loud.size else None


def pcmu_decoder() -> av.AudioCodecContext:
    decoder = av.CodecContext.create("pcm_mulaw", "r")
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate, decoder.layout = PHONE_RATE, "mono"
    return decoder


def clicks_wav(path: Path, seconds: int) -> Path:
    """The phone's microphone: a 5 ms 2 kHz click each second, silence between."""
    samples = np.zeros(PHONE_RATE * seconds, dtype="<i2")
    burst = (0.9 * 32767 * np.sin(2 * np.pi * 2000 * np.arange(40) / PHONE_RATE)).astype("<i2")
    for second in range(1, seconds):
        samples[second * PHONE_RATE : second * PHONE_RATE + 40] = burst
    from tests.sip_phone import wav_file

    return wav_file(path, samples, PHONE_RATE)


def first_clicks(
    datagrams: list[Datagram], wanted: Callable[[Datagram], bool], ideal_phone: bool
) -> list[float]:
    """Wall-clock ms of each click in the PCMU packets `wanted` picks: the packet's time,
    or (`ideal_phone`) when its click was at the sender's microphone."""
    decoder, found, quiet_until = pcmu_decoder(), [], 0.0
    for datagram in datagrams:
        if not wanted(datagram):
            continue
        offset = click_offset(datagram.payload, decoder)
        if offset is None or datagram.at < quiet_until:
            continue
        at = datagram.at - (FRAME - offset) / PHONE_RATE * 1000 if ideal_phone else datagram.at
        found.append(at)
        quiet_until = datagram.at + 500
    return found


@dataclass
class SipDelays:
    ring_to_invite: list[float] = field(default_factory=list)  # ms
    ring_to_ringing: list[float] = field(default_factory=list)
    visitor_to_phone: list[float] = field(default_factory=list)
    phone_to_visitor: list[float] = field(default_factory=list)
    # peercam's own share of it: the click's packet arriving → the click played.
    phone_packet_to_speaker: list[float] = field(default_factory=list)
    clicks_written: int = 0
    clicks_sent_by_phone: int = 0


def measure(rings: int = 5, seconds: int = 20) -> SipDelays:
    from tests import sip_phone, sip_registrar
    from tests.sip_registrar import DOMAIN, PASSWORD, PHONE, USER

    result = SipDelays()
    with tempfile.TemporaryDirectory() as tmp, sip_registrar.kamailio(Path(tmp)) as registrar:
        home = Path(tmp)
        mic, speaker = home / "mic.fifo", home / "speaker.fifo"
        os.mkfifo(mic)
        os.mkfifo(speaker)
        (home / ".asoundrc").write_text(ASOUNDRC.format(mic=mic, speaker=speaker))
        sip_port = sip_registrar.free_port()
        config = home / "peercam.toml"
        config.write_text(CONFIG.format(
            ring_timeout=4, registrar=registrar, domain=DOMAIN, user=USER, password=PASSWORD,
            phone=PHONE, sip_port=sip_port, ring_seconds=3,
        ))  # fmt: skip
        (home / "phone").mkdir()
        phone = sip_phone.Baresip(
            home / "phone", registrar, clicks_wav(home / "clicks.wav", seconds + 30),
            answer=False, rtp_ports=PHONE_RTP,
        )  # fmt: skip
        feed, tap, sniffer = MicrophoneFeed(mic), SpeakerTap(speaker), LoopbackSniffer()
        for thread in (feed, tap, sniffer):
            thread.start()
        phone.start()
        daemon, access = start_peercam(config, env={"HOME": str(home)})
        try:
            time.sleep(2)  # registered (peercam registers as it starts)
            # The first authenticated request checks the password with Argon2id (then
            # cached): made here, so that the rings time the ring, not the login.
            access.urlopen("/api/state")
            for _ in range(rings):
                phone.events.clear()
                rang = time.time() * 1000
                access.urlopen("/api/ring", "POST", b"")
                phone.wait_event("CALL_CLOSED", timeout=15)  # rung, then cancelled
                invite = _first(sniffer.datagrams, rang, lambda d: d.source_port == sip_port
                                and d.payload.startswith(b"INVITE "))  # fmt: skip
                ringing = _first(sniffer.datagrams, rang, lambda d: d.destination_port == sip_port
                                 and d.payload.startswith(b"SIP/2.0 180"))  # fmt: skip
                if invite is not None and ringing is not None:
                    result.ring_to_invite.append(invite.at - rang)
                    result.ring_to_ringing.append(ringing.at - rang)
                time.sleep(3)  # the doorbell's own ring times out
            phone.events.clear()
            access.urlopen("/api/ring", "POST", b"")
            phone.wait_event("CALL_INCOMING", timeout=15)
            phone.command("accept")
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            started = time.time() * 1000
            written_from = len(feed.clicks)
            time.sleep(seconds)
            phone.command("hangup")
            time.sleep(1)
        finally:
            feed.stopping.set()
            sniffer.close()
            stop(daemon)
            phone.stop()
    in_call = [d for d in sniffer.datagrams if d.at >= started]
    to_phone = first_clicks(in_call, lambda d: PHONE_RTP[0] <= d.destination_port <= PHONE_RTP[1],
                            ideal_phone=False)  # fmt: skip
    from_phone = first_clicks(in_call, lambda d: PHONE_RTP[0] <= d.source_port <= PHONE_RTP[1],
                              ideal_phone=True)  # fmt: skip
    arrivals = first_clicks(in_call, lambda d: PHONE_RTP[0] <= d.source_port <= PHONE_RTP[1],
                            ideal_phone=False)  # fmt: skip
    written = feed.clicks[written_from:]
    result.visitor_to_phone = pair_up(written, to_phone)
    result.phone_to_visitor = pair_up(from_phone, tap.clicks)
    result.phone_packet_to_speaker = pair_up(arrivals, tap.clicks)
    result.clicks_written, result.clicks_sent_by_phone = len(written), len(from_phone)
    return result


def _first(
    datagrams: list[Datagram], after: float, wanted: Callable[[Datagram], bool]
) -> Datagram | None:
    return next((d for d in list(datagrams) if d.at >= after and wanted(d)), None)


def summary(result: SipDelays) -> list[str]:
    def line(values: list[float], of: str) -> str:
        if not values:
            return f"none ({of})"
        return (f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms"
                f" ({len(values)} of {of})")  # fmt: skip

    each = ", ".join(f"{v:.0f}" for v in result.ring_to_ringing)
    return [
        f"- ring → INVITE sent: {line(result.ring_to_invite, 'rings')}",
        f"- ring → 180 Ringing, each ring in order: {each} ms (a ring is the API request"
        " sent, its HTTPS connection made anew each time; the password already checked"
        " by an earlier request)",
        f"- ring → the phone's 180 Ringing back: {line(result.ring_to_ringing, 'rings')}",
        "- visitor → phone (microphone FIFO → PCMU packet leaving for the phone):"
        f" {line(result.visitor_to_phone, f'{result.clicks_written} clicks')}",
        "- phone → visitor (click at an ideal phone's microphone → played by the speaker):"
        f" {line(result.phone_to_visitor, f'{result.clicks_sent_by_phone} clicks')};"
        " of which peercam's own (the click's packet arriving → played):"
        f" {line(result.phone_packet_to_speaker, f'{result.clicks_sent_by_phone} clicks')}",
    ]


def main() -> None:
    if os.geteuid() != 0:
        # The packet socket that times the packets needs CAP_NET_RAW.
        print("bench/sip_delays.py: needs root to time packets on loopback; skipped")
        return
    result = measure()
    lines = [
        "# SIP call delays (bench/sip_delays.py)",
        "",
        "peercam (test pattern, microphone and speaker alsa-lib file PCMs on FIFOs, PCMU),"
        " kamailio as the PBX and baresip 1.0.0 as the house phone, on loopback; times are"
        " kernel timestamps of the packets and this machine's clock for the FIFOs.",
        "",
        *summary(result),
        "",
        "Not in these figures: the phone's own jitter buffer and playout (visitor → phone),"
        " its capture and packetising beyond the ideal 20 ms frame (phone → visitor), a"
        " real network, and a Pi's slower CPU.",
    ]
    publish("sip_delays.md", lines)


if __name__ == "__main__":
    main()
