"""A real registrar for the SIP tests: Debian's kamailio on loopback (UDP and TCP on
one port), one account, locations in memory. Requests to a registered address are
relayed to its contact; to any other, 404. It record-routes calls, so their later
requests (ACK, BYE) must come back through it with Route headers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peercam.tls.certificate import make_self_signed
from tests.free_ports import unused_port

USER, PASSWORD, DOMAIN = "door", "door-secret", "peercam.test"
PHONE = "hall"  # the house phone's account (tests/sip_phone.py), same password
# Debian's multiarch directory: x86_64-linux-gnu here, aarch64-linux-gnu on a Pi.
MODULES = next(Path("/usr/lib").glob("*/kamailio/modules"), Path("/usr/lib/kamailio/modules"))

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
tcp_connection_lifetime={tcp_lifetime}
{tls_listen}
mpath="{modules}/"
{tls_module}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "rr.so"
loadmodule "xlog.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 1)
request_route {{
    # A call's later requests come back through here, as a proxy that record-routes
    # asks (a PBX's own proxy does): each is logged, for the tests to see.
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_INFO", "routed in dialog: $rm\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans()) {{
            t_relay();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{
            www_challenge("$td", "0");
            exit;
        }}
        if ($au != "{user}" && $au != "{phone}") {{
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
    }}
    t_relay();
}}
"""


# TLS on a port of its own, with a certificate the test made (kamailio-tls-modules).
TLS = """
enable_tls=yes
listen=tls:127.0.0.1:{tls_port}
"""
TLS_MODULE = """
loadmodule "tls.so"
modparam("tls", "certificate", "{cert}")
modparam("tls", "private_key", "{key}")
modparam("tls", "verify_certificate", 0)
modparam("tls", "require_certificate", 0)
modparam("tls", "tls_method", "TLSv1.2+")
"""


def why_unavailable() -> str | None:
    if not shutil.which("kamailio") or not (MODULES / "registrar.so").exists():
        return "Debian's kamailio is not installed"
    return None


def free_port(next_tcp: int = 0) -> int:
    """A port free for both UDP and TCP (and the `next_tcp` TCP ports after it), below
    the kernel's ephemeral range (tests/free_ports.py says why)."""
    return unused_port(udp=True, next_tcp=next_tcp)


def why_no_tls() -> str | None:
    if not (MODULES / "tls.so").exists():
        return "Debian's kamailio-tls-modules is not installed"
    return None


@contextmanager
def kamailio(
    directory: Path, tls: tuple[Path, Path, int] | None = None, tcp_lifetime: int = 120
) -> Iterator[int]:
    """kamailio running with CONFIG: its port (UDP and TCP). `tls`: its certificate,
    key and port for TLS as well. `tcp_lifetime`: seconds it keeps an idle TCP or TLS
    connection (its default: 120)."""
    port = free_port()
    config = directory / "kamailio.cfg"
    tls_listen = tls_module = ""
    if tls is not None:
        cert, key, tls_port = tls
        tls_listen = TLS.format(tls_port=tls_port)
        tls_module = TLS_MODULE.format(cert=cert, key=key)
    config.write_text(
        CONFIG.format(
            port=port, modules=MODULES, user=USER, phone=PHONE, password=PASSWORD,
            tls_listen=tls_listen, tls_module=tls_module, tcp_lifetime=tcp_lifetime,
        )
    )  # fmt: skip
    log = (directory / "kamailio.log").open("wb")
    process = subprocess.Popen(
        ["kamailio", "-f", str(config), "-DD", "-E", "-Y", str(directory), "-w", str(directory)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _listening(port) or (tls is not None and not _listening(tls[2])):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((directory / "kamailio.log").read_text()[-3000:])
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@contextmanager
def kamailio_with_tls(directory: Path) -> Iterator[tuple[int, int, Path]]:
    """kamailio with TLS as well, its certificate made for 127.0.0.1: (its UDP and TCP
    port, its TLS port, the certificate to trust)."""
    cert, key = directory / "pbx-cert.pem", directory / "pbx-key.pem"
    make_self_signed(cert, key, ["pbx.peercam.test"], ["127.0.0.1"])
    tls_port = free_port()
    with kamailio(directory, (cert, key, tls_port)) as port:
        yield port, tls_port, cert


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
