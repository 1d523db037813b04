"""The two token caches. Keys are SHA-256 digests of the token, never the token.

* :class:`IntrospectionCache` keeps what the authorization server said about a token
  (an :class:`IntrospectionRecord`), for the longest time any policy allows; each
  policy then applies its own, possibly shorter, bound on every hit.
* :class:`VerifiedCache` keeps what a finished :class:`TokenInfo` says per (token,
  policy), so a token seen before is recognised at hash-lookup cost. An entry never
  outlives the token's ``exp`` (plus leeway) nor the bounds it was created under.

Both hold verified answers only (a signature checked, or the authorization server's
own answer), already minimised to the policy's claims (``claims.minimise``), in a
compact form (issue 10 §3): one tuple per entry holding the expiry and the claim values,
with everything that recurs between tokens (claim names, issuer, scope set, token type,
and short values such as the audience or client) shared, not copied. A hit rebuilds the
``TokenInfo`` or the record from it. Both are bounded by :class:`Generations` and
thread-safe through a short lock.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from ..models import TokenInfo
from .claims import _SHARED, pooled, read_claims, share
from .introspection import IntrospectionRecord

__all__ = ["Generations", "IntrospectionCache", "VerifiedCache", "token_digest"]


def token_digest(token: str) -> bytes:
    """The cache identity of a token: its SHA-256 digest."""
    return hashlib.sha256(token.encode()).digest()


def _wall_clock() -> float:
    # Looked up at call time so frozen clocks in tests apply; entries expire on the same
    # (wall) clock as the token's exp.
    return time.time()


class Generations:
    """A bounded map in two generations of plain dicts (not thread-safe by itself).

    New entries go into the young generation; when it holds half the capacity it becomes
    the old one and the previous old generation is dropped whole. A hit in the old
    generation moves the entry to the young one, so what is in use survives. At most
    ``maxsize`` entries are held, and at least the half of them most recently added or
    used. Two plain dicts cost about half the memory of an ``OrderedDict`` per
    entry (~52 bytes against ~105 at 100,000 entries), and a hit needs no reordering.
    """

    __slots__ = ("_half", "_old", "_young")

    def __init__(self, maxsize: int) -> None:
        # Rotating at half (rounded up) keeps at most 2 * half - 1 <= maxsize entries.
        self._half = max(1, (maxsize + 1) // 2)
        self._young: dict[Any, Any] = {}
        self._old: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        found = self._young.get(key)
        if found is None:
            found = self._old.pop(key, None)
            if found is not None:
                self.put(key, found)
        return found

    def put(self, key: Any, value: Any) -> None:
        young = self._young
        young[key] = value
        if len(young) >= self._half:
            self._old = young
            self._young = {}

    def pop(self, key: Any) -> None:
        self._young.pop(key, None)
        self._old.pop(key, None)

    def clear(self) -> None:
        self._young = {}
        self._old = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)


# What recurs between tokens, kept once: a claim-name tuple, and the shared part of a
# verified entry. Keyed by what they hold; bounded, cleared when full; only ever filled
# with verified answers.
_SHAPES: dict[Any, Any] = {}
_SHAPES_MAX = 1024


def _shape(value: Any) -> Any:
    return pooled(_SHAPES, value, _SHAPES_MAX)


def _layout(claims: Any) -> tuple[tuple[str, ...], list[Any]]:
    """The claim names (one shared tuple) and the values, short recurring ones shared."""
    names = tuple(claims)
    found = _SHAPES.get(names)
    if found is None:
        positions = tuple(i for i, name in enumerate(names) if name in _SHARED_CLAIMS)
        found = _shape((names, positions))
        _SHAPES[names] = found
    names, positions = found
    values = list(claims.values())
    known = _SHARED.get  # share() with its common case (a value seen before) inlined
    for index in positions:
        value = values[index]
        if type(value) is str:
            values[index] = known(value) or share(value)
    return names, values


#: Claims whose (short) values recur from token to token.
_SHARED_CLAIMS = frozenset({"iss", "aud", "azp", "client_id", "scope", "token_type", "acr"})


class IntrospectionCache:
    """Introspection answers keyed by (issuer, token digest)."""

    def __init__(self, maxsize: int, *, max_active_ttl: float, max_inactive_ttl: float) -> None:
        self._max_active = max_active_ttl
        self._max_inactive = max_inactive_ttl
        self._lock = threading.Lock()
        self._entries = Generations(maxsize)
        self._enabled = maxsize > 0

    def until(self, record: IntrospectionRecord) -> float:
        """How long a record may be kept at all: the longest policy bound, and for an
        active token never past its ``exp``."""
        if not record.active:
            return record.fetched_at + self._max_inactive
        until = record.fetched_at + self._max_active
        exp = record.claims.exp if record.claims is not None else None
        return until if exp is None else min(until, exp)

    def put(self, issuer: str, digest: bytes, record: IntrospectionRecord) -> None:
        until = self.until(record)
        if not self._enabled or until <= record.fetched_at:
            return
        entry: tuple[Any, ...]
        if record.claims is None:
            entry = (until, record.fetched_at, None)
        else:
            names, values = _layout(record.claims.raw)
            entry = (until, record.fetched_at, names, *values)
        with self._lock:
            self._entries.put((issuer, digest), entry)

    def get(
        self,
        issuer: str,
        digest: bytes,
        now: float,
        *,
        max_active_age: float,
        max_inactive_age: float,
    ) -> IntrospectionRecord | None:
        """A record no older than the asking policy allows, or None."""
        key = (issuer, digest)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and max(now, _wall_clock()) >= entry[0]:
                self._entries.pop(key)
                return None
        if entry is None:
            return None
        until, fetched_at, names = entry[0], entry[1], entry[2]
        age = now - fetched_at
        limit = max_inactive_age if names is None else max_active_age
        if now >= until or not 0 <= age <= limit:
            return None
        if names is None:
            return IntrospectionRecord(active=False, claims=None, fetched_at=fetched_at)
        # The values were type-checked when the answer came; reading them again rebuilds
        # the typed view (a few µs, against an HTTP round trip saved).
        claims = read_claims(dict(zip(names, entry[3:], strict=True)))
        return IntrospectionRecord(active=True, claims=claims, fetched_at=fetched_at)

    def forget(self, digest: bytes, issuers: Iterable[str]) -> None:
        with self._lock:
            for issuer in issuers:
                self._entries.pop((issuer, digest))

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class VerifiedCache:
    """Validated tokens keyed by (policy, token digest); see :class:`Generations`.

    One map per policy, keyed by the digest. An entry is ``(not_after, shared, *values)``:
    ``shared`` = (issuer, scope set, token type, source, claim names) is one object for
    all the tokens that have them in common; ``values`` are the claim values, in the
    order of the names. A hit rebuilds the :class:`TokenInfo` (about a microsecond)
    instead of keeping one per token (~350 bytes each).
    """

    def __init__(self, maxsize: int, policies: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._maxsize = maxsize
        self._maps = {name: Generations(maxsize) for name in policies}

    def get(self, digest: bytes, policy: str, now: float) -> TokenInfo | None:
        """The cached answer if it is still good at ``now``; an expired one is dropped."""
        entries = self._maps[policy]
        with self._lock:
            entry = entries.get(digest)
            if entry is None:
                return None
            if now >= entry[0]:
                entries.pop(digest)
                return None
        issuer, scopes, token_type, source, names = entry[1]
        return TokenInfo._assemble(
            {
                "active": True,
                "issuer": issuer,
                "scopes": scopes,
                "token_type": token_type,
                "claims": MappingProxyType(dict(zip(names, entry[2:], strict=True))),
                "source": source,
                "cached": True,
            }
        )

    def put(
        self, digest: bytes, policy: str, info: TokenInfo, not_after: float, now: float
    ) -> None:
        if not self._maxsize or not_after <= now:
            return
        names, values = _layout(info.claims)
        key = (info.issuer, info.scopes, info.token_type, info.source, names)
        shared = _SHAPES.get(key) or _shape(key)
        entry = (not_after, shared, *values)
        with self._lock:
            self._maps[policy].put(digest, entry)

    def forget(self, digest: bytes) -> None:
        """Drop the token's entries for every policy."""
        with self._lock:
            for entries in self._maps.values():
                entries.pop(digest)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            for entries in self._maps.values():
                entries.clear()

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._maps.values())
