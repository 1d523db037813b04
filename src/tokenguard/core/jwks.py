"""JSON Web Key Sets: which keys can verify, and when to fetch the set again. No I/O.

A key set is fetched by a shell; this module decides whether a fetch is due (the set
is missing or expired, or a token names an unknown ``kid`` and the refresh cooldown
has passed), turns a response into usable keys, and keeps the last good set through
an outage for a bounded stale window.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..config import Settings
from .algorithms import REGISTRY

__all__ = ["JwksState", "KeySet", "VerificationKey", "max_age", "parse_jwks", "usable_key"]

log = logging.getLogger("tokenguard.jwks")

_MIN_RSA_BITS = 2048
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_EARLY_GAP_MIN = 1.0
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public (or locally configured symmetric) key bound to the algorithms it may verify."""

    kid: str | None
    kty: str
    algorithms: frozenset[str]
    key: Any = field(repr=False)


class KeySet:
    """The usable keys of one JWKS, indexed for selection by algorithm and ``kid``."""

    __slots__ = ("_index", "_kids", "keys")

    def __init__(self, keys: tuple[VerificationKey, ...]) -> None:
        self.keys = keys
        index: dict[tuple[str, str | None], list[VerificationKey]] = {}
        for key in keys:
            for alg in key.algorithms:
                index.setdefault((alg, None), []).append(key)
                if key.kid is not None:
                    index.setdefault((alg, key.kid), []).append(key)
        self._index = {where: tuple(found) for where, found in index.items()}
        self._kids = frozenset(key.kid for key in keys if key.kid is not None)

    def candidates(self, alg: str, kid: str | None) -> tuple[VerificationKey, ...]:
        """Keys that may verify ``alg``; with a ``kid``, only keys of that exact ``kid``.

        A token without ``kid`` is tried against every key fitting its algorithm (many
        servers publish a single key and omit ``kid``); the set size is bounded.
        """
        return self._index.get((alg, kid), ())

    def knows(self, kid: str) -> bool:
        """Whether any key of the set has this ``kid`` (whatever its algorithm)."""
        return kid in self._kids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeySet) and other.keys == self.keys

    def __hash__(self) -> int:
        return hash(self.keys)

    def __repr__(self) -> str:
        return f"KeySet({len(self.keys)} keys)"


def usable_key(jwk: Any, *, allow_symmetric: bool) -> VerificationKey | None:
    """Turn one JWK into a verification key, or None if it cannot safely verify."""
    if not isinstance(jwk, dict):
        return None
    kty, crv, alg, kid = jwk.get("kty"), jwk.get("crv"), jwk.get("alg"), jwk.get("kid")
    if not isinstance(kty, str) or (crv is not None and not isinstance(crv, str)):
        return None
    if kid is not None and not isinstance(kid, str):
        return None
    use = jwk.get("use")
    if use is not None and use != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    if kty == "oct":
        if not allow_symmetric:
            return None  # a symmetric key in a published key set is never trusted
    elif PRIVATE_MEMBERS.intersection(jwk):
        return None  # a published set must not carry private keys; refuse, don't guess
    algorithms = frozenset(name for name, a in REGISTRY.items() if a.fits(kty, crv))
    if alg is not None:
        algorithms = algorithms & {alg} if isinstance(alg, str) else frozenset()
    if not algorithms:
        return None
    try:
        key = _key_object(jwk, kty, crv)
    except (ValueError, TypeError, OverflowError):
        return None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        return None
    if kty == "oct":
        if not isinstance(key, bytes):
            return None
        # RFC 7518 §3.2: an HMAC key at least as long as the hash output.
        algorithms = frozenset(a for a in algorithms if len(key) * 8 >= int(a[2:]))
        if not algorithms:
            return None
    return VerificationKey(kid=kid, kty=kty, algorithms=algorithms, key=key)


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    """A base64url member of a JWK. Padding is tolerated, as servers publish it (RFC 7517
    asks for none): these bytes come from the configuration or from the issuer's own
    key set over TLS, never from a token."""
    value = jwk.get(name)
    if not isinstance(value, str) or not value.isascii():
        raise ValueError("not a base64url member")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _unsigned(jwk: Mapping[str, Any], name: str) -> int:
    data = _member(jwk, name)
    if not data:
        raise ValueError("empty integer member")
    return int.from_bytes(data, "big")


#: EC curves of the registry, with the byte length of their coordinates (RFC 7518 §6.2.1).
_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
    "secp256k1": (ec.SECP256K1, 32),
}
_OKP_CURVES: dict[str, Any] = {
    "Ed25519": ed25519.Ed25519PublicKey,
    "Ed448": ed448.Ed448PublicKey,
}


def _key_object(jwk: Mapping[str, Any], kty: str, crv: str | None) -> Any:
    """The cryptography key of a public JWK (RFC 7518 §6), or the bytes of an ``oct`` one.
    Raises ValueError (or TypeError) for anything else: an unknown curve, coordinates of
    the wrong length, a point off its curve, an impossible RSA modulus or exponent."""
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_unsigned(jwk, "e"), _unsigned(jwk, "n")).public_key()
    if kty == "EC":
        curve, size = _EC_CURVES.get(crv or "", (None, 0))
        x, y = _member(jwk, "x"), _member(jwk, "y")
        if curve is None or len(x) != size or len(y) != size:
            raise ValueError("not a key of a supported curve")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve()
        )
        return numbers.public_key()  # refuses a point that is not on the curve
    if kty == "OKP":
        okp = _OKP_CURVES.get(crv or "")
        if okp is None:
            raise ValueError("not a signature curve")
        return okp.from_public_bytes(_member(jwk, "x"))
    if kty == "oct":
        return _member(jwk, "k")
    raise ValueError("unknown key type")


def parse_jwks(
    document: Mapping[str, Any], *, max_keys: int, allow_symmetric: bool = False
) -> KeySet:
    """The usable keys of a JWKS document (RFC 7517 §5). Unusable keys are skipped:
    ``use`` other than ``sig``, ``key_ops`` without ``verify``, RSA under 2048 bits,
    unknown ``kty``/``crv``, private members, symmetric keys from the network.
    Raises ValueError if the document is not a key set."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("not a JWK Set")
    usable = (usable_key(k, allow_symmetric=allow_symmetric) for k in keys[:max_keys])
    return KeySet(tuple(k for k in usable if k is not None))


def max_age(cache_control: str | None, settings: Settings) -> float:
    """Key-set lifetime from ``Cache-Control``, clamped to the configured bounds."""
    ttl = settings.jwks_default_ttl
    if cache_control:
        if _NO_CACHE.search(cache_control):
            ttl = settings.jwks_min_ttl
        elif match := _MAX_AGE.search(cache_control):
            ttl = float(match.group(1))
    return min(max(ttl, settings.jwks_min_ttl), settings.jwks_max_ttl)


class JwksState:
    """The key set of one issuer and the timing rules around refreshing it.

    Thread-safe: the state is replaced under a short lock (never held across I/O).
    """

    def __init__(self, issuer: str, settings: Settings) -> None:
        self.issuer = issuer
        self._settings = settings
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fresh_until = 0.0
        self._last_attempt: float | None = None
        self._fetched_at: float | None = None  # when the keys in hand were fetched
        self._early_gap = _EARLY_GAP_MIN
        self._failed = False
        self._stale_logged = False
        self.stale_uses = 0  # validations served by last-known-good keys (core/observe.py)

    @property
    def failing(self) -> bool:
        """Whether the last fetch failed (the keys may be out of date)."""
        return self._failed

    def wants_fetch(
        self, now: float, alg: str, kid: str | None, *, issued_by: float | None = None
    ) -> bool:
        """Whether a token with this ``alg``/``kid`` should cause a fetch now.

        ``issued_by``: the latest time the token can have been issued (its ``iat`` plus
        the leeway), for a token that passed every check that needs no key. A token
        naming a key we do not have that was issued after our keys were fetched may be
        signed with a key the server has just published (a rotation it did not
        announce): it may refresh before the cooldown ends, after an early-refresh gap
        that starts at one second and doubles each time such a refresh does not bring
        the key (back to one second when one does), so a flood of forged ``kid``s costs
        a bounded number of fetches.
        """
        with self._lock:
            cooled = (
                self._last_attempt is None
                or now >= self._last_attempt + self._settings.jwks_refresh_cooldown
            )
            if self._keys is None or now > self._fresh_until:
                # Missing or expired: fetch, unless a fetch just failed (then back off).
                return not self._failed or cooled
            if self._keys.candidates(alg, kid):
                return False
            # Unknown kid: maybe the server rotated. One refresh per cooldown, plus the
            # early refreshes for tokens issued after our keys were fetched.
            if cooled:
                return True
            last = self._last_attempt
            early = last is not None and now >= last + self._early_gap
            return early and self._may_be_new(kid, issued_by)

    def fresh_candidates(
        self, now: float, alg: str, kid: str | None
    ) -> tuple[VerificationKey, ...] | None:
        """The keys for ``alg``/``kid`` when the set in hand is fresh and has some: what
        :meth:`wants_fetch` (False) then :meth:`usable` would give, under one lock.
        None when anything else applies (a fetch, a stale set, no candidate)."""
        with self._lock:
            keys = self._keys
            if keys is None or now > self._fresh_until:
                return None
            return keys.candidates(alg, kid) or None

    def _may_be_new(self, kid: str | None, issued_by: float | None) -> bool:
        """A token naming a ``kid`` no key of ours has (for any algorithm: a known kid
        with the wrong algorithm is an attack, not a rotation), issued after our keys
        were fetched."""
        fetched_at, keys = self._fetched_at, self._keys
        if kid is None or issued_by is None or fetched_at is None or keys is None:
            return False
        return issued_by >= fetched_at and not keys.knows(kid)

    def retry_after(self, now: float, kid: str | None, issued_by: float | None) -> float | None:
        """For a token whose key is unknown and that may be newer than our keys: the
        seconds until a refresh will be allowed (None: the token is older than our keys,
        so the key it names does not exist)."""
        with self._lock:
            if not self._may_be_new(kid, issued_by) or self._last_attempt is None:
                return None
            early = self._last_attempt + self._early_gap
            cooled = self._last_attempt + self._settings.jwks_refresh_cooldown
            return max(min(early, cooled) - now, 0.0)

    def refreshed_for(self, found: bool) -> None:
        """After a refresh caused by an unknown key: did it bring the key?"""
        with self._lock:
            if found:
                self._early_gap = _EARLY_GAP_MIN
            else:
                cap = max(self._settings.jwks_refresh_cooldown, _EARLY_GAP_MIN)
                self._early_gap = min(self._early_gap * 2, cap)

    def absorb(
        self, document: Mapping[str, Any] | None, cache_control: str | None, now: float
    ) -> None:
        """Record a fetch: a parsed JWKS document, or None for a failed fetch.

        Only a failure keeps the last-known-good keys: no answer, a non-200 answer or a
        document that is not a key set. A key set is the issuer's word, even when it
        withdraws every key or keeps only keys tokenguard cannot use (an incident kill
        switch): the previous keys stop verifying at once.
        """
        keys: KeySet | None = None
        if document is not None:
            try:
                keys = parse_jwks(document, max_keys=self._settings.max_jwks_keys)
            except ValueError:
                log.warning("JWKS of %s is not a JWK Set; keeping the previous keys", self.issuer)
                keys = None
            if keys is not None and not keys.keys:
                log.warning("JWKS of %s has no usable key: no token of it verifies", self.issuer)
        with self._lock:
            self._last_attempt = now
            if keys is None:
                self._failed = True
                self._stale_logged = False
                return
            self._keys = keys
            self._fetched_at = now
            self._fresh_until = now + max_age(cache_control, self._settings)
            self._failed = False
        log.info("JWKS of %s refreshed: %d usable keys", self.issuer, len(keys.keys))

    def usable(self, now: float, *, verifying: bool = False) -> KeySet | None:
        """The key set to verify with now: fresh, or last-known-good within the stale
        window (logged), or None when there is nothing trustworthy. ``verifying``: a
        token is about to be verified with it (a stale set's use is counted)."""
        with self._lock:
            keys = self._keys
            if keys is None:
                return None
            # Fresh up to and including fresh_until: a set served with max-age=0 is still
            # good for the validation that fetched it, at that instant.
            if now <= self._fresh_until:
                return keys
            if now > self._fresh_until + self._settings.jwks_stale_window:
                return None
            first = not self._stale_logged
            self._stale_logged = True
            if verifying:
                self.stale_uses += 1
        if first:
            log.warning(
                "JWKS of %s could not be refreshed; using last-known-good keys (%.0fs stale)",
                self.issuer,
                now - self._fresh_until,
            )
        return keys


def static_keyset(document: Mapping[str, Any] | None, *, max_keys: int) -> KeySet | None:
    """Locally configured keys (``Issuer.static_jwks``); symmetric keys allowed here."""
    if document is None:
        return None
    return parse_jwks(document, max_keys=max_keys, allow_symmetric=True)
