"""Update bundles: one file holding a peercam release for one kind of board, signed.

A bundle is a zip archive (entries stored: wheels are compressed already) of
    peercam-update.json   the manifest: version, board, Python, each wheel's SHA-256
    peercam-update.sig    an Ed25519 signature of the manifest's exact bytes
    wheels/NAME.whl       peercam's wheel, every dependency's, and pip's own
The signature covers the manifest and the manifest covers every wheel, so one check
of 64 bytes vouches for the whole file; nothing is extracted by name from outside
the manifest (a zip may hold `../` names: they are never used as paths)."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from packaging.version import InvalidVersion, Version

MANIFEST = "peercam-update.json"
SIGNATURE = "peercam-update.sig"
WHEELS = "wheels/"
FORMAT = 1
# A release with every dependency is ~60 MiB for aarch64; four times that is not one.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
# Read before the signature is checked: small and bounded, whatever the archive says.
MAX_MANIFEST_BYTES = 64 * 1024
SIGNATURE_BYTES = 64  # Ed25519
_WHEEL_NAME = re.compile(r"[A-Za-z0-9_.+-]+\.whl")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class BundleRefused(Exception):
    """The file is not an update this camera may install; the message says why, in
    words for the page."""


@dataclass(frozen=True)
class Manifest:
    version: str
    machine: str  # platform.machine() of the boards it is for: aarch64, x86_64
    python: str  # major.minor the wheels were chosen for: "3.11"
    wheels: dict[str, str]  # file name -> SHA-256 (hex)

    @property
    def digest(self) -> str:
        """SHA-256 of the manifest, and so of the whole release: names it on disk."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "name": "peercam",
            "version": self.version,
            "machine": self.machine,
            "python": self.python,
            "wheels": dict(sorted(self.wheels.items())),
        }
        return json.dumps(body, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or body.get("name") != "peercam":
                raise ValueError("not a peercam manifest")
            if body.get("format") != FORMAT:
                raise BundleRefused(
                    f"the bundle's format {body.get('format')!r} is not one this peercam reads"
                )
            wheels = body["wheels"]
            if not isinstance(wheels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in wheels.items()
            ):
                raise ValueError("wheels is not a table of names and digests")
            manifest = cls(str(body["version"]), str(body["machine"]), str(body["python"]), wheels)
        except (ValueError, KeyError, TypeError) as error:
            raise BundleRefused(f"the bundle's manifest is unreadable: {error}") from None
        try:
            Version(manifest.version)
        except InvalidVersion:
            raise BundleRefused(f"the bundle's version {manifest.version!r} is not one") from None
        for name, digest in manifest.wheels.items():
            if not _WHEEL_NAME.fullmatch(name):
                raise BundleRefused(f"the bundle names a wheel {name!r} that is not a file name")
            if not _DIGEST.fullmatch(digest):
                raise BundleRefused(f"the bundle's digest for {name} is not a SHA-256")
        if not any(name.startswith("peercam-") for name in manifest.wheels):
            raise BundleRefused("the bundle holds no peercam wheel")
        return manifest


def this_board() -> tuple[str, str]:
    """(machine, python) a bundle must be made for to install here."""
    return platform.machine(), f"{sys.version_info.major}.{sys.version_info.minor}"


def _sha256(stream: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in stream:
        digest.update(chunk)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return _sha256(iter(lambda: file.read(1 << 20), b""))


def _chunks(archive: zipfile.ZipFile, name: str) -> Iterable[bytes]:
    with archive.open(name) as entry:
        while chunk := entry.read(1 << 20):
            yield chunk


# --- signing keys -------------------------------------------------------------------


def new_signing_key() -> tuple[bytes, bytes]:
    """A new key pair as PEM: (private, public). The private half signs bundles and
    stays with whoever makes them; the public half goes into the image."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def load_signing_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key is not an Ed25519 key")
    return key


def load_trusted_keys(directory: Path) -> list[Ed25519PublicKey]:
    """The public keys bundles may be signed with: every *.pem in `directory`."""
    keys: list[Ed25519PublicKey] = []
    for path in sorted(directory.glob("*.pem")):
        key = serialization.load_pem_public_key(path.read_bytes())
        if isinstance(key, Ed25519PublicKey):
            keys.append(key)
    return keys


# --- making -------------------------------------------------------------------------


def make_bundle(
    wheels: Iterable[Path],
    key: Ed25519PrivateKey,
    target: Path,
    *,
    machine: str,
    python: str,
) -> Manifest:
    """Write a signed bundle of `wheels` to `target`; the version is peercam's wheel's."""
    files = sorted(wheels, key=lambda path: path.name)
    peercam = [p for p in files if p.name.startswith("peercam-")]
    if len(peercam) != 1:
        raise ValueError(f"need exactly one peercam wheel, found {len(peercam)}")
    if not any(p.name.startswith("pip-") for p in files):
        # The camera's Python has no pip of its own (the image leaves it out): the
        # installer runs the one in the bundle.
        raise ValueError("the bundle needs pip's wheel too")
    version = peercam[0].name.split("-")[1]
    digests = {path.name: _file_sha256(path) for path in files}
    manifest = Manifest(version, machine, python, digests)
    raw = manifest.to_bytes()
    temporary = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, raw)
        archive.writestr(SIGNATURE, key.sign(raw))
        for path in files:
            archive.write(path, WHEELS + path.name)
    temporary.replace(target)
    return manifest


# --- checking -----------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: Manifest

    def extract_wheels(self, directory: Path) -> list[Path]:
        """Write the manifest's wheels (and only those) into `directory`, checking each
        digest again as it is written: the file may have changed since it was checked."""
        directory.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        with zipfile.ZipFile(self.path) as archive:
            for name, expected in self.manifest.wheels.items():
                target = directory / name
                digest = hashlib.sha256()
                with target.open("wb") as out:
                    for chunk in _chunks(archive, WHEELS + name):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != expected:
                    raise BundleRefused(f"{name} changed while it was being installed")
                written.append(target)
        return written


def verify_bundle(
    path: Path,
    trusted: list[Ed25519PublicKey],
    *,
    board: tuple[str, str] | None = None,
    not_older_than: str | None = None,
) -> VerifiedBundle:
    """The bundle at `path`, once it is proven whole, signed by a trusted key, made
    for this board and (given `not_older_than`) no older than that version;
    BundleRefused says what is wrong otherwise."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise BundleRefused(f"cannot read the bundle: {error.strerror}") from None
    if size > MAX_BUNDLE_BYTES:
        raise BundleRefused(f"the file is {size >> 20} MiB, more than any update")
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = _check_archive(archive, trusted)
    except BundleRefused:
        raise
    except zipfile.BadZipFile:
        raise BundleRefused("this is not a peercam update bundle (not a zip archive)") from None
    except Exception as error:
        # Whatever else the zip reader raises on a damaged or hostile archive (OSError,
        # EOFError, RuntimeError for encryption, NotImplementedError, zlib.error).
        raise BundleRefused(f"the bundle is damaged: {error}") from None
    machine, python = board or this_board()
    if manifest.machine != machine:
        raise BundleRefused(f"the bundle is for {manifest.machine} boards; this one is {machine}")
    if manifest.python != python:
        raise BundleRefused(f"the bundle is for Python {manifest.python}; this camera has {python}")
    if not_older_than is not None and Version(manifest.version) < Version(not_older_than):
        raise BundleRefused(
            f"the bundle holds peercam {manifest.version}, older than {not_older_than} "
            "which runs: going back is for `peercam update --allow-older` on the camera"
        )
    return VerifiedBundle(path, manifest)


def _check_archive(archive: zipfile.ZipFile, trusted: list[Ed25519PublicKey]) -> Manifest:
    listed = archive.infolist()
    names = {entry.filename for entry in listed}
    if len(names) != len(listed):
        raise BundleRefused("the bundle holds one name twice")
    if MANIFEST not in names:
        raise BundleRefused("this is not a peercam update bundle (it has no manifest)")
    if SIGNATURE not in names:
        raise BundleRefused("the bundle is not signed")
    for entry in listed:
        # Stored, as make_bundle writes them: nothing to inflate (no bombs), nothing
        # encrypted, and sizes that are the bytes read.
        if entry.compress_type != zipfile.ZIP_STORED or entry.flag_bits & 0x1:
            raise BundleRefused(f"{entry.filename} is compressed or encrypted in the bundle")
    manifest_entry, signature_entry = archive.getinfo(MANIFEST), archive.getinfo(SIGNATURE)
    if manifest_entry.file_size > MAX_MANIFEST_BYTES:
        raise BundleRefused("the bundle's manifest is too big to be one")
    if signature_entry.file_size != SIGNATURE_BYTES:
        raise BundleRefused("the bundle's signature is not an Ed25519 signature")
    raw = archive.read(MANIFEST)
    signature = archive.read(SIGNATURE)
    if not trusted:
        raise BundleRefused("this camera has no update key to check bundles with")
    if not any(_signed_by(key, signature, raw) for key in trusted):
        raise BundleRefused(
            "the signature does not match: the bundle was changed after it was "
            "signed, or signed with a key this camera does not trust"
        )
    manifest = Manifest.from_bytes(raw)
    expected = {MANIFEST, SIGNATURE} | {WHEELS + name for name in manifest.wheels}
    if names != expected:
        extra = sorted(names - expected)
        missing = sorted(expected - names)
        raise BundleRefused(
            "the bundle's files differ from its manifest"
            + (f"; not listed: {', '.join(extra)}" if extra else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    for name, digest in manifest.wheels.items():
        if _sha256(_chunks(archive, WHEELS + name)) != digest:
            raise BundleRefused(f"{name} differs from the signed manifest")
    return manifest


def _signed_by(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
