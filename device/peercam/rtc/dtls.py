"""DTLS with any standard peer, whichever side is the client, and why a handshake failed.

aiortc 1.16 builds every DTLS context with ECDHE-ECDSA cipher suites only
(`RTCCertificate._create_ssl_context` in aiortc/rtcdtlstransport.py). For an offer
with `a=setup:actpass` aiortc answers `active` and is the DTLS client; a server whose
certificate is RSA (GStreamer 1.22's webrtcbin, and the NVR and home-automation
clients built on it) finds no suite its key can serve and the handshake ends in "no
shared cipher". In DTLS 1.2 a suite's signature half names the *server's* key, so the
client offering the ECDHE-RSA suites as well lets an RSA server choose one. peercam's
own key stays ECDSA: as a client it only signs CertificateVerify, which any suite
allows; as a server OpenSSL picks an ECDSA suite from the client's list (every WebRTC
stack offers them, RFC 8827 requires ECDSA support).

aiortc reports a failed handshake only at debug level, and the peer connection then
just says "failed". The reason is lifted into peercam's log at warning level, with
the session it belongs to (a context variable that aiortc's connect task inherits).
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile
from OpenSSL import SSL

logger = logging.getLogger(__name__)

# Forward secrecy only (ECDHE), AEAD first, each for both kinds of server key.
CIPHERS = ":".join(
    f"ECDHE-{key}-{suite}"
    for suite in (
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "CHACHA20-POLY1305",
        "AES128-SHA",
        "AES256-SHA",
    )
    for key in ("ECDSA", "RSA")
).encode()

_AIORTC_LOGGER = "aiortc.rtcdtlstransport"
_FAILED = re.compile(r"^RTCDtlsTransport\((\w+)\) x DTLS handshake failed \((.*)\)$", re.DOTALL)
# pyOpenSSL's error text is a list of (library, function, reason) tuples.
_OPENSSL_REASON = re.compile(r"'([^']*)'\)")

_session: ContextVar[str | None] = ContextVar("peercam_dtls_session", default=None)


class InteropCertificate(RTCCertificate):
    """aiortc's certificate (an ECDSA P-256 key), whose DTLS contexts also offer the
    suites an RSA-certificate server needs."""

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        context = super()._create_ssl_context(srtp_profiles)
        context.set_cipher_list(CIPHERS)
        return context


def peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    """A peer connection that interoperates with RSA peers and logs why DTLS fails."""
    pc = RTCPeerConnection(configuration)
    use_interop_certificate(pc)
    report_handshake_failures()
    return pc


def use_interop_certificate(pc: RTCPeerConnection) -> None:
    """Give `pc` (before its first negotiation) a certificate that interoperates with
    RSA peers. tests/test_rtc_hooks.py checks the attribute still exists."""
    name = "_RTCPeerConnection__certificates"
    if not hasattr(pc, name):
        raise RuntimeError("this aiortc version lacks the certificate hook peercam relies on")
    setattr(pc, name, [InteropCertificate.generateCertificate()])


def name_session(session_id: str) -> None:
    """Label DTLS failures from tasks started after this in the current context."""
    _session.set(session_id)


def describe_failure(detail: str) -> str:
    """aiortc's parenthesised detail in plain words: OpenSSL's reasons, or as it is."""
    if detail.startswith("error "):
        reasons = [r for r in _OPENSSL_REASON.findall(detail) if r]
        if reasons:
            return "; ".join(reasons)
        return detail.removeprefix("error ").strip() or "unknown TLS error"
    return detail


class _HandshakeFailures(logging.Filter):
    """On aiortc's DTLS logger: turns handshake failures into peercam warnings and lets
    its other debug lines through only when the daemon logs at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        found = _FAILED.match(record.getMessage())
        if found is None:
            return logging.root.isEnabledFor(record.levelno)
        role, detail = found.groups()
        record.name = logger.name
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "session %s: DTLS handshake failed as the %s: %s"
        record.args = (_session.get() or "?", role, describe_failure(detail))
        return True


_filter = _HandshakeFailures()


def report_handshake_failures() -> None:
    """Log why DTLS handshakes fail (idempotent, process-wide)."""
    aiortc_logger = logging.getLogger(_AIORTC_LOGGER)
    if _filter not in aiortc_logger.filters:
        aiortc_logger.addFilter(_filter)
    # The failure is a debug line: it must be made to reach the filter at all.
    aiortc_logger.setLevel(logging.DEBUG)
