"""Server-issued DPoP nonces (RFC 9449 §9) that need no state. No I/O.

A nonce is an HMAC of the current time step (60 s) under a key: issuing one stores
nothing, checking one is a few HMACs, and every process that shares the key accepts the
nonces of the others (a fleet behind a load balancer sets ``Settings.dpop_nonce_secret``
on every process). A nonce is accepted for 4-5 minutes after it is issued, and from a
process whose clock is up to one step ahead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .dpop import b64url_encode

__all__ = ["NonceSource"]

_STEP = 60
_STEPS_KEPT = 4  # a nonce is good for 4 to 5 steps after it was issued
_MAX_MEMO = 16


class NonceSource:
    """Issues and checks DPoP nonces under one key (random unless given)."""

    def __init__(self, secret: bytes | None = None) -> None:
        if secret is None:
            self._key = secrets.token_bytes(32)
        else:
            # Derived, so the configured secret is never used directly as a MAC key.
            self._key = hmac.new(secret, b"tokenguard dpop-nonce v1", hashlib.sha256).digest()
        self._memo: dict[int, str] = {}

    def _nonce(self, step: int) -> str:
        nonce = self._memo.get(step)
        if nonce is None:
            mac = hmac.new(self._key, step.to_bytes(8, "big", signed=True), hashlib.sha256)
            nonce = b64url_encode(mac.digest()[:24])
            if len(self._memo) >= _MAX_MEMO:
                self._memo.clear()
            self._memo[step] = nonce
        return nonce

    def current(self, now: float) -> str:
        """The nonce to hand out now."""
        return self._nonce(int(now // _STEP))

    def accepts(self, nonce: str, now: float) -> bool:
        """Whether ``nonce`` was issued by this key recently enough."""
        if not nonce.isascii():
            return False
        step = int(now // _STEP)
        given = nonce.encode("ascii")
        found = False
        for candidate in range(step - _STEPS_KEPT, step + 2):
            found |= hmac.compare_digest(given, self._nonce(candidate).encode("ascii"))
        return found
