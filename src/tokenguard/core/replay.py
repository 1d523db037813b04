"""The DPoP proof replay cache (RFC 9449 §11.1), local to the process. No I/O.

With a fleet, this cache is the first line: a proof it accepts is then claimed across the
fleet (:meth:`tokenguard.fleet.tier.FleetTier.claim_proof`, under a name derived from
the same :func:`proof_identity`).

It holds a 16-byte digest per proof (of the proof key's thumbprint and its ``jti``, never
the ``jti`` itself), added only once the proof verified and the token it came with
validated: a request that fails leaves nothing behind. Every entry is kept for twice the
largest proof window, which outlasts the proof (its ``iat`` lies at most one window
ahead of the moment it was remembered, and the proof is refused one window after its
``iat``); entries therefore leave in the order they came, in O(1).

Bounded: when it is full of entries still within their window it refuses to remember
more, and the caller refuses the proof (503) rather than forget one that could then be
replayed.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque

__all__ = ["ReplayCache", "proof_identity", "replay_key"]


def proof_identity(thumbprint: str, jti: str) -> bytes:
    """Who signed a proof and which ``jti`` it carries, as one unambiguous byte string
    (the thumbprint length-prefixed). Never stored as is: hashed here, HMACed by a fleet."""
    key = thumbprint.encode()
    return len(key).to_bytes(4, "big") + key + jti.encode()


def replay_key(thumbprint: str, jti: str) -> bytes:
    """The cache identity of a proof: who signed it and which ``jti`` it carries."""
    data = proof_identity(thumbprint, jti)
    return hashlib.sha256(b"tokenguard dpop-jti v1\x00" + data).digest()[:16]


class ReplayCache:
    """Proof identities seen within their window; thread-safe through a short lock."""

    def __init__(self, maxsize: int, retention: float) -> None:
        self._maxsize = maxsize
        self._retention = retention
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()
        # [expiry second, number of keys added with it], in the order they were added.
        self._marks: deque[list[int]] = deque()

    def claim(self, key: bytes, now: float) -> bool | None:
        """Remember ``key``: True the first time, False if it is a replay, None if the
        cache is full (the caller must refuse)."""
        with self._lock:
            self._purge(now)
            if key in self._seen:
                return False
            if len(self._seen) >= self._maxsize:
                return None
            self._seen.add(key)
            self._order.append(key)
            expiry = math.ceil(now + self._retention)
            marks = self._marks
            if marks and marks[-1][0] == expiry:
                marks[-1][1] += 1
            else:
                marks.append([expiry, 1])
            return True

    def _purge(self, now: float) -> None:
        marks, order, seen = self._marks, self._order, self._seen
        while marks and marks[0][0] < now:
            for _ in range(marks.popleft()[1]):
                seen.discard(order.popleft())

    def __len__(self) -> int:
        return len(self._seen)
