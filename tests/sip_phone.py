"""A real SIP phone for the tests: Debian's baresip, headless, registered with the
test registrar (tests/sip_registrar.py) as `hall`. It plays a tone file as its
microphone, records what it hears (sndfile), and is driven over ctrl_tcp (netstring
JSON: `dial`, `accept`, `hangup`, `sndcode`, `quit`), whose events it also reads.
Config keys, modules and the control protocol as baresip 1.0.0 reads them
(src/config.c, modules/ctrl_tcp/ctrl_tcp.c, modules/menu/menu.c at v1.0.0)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from tests.sip_registrar import DOMAIN, PASSWORD, PHONE, free_port

MODULES = Path("/usr/lib/baresip/modules")


def why_unavailable() -> str | None:
    if not shutil.which("baresip") or not (MODULES / "g711.so").exists():
        return "Debian's baresip is not installed"
    return None


class Baresip:
    def __init__(
        self, directory: Path, registrar_port: int, tone: Path, answer: bool,
        codecs: str = "PCMU,PCMA", rtp_ports: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        self.directory = directory
        self.recordings = directory / "recordings"
        self.recordings.mkdir(parents=True, exist_ok=True)
        # baresip listens on its SIP port for UDP and TCP, and on the next for TLS.
        self.sip_port, self.control_port = free_port(next_tcp=1), free_port()
        answering = ";answermode=auto" if answer else ""
        (directory / "accounts").write_text(
            f"<sip:{PHONE}@{DOMAIN}>;auth_pass={PASSWORD};"
            f"outbound=sip:127.0.0.1:{registrar_port};audio_codecs={codecs};regint=60"
            f"{answering}\n"
        )
        (directory / "config").write_text(
            f"sip_listen 127.0.0.1:{self.sip_port}\n"
            "net_interface 127.0.0.1\n"
            "call_local_timeout 0\n"
            f"audio_source aufile,{tone}\n"
            f"module_path {MODULES}\n"
            "module g711.so\nmodule g722.so\nmodule opus.so\nmodule aufile.so\nmodule sndfile.so\n"
            "module_tmp account.so\n"
            "module_app menu.so\nmodule_app ctrl_tcp.so\n"
            f"ctrl_tcp_listen 127.0.0.1:{self.control_port}\n"
            f"snd_path {self.recordings}\n"
            # Its media ports, where a benchmark tells its packets from peercam's.
            + (f"rtp_ports {rtp_ports[0]}-{rtp_ports[1]}\n" if rtp_ports else "")
        )
        self.log = directory / "baresip.log"
        self.events: list[dict[str, Any]] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._log_file: BinaryIO | None = None

    def start(self) -> None:
        log = self._log_file = self.log.open("wb")
        self._process = subprocess.Popen(
            ["baresip", "-f", str(self.directory)], stdin=subprocess.PIPE, stdout=log,
            stderr=subprocess.STDOUT, cwd=self.directory,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            try:
                self._control = socket.create_connection(("127.0.0.1", self.control_port), 1)
                # The 1 s was for connecting: a read waits for events as long as it takes
                # (with it, the reader ended at the first second without one).
                self._control.settimeout(None)
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.log.read_text(errors="replace")[-3000:]) from None
                time.sleep(0.1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Registered: baresip logs the registrar's 200 for its account.
        while "200 OK" not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)

    def command(self, command: str, params: str = "") -> None:
        assert self._control is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._control.sendall(str(len(body)).encode() + b":" + body + b",")

    def _read(self) -> None:
        assert self._control is not None
        buffer = b""
        while True:
            try:
                data = self._control.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b":" in buffer:
                length, _, rest = buffer.partition(b":")
                if not length.isdigit() or len(rest) < int(length) + 1:
                    break
                payload, buffer = rest[: int(length)], rest[int(length) + 1 :]
                message = json.loads(payload)
                if message.get("event"):
                    self.events.append(message)

    def wait_event(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((e for e in self.events if e.get("type") == kind), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {kind} from baresip in {timeout} s: {self.events}")

    def heard(self) -> tuple[npt.NDArray[np.int16], int]:
        """What the phone decoded in its last call (sndfile's recording, complete once
        the call ended) and its sample rate."""
        recordings = sorted(self.recordings.glob("*-dec.wav"))
        log = self.log.read_text(errors="replace")[-2000:]
        assert recordings, f"baresip recorded nothing: {log}"
        with wave.open(str(recordings[-1]), "rb") as recording:
            data = recording.readframes(recording.getnframes())
            channels = recording.getnchannels()
            samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)[:, 0]
            return samples, recording.getframerate()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        if self._control is not None:
            self._control.close()
        if self._log_file is not None:
            self._log_file.close()


def tone_file(
    path: Path, frequency: float, seconds: float, rate: int = 8000, channels: int = 1
) -> Path:
    """A WAV baresip plays as its microphone at the codec's rate and channels, as
    aufile needs (8 kHz mono for G.711, 16 kHz for G.722, 48 kHz stereo for Opus)."""
    t = np.arange(int(rate * seconds)) / rate
    tone = (8000 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    return wav_file(path, np.repeat(tone, channels), rate, channels)


def wav_file(path: Path, samples: npt.NDArray[np.int16], rate: int, channels: int = 1) -> Path:
    """`samples` (interleaved) as a 16-bit WAV, as baresip's aufile plays it."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def started(
    directory: Path, registrar_port: int, tone_hz: float, answer: bool,
    codecs: str = "PCMU,PCMA", rate: int = 8000, channels: int = 1,
) -> Baresip:  # fmt: skip
    """A phone registered at the registrar, its microphone a `tone_hz` tone; it answers
    by itself if `answer`. Stopped by the caller (also when this raises)."""
    directory.mkdir(parents=True)
    # aufile ends the call when its file ends: longer than any test's call.
    tone = tone_file(directory / "tone.wav", tone_hz, 120, rate, channels)
    phone = Baresip(directory, registrar_port, tone, answer, codecs)
    try:
        phone.start()
    except BaseException:
        phone.stop()  # a phone that did not come up must not outlive the test
        raise
    return phone
