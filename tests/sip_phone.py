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
from pathlib import Path
from typing import Any, BinaryIO

from tests.sip_registrar import DOMAIN, PASSWORD, PHONE, free_port

MODULES = Path("/usr/lib/baresip/modules")


def why_unavailable() -> str | None:
    if not shutil.which("baresip") or not (MODULES / "g711.so").exists():
        return "Debian's baresip is not installed"
    return None


class Baresip:
    def __init__(self, directory: Path, registrar_port: int, tone: Path, answer: bool) -> None:
        self.directory = directory
        self.recordings = directory / "recordings"
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.sip_port, self.control_port = free_port(), free_port()
        answering = ";answermode=auto" if answer else ""
        (directory / "accounts").write_text(
            f"<sip:{PHONE}@{DOMAIN}>;auth_pass={PASSWORD};"
            f"outbound=sip:127.0.0.1:{registrar_port};audio_codecs=PCMU,PCMA;regint=60"
            f"{answering}\n"
        )
        (directory / "config").write_text(
            f"sip_listen 127.0.0.1:{self.sip_port}\n"
            "net_interface 127.0.0.1\n"
            "call_local_timeout 0\n"
            f"audio_source aufile,{tone}\n"
            f"module_path {MODULES}\n"
            "module g711.so\nmodule aufile.so\nmodule sndfile.so\n"
            "module_tmp account.so\n"
            "module_app menu.so\nmodule_app ctrl_tcp.so\n"
            f"ctrl_tcp_listen 127.0.0.1:{self.control_port}\n"
            f"snd_path {self.recordings}\n"
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
