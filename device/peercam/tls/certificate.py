"""The daemon's TLS certificate: the user's own, or a self-signed one made at first
start and kept in the state directory (its key readable by the service user only)."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

CERT_NAME = "tls-cert.pem"
KEY_NAME = "tls-key.pem"
# An appliance nobody maintains must not stop working when a certificate lapses; a
# browser asks the user to accept a self-signed certificate whatever its lifetime.
_LIFETIME = datetime.timedelta(days=3650)
# Renewed this long before it would lapse.
_RENEW_BEFORE = datetime.timedelta(days=30)


class CertificateError(Exception):
    """The configured certificate or key cannot be used; one line for the user."""


@dataclass(frozen=True)
class CertificateFiles:
    cert: Path
    key: Path
    self_signed: bool

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # TLS 1.2 with forward secrecy and AEAD only (TLS 1.3's suites are all so):
        # Python's default still takes CBC with HMAC, open to padding-oracle and
        # Lucky 13 style attacks, and every client that can play WebRTC has GCM.
        context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as error:
            raise CertificateError(f"cannot load {self.cert} / {self.key}: {error}") from None
        return context

    def fingerprint(self) -> str:
        certificate = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def names_for_this_host() -> tuple[list[str], list[str]]:
    """DNS names and IP addresses the camera is likely to be reached by."""
    host = socket.gethostname()
    names = sorted({host, f"{host}.local", "localhost"})
    addresses = {"127.0.0.1", "::1"}
    try:
        from aioice.ice import get_host_addresses

        # Scope ids (fe80::1%eth0) have no place in a certificate.
        addresses.update(a.split("%")[0] for a in get_host_addresses(True, True))
    except Exception as error:  # no addresses is still a usable certificate
        logger.debug("cannot list host addresses: %s", error)
    return names, sorted(addresses)


def _still_good(cert: Path, key: Path, names: list[str], addresses: list[str]) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
        key.stat()
    except (OSError, ValueError):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc - _RENEW_BEFORE < now:
        return False
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    known_names = set(san.get_values_for_type(x509.DNSName))
    known_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    # A new address (DHCP lease, new network) makes a new certificate, so the
    # browser's warning names the address the user actually typed.
    return set(names) <= known_names and set(addresses) <= known_ips


def make_self_signed(cert: Path, key: Path, names: list[str], addresses: list[str]) -> None:
    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peercam {names[0]}")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(private_key, hashes.SHA256())
    )
    write_private(
        key,
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    # The certificate is public, but written the same atomic way; owner-only like
    # everything in the state directory (clients get it in the handshake anyway).
    write_private(cert, certificate.public_bytes(serialization.Encoding.PEM))


def certificate_files(state_dir: Path, cert: str | None, key: str | None) -> CertificateFiles:
    """The user's certificate if configured, else the self-signed one (made or renewed
    as needed)."""
    if cert or key:
        if not (cert and key):
            raise CertificateError("server.tls_cert and server.tls_key go together")
        files = CertificateFiles(Path(cert), Path(key), self_signed=False)
        for path in (files.cert, files.key):
            if not path.is_file():
                raise CertificateError(f"{path} does not exist")
        return files
    files = CertificateFiles(state_dir / CERT_NAME, state_dir / KEY_NAME, self_signed=True)
    names, addresses = names_for_this_host()
    if not _still_good(files.cert, files.key, names, addresses):
        make_self_signed(files.cert, files.key, names, addresses)
        logger.info(
            "made a self-signed TLS certificate for %s (SHA-256 %s)",
            ", ".join(names + addresses),
            files.fingerprint(),
        )
    return files
