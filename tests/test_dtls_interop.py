"""peercam's DTLS against peers with RSA certificates, in both roles, and why a failed
handshake is in the log. (tests/test_interop_webrtcbin.py does the same end to end with
GStreamer's webrtcbin.)"""

from __future__ import annotations

import asyncio
import datetime
import re

from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCCertificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from peercam.rtc.dtls import InteropCertificate, describe_failure
from tests.conftest import StartDaemon
from tests.whep_viewer import WhepViewer

# OpenSSL's stock client and server suites for an RSA key, as GStreamer's dtls plugin
# leaves them (it sets no cipher list): ECDHE-RSA first among what both sides allow.
RSA_PEER_CIPHERS = b"DEFAULT"


def rsa_context() -> SSL.Context:
    """A DTLS context with a 2048-bit RSA certificate, GStreamer 1.22's default kind."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gstreamer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    context = SSL.Context(SSL.DTLS_METHOD)
    context.use_certificate(certificate)
    context.use_privatekey(key)
    context.set_cipher_list(RSA_PEER_CIPHERS)
    context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
    context.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    return context


def handshake(client: SSL.Context, server: SSL.Context) -> str | None:
    """A DTLS handshake over memory BIOs, datagram by datagram as aiortc sends them;
    None when both ends finish, else which end failed and OpenSSL's reason."""
    ends = {"client": SSL.Connection(client), "server": SSL.Connection(server)}
    ends["client"].set_connect_state()
    ends["server"].set_accept_state()
    finished: set[str] = set()
    for _ in range(20):
        for name, end in ends.items():
            peer = ends["server" if name == "client" else "client"]
            try:
                end.do_handshake()
                finished.add(name)
            except SSL.WantReadError:
                pass
            except SSL.Error as error:
                return f"{name}: {describe_failure(f'error {error}')}"
            while True:
                try:
                    datagram = end.bio_read(1500)
                except SSL.WantReadError:
                    break
                peer.bio_write(datagram)
        if finished == {"client", "server"}:
            return None
    return "did not finish"


def peercam_context() -> SSL.Context:
    return InteropCertificate.generateCertificate()._create_ssl_context([SRTP_AES128_CM_SHA1_80])


def test_as_client_peercam_reaches_an_rsa_server_where_stock_aiortc_does_not() -> None:
    assert handshake(peercam_context(), rsa_context()) is None
    # The cause, kept visible: aiortc's own context offers ECDSA suites only.
    stock = RTCCertificate.generateCertificate()._create_ssl_context([SRTP_AES128_CM_SHA1_80])
    assert handshake(stock, rsa_context()) == "server: no shared cipher"


def test_as_server_peercam_serves_an_rsa_client_and_another_peercam() -> None:
    assert handshake(rsa_context(), peercam_context()) is None
    assert handshake(peercam_context(), peercam_context()) is None


def test_openssl_reasons_are_read_out_of_pyopenssl_errors() -> None:
    text = "error [('SSL routines', '', 'no shared cipher')]"
    assert describe_failure(text) == "no shared cipher"
    assert describe_failure("fingerprint mismatch") == "fingerprint mismatch"
    assert describe_failure("error []") == "[]"


async def test_a_failed_handshake_is_logged_with_its_session_and_reason(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon()
    # The viewer's offer names a certificate it does not hold: peercam (the DTLS client
    # for this actpass offer) completes the handshake, then refuses the certificate.
    forged = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)
    viewer = WhepViewer(
        daemon.access,
        edit_offer=lambda sdp: re.sub(r"a=fingerprint:sha-256 \S+", forged, sdp),
    )
    async with viewer:
        assert viewer.answer is not None
        session = viewer.answer.location.rsplit("/", 1)[-1]
        line = f"session {session}: DTLS handshake failed as the client: fingerprint mismatch"
        for _ in range(100):
            if line in daemon.log():
                break
            await asyncio.sleep(0.1)
        assert line in daemon.log(), daemon.log()
        assert "WARNING" in next(x for x in daemon.log().splitlines() if line in x)
