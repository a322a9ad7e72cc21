"""The audit key: an Ed25519 key kept in a file, never in the database.

Its private half signs the chain's checkpoints (:mod:`models.checkpoints`) and, through a
key derived from it (HKDF-SHA256), seals every audit row as it is appended: the seal is
HMAC-SHA256 over the row's hash. Someone who can write to the database but cannot read the
key file can compute a row's hash (the hash function is public) but not its seal, nor a
checkpoint's signature. The public half, which ``carepath audit keygen`` writes beside the
private key as ``FILE.pub``, lets an auditor check checkpoints without being able to make
them.

The file is PEM (PKCS #8, unencrypted: the service loads it unattended) with mode 0600; a
key file that others may read is refused, as ssh refuses one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.errors import CarepathError

AUDIT_KEY_FILE_ENV = "CAREPATH_AUDIT_KEY_FILE"
PUBLIC_SUFFIX = ".pub"
# HMAC-SHA256 over a row's hash, as 64 hex digits: what a row's ``seal`` holds.
Sealer = Callable[[str], str]


class AuditKeyError(CarepathError):
    """An audit key file that cannot be made or used.

    Args:
        path: the file.
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"audit key {self.path}: {reason}")


def key_id(public: Ed25519PublicKey) -> str:
    """A public key's short name: the first 16 hex digits of SHA-256 over its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


@dataclass(frozen=True)
class PublicKey:
    """A key that checks checkpoints: ``verify(signature, message)`` is True or False."""

    key: Ed25519PublicKey
    id: str

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> PublicKey:
        return cls(key, key_id(key))

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class AuditKey:
    """The private key: signs checkpoints and seals rows. Load with :func:`load_key`."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = PublicKey.of(private.public_key())
        self.id = self.public.id

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def sealer(self, log: str) -> Sealer:
        """The seal function of one log (``"audit_log"``): HMAC-SHA256 over a row's hash
        with a key derived for that log alone, so no log's seal fits another's rows."""
        raw = self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        info = f"carepath seal v1 {log}".encode()
        return RowSealer(
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)
        )


class RowSealer:
    """HMAC-SHA256 (RFC 2104) over a row's hash, as hex: ``RowSealer(secret)(row_hash)``.

    The key's inner and outer pads are hashed once, here, and each seal continues copies
    of those two states: the same HMAC as :func:`hmac.digest` gives (a test holds them
    equal), for a third of its cost, which a verify pays once per row. Picklable, so a
    verify's helper processes can check seals too.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) > 64:
            secret = hashlib.sha256(secret).digest()
        block = secret.ljust(64, b"\0")
        self.secret = secret
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __call__(self, row_hash: str) -> str:
        inner = self._inner.copy()
        inner.update(row_hash.encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __reduce__(self) -> tuple[type[RowSealer], tuple[bytes]]:
        return RowSealer, (self.secret,)


def public_key_path(private_path: str | Path) -> Path:
    path = Path(private_path)
    return path.with_name(path.name + PUBLIC_SUFFIX)


def generate_key(path: str | Path) -> AuditKey:
    """Make a new key in ``path`` (mode 0600) and its public half in ``path.pub``.

    Raises:
        AuditKeyError: either file exists (a key is never overwritten: checkpoints signed
            with it could no longer be checked), or the directory cannot be written.
    """
    private_path, public_path = Path(path), public_key_path(path)
    for existing in (private_path, public_path):
        if existing.exists():
            raise AuditKeyError(existing, "already exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, public_pem(private.public_key()).encode("ascii"), 0o644)
    return AuditKey(private)


def _write_new(path: Path, content: bytes, mode: int) -> None:
    try:
        # O_EXCL: never replace a file that appeared meanwhile.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise AuditKeyError(path, exc.strerror or str(exc)) from exc
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), mode)  # whatever the umask
        file.write(content)


def load_key(path: str | Path) -> AuditKey:
    """The private key in ``path``.

    Raises:
        AuditKeyError: missing, readable by others, or not an Ed25519 private key in PEM.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            raise AuditKeyError(
                path, f"others may read it (mode {stat.S_IMODE(mode):04o}): chmod 600 it"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(path, exc.strerror or str(exc)) from exc
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(path, f"not a PEM private key without a passphrase: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise AuditKeyError(path, f"not an Ed25519 key ({type(private).__name__})")
    return AuditKey(private)


def load_public_key(path: str | Path) -> PublicKey:
    """A public key in PEM (as ``keygen`` writes it); a private key file gives its public half.

    Raises:
        AuditKeyError: missing, or not an Ed25519 key in PEM.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(path, exc.strerror or str(exc)) from exc
    if b"PRIVATE KEY" in data:
        return load_key(path).public
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AuditKeyError(path, f"not a PEM public key: {exc}") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise AuditKeyError(path, f"not an Ed25519 key ({type(public).__name__})")
    return PublicKey.of(public)


def process_key() -> AuditKey | None:
    """This process's key, from ``CAREPATH_AUDIT_KEY_FILE`` (None when it is not set).

    Loaded once per file name: every append asks for it.

    Raises:
        AuditKeyError: the variable names a file that cannot be used.
    """
    path = os.environ.get(AUDIT_KEY_FILE_ENV)
    return _cached_key(path) if path else None


@lru_cache(maxsize=8)
def _cached_key(path: str) -> AuditKey:
    return load_key(path)


def process_sealer(log: str) -> Sealer | None:
    """The seal function of ``log`` under this process's key, or None without a key."""
    path = os.environ.get(AUDIT_KEY_FILE_ENV)
    return _cached_sealer(path, log) if path else None


@lru_cache(maxsize=16)
def _cached_sealer(path: str, log: str) -> Sealer:
    return _cached_key(path).sealer(log)
