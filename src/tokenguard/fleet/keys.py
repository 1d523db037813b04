"""Keys derived from the fleet secret, entry names and sealed values. No I/O.

Everything tokenguard writes to Redis is named by an HMAC (never a token, never a plain
digest of one) and sealed with AES-256-GCM under a key derived from the secret (HKDF),
with the entry's full name as associated data: an entry copied under another name (a
swapped entry), written with another secret (a foreign entry), cut short or changed in
any byte fails authentication and is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .config import MIN_SECRET_BYTES

__all__ = ["MIN_SECRET_BYTES", "FleetKeys"]

_VERSION = b"\x01"
_NONCE = 12
_TAG = 16
_NAME_BYTES = 20  # 160-bit names: no collisions between the entries of a fleet


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"tokenguard-fleet-v1", info=purpose
    ).derive(secret)


class FleetKeys:
    """Entry names and sealing for one fleet (one secret, one prefix)."""

    __slots__ = ("_aead", "_name_key", "_nonce_key", "prefix")

    def __init__(self, secret: bytes, prefix: str) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the fleet secret must be at least {MIN_SECRET_BYTES} bytes")
        self.prefix = prefix.encode()
        self._name_key = _derive(secret, b"names")
        self._nonce_key = _derive(secret, b"nonces")
        self._aead = AESGCM(_derive(secret, b"values"))

    def name(self, kind: bytes, ident: bytes) -> bytes:
        """The Redis key of entry ``kind`` about ``ident``: ``prefix:kind:{HMAC}``.

        The HMAC is of ``ident`` alone, in braces: every entry about one token (its
        answer, its flight lock) has the same Redis Cluster hash tag, so one MGET reads
        them together on any deployment."""
        mac = hmac.new(self._name_key, ident, hashlib.sha256).digest()
        tag = base64.urlsafe_b64encode(mac[:_NAME_BYTES])
        return b"%s:%s:{%s}" % (self.prefix, kind, tag)

    def fixed(self, kind: bytes) -> bytes:
        """The Redis key (or channel) of a fleet-wide entry: ``prefix:kind``."""
        return b"%s:%s" % (self.prefix, kind)

    def seal(self, name: bytes, plaintext: bytes, *, deterministic: bool = False) -> bytes:
        """Encrypt and authenticate ``plaintext`` for the entry ``name``.

        ``deterministic``: the nonce is a MAC of name and plaintext (a synthetic IV), so
        the same revocation sealed by any process is the same bytes and a sorted set
        holds it once. Only equality of two sealed values is revealed, never content;
        two different plaintexts never share a nonce.
        """
        if deterministic:
            mac = hmac.new(self._nonce_key, name + b"\x00" + plaintext, hashlib.sha256)
            nonce = mac.digest()[:_NONCE]
        else:
            nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, name)

    def open(self, name: bytes, blob: object, max_bytes: int) -> bytes | None:
        """The plaintext of a sealed entry, or None if it is not one of ours for this
        name (wrong type, too short, too long, unknown version, failed authentication)."""
        if not isinstance(blob, bytes) or len(blob) < 1 + _NONCE + _TAG:
            return None
        if len(blob) > max_bytes or blob[:1] != _VERSION:
            return None
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], name)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return f"FleetKeys(prefix={self.prefix.decode()!r})"
