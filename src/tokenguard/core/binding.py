"""Sender-constrained tokens: what a token is bound to, and whether the request proves
it (DPoP RFC 9449, mutual TLS RFC 8705). No I/O.

The rules, in the order a validation meets them:

1. :meth:`Binder.begin`, before the token is looked at: the request's DPoP proof is read
   and checked as far as it can be without the token's binding (:func:`read_proof`),
   and the server nonce too when the policy demands one.
2. :func:`check_binding`, with the token's other claims and before any key fetch or
   introspection: a ``cnf`` names only confirmation methods tokenguard checks (``jkt``,
   ``x5t#S256``), well formed, and DPoP-bound tokens only where the policy takes them.
3. :meth:`Binder.match`, as soon as the token's claims are known (before any key fetch or
   signature, also for a token from the cache); the proof's signature is verified after
   the token's (:func:`verify_proof`):

   ============================  ===========================  ==========================
   token                         request                      outcome
   ============================  ===========================  ==========================
   ``cnf.jkt``                   ``DPoP`` scheme + proof      proof key must be ``jkt``,
                                                              signature must verify
   ``cnf.jkt``                   ``Bearer`` scheme            refused (RFC 9449 §7.2)
   no ``jkt``                    ``DPoP`` scheme              refused (nothing to prove)
   no ``jkt``                    ``Bearer`` (+ any proof)     passes, unless the policy
                                                              demands DPoP
   ``cnf["x5t#S256"]``           client certificate           must hash to it
   ============================  ===========================  ==========================

4. :meth:`Binder.claim`, last: the proof's ``jti`` is remembered (replay cache) only now
   that everything passed; then, in a fleet, :meth:`Binder.claim_shared` claims it for
   every process (a store need), refusing a proof another process accepted.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections import OrderedDict
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import Policy, Settings
from ..errors import (
    Challenge,
    InvalidClaims,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidTokenBinding,
    UnsupportedToken,
    UseDPoPNonce,
    ValidationUnavailable,
)
from ..models import TokenInfo
from .claims import Claims
from .dpop import DPoPProof, DPoPRules, KnownHeader, Proof, read_proof, verify_proof
from .jwks import VerificationKey
from .mtls import matches_certificate
from .nonces import NonceSource
from .replay import ReplayCache, proof_identity, replay_key

if TYPE_CHECKING:
    from ..fleet.tier import FleetTier
    from .mtls import ClientCertificate

__all__ = ["Binder", "BindingRules", "Presented", "binding_rules", "check_binding"]

_METHODS = frozenset({"jkt", "x5t#S256"})
_SCHEMES = {"dpop": "DPoP", "bearer": "Bearer"}
_CHALLENGE_SCHEMES = {
    "disabled": ("Bearer",),
    "allowed": ("Bearer", "DPoP"),
    "required": ("DPoP",),
}
_SHA256_B64 = 43  # characters of an unpadded base64url SHA-256 digest
_MAX_KNOWN_KEYS = 10_000
_MAX_KNOWN_HEADERS = 10_000
_MAX_HEADER_SEGMENT = 2048  # an RSA-4096 jwk header is about 1 KB of base64url
# How far the clocks of a fleet's hosts may disagree: a proof's fleet-wide entry outlives
# its window by this much, for a process whose clock is behind.
_FLEET_CLOCK_SKEW = 5.0

log = logging.getLogger("tokenguard.dpop")


@dataclass(frozen=True, slots=True)
class BindingRules:
    """One policy's sender-constraint settings, compiled."""

    dpop: DPoPRules
    legacy: bool  # Policy.allow_sender_constrained (deprecated)
    challenges: dict[str, Challenge]  # by the scheme the request used
    plain: bool  # an unbound bearer token passes (the policy does not demand DPoP)


def binding_rules(policy: Policy) -> BindingRules:
    """Compile a policy's DPoP and binding settings."""
    algs = tuple(policy.dpop_algorithms)
    schemes = _CHALLENGE_SCHEMES[policy.dpop]
    return BindingRules(
        dpop=DPoPRules(
            mode=policy.dpop,
            algorithms=frozenset(algs),
            algs=algs,
            max_age=policy.dpop_max_age,
            nonce=policy.dpop_nonce,
        ),
        legacy=policy.allow_sender_constrained,
        challenges={
            scheme: Challenge(schemes, algs if "DPoP" in schemes else (), scheme)
            for scheme in ("Bearer", "DPoP")
        },
        plain=policy.dpop != "required",
    )


def _is_sha256_b64url(value: Any) -> bool:
    return type(value) is str and len(value) == _SHA256_B64 and value.isascii()


def check_binding(claims: Claims, rules: BindingRules) -> None:
    """The token's ``cnf`` (RFC 7800) names only what tokenguard can check, and a
    DPoP-bound token only where the policy accepts DPoP. Needs no request."""
    cnf = claims.cnf
    if not cnf or rules.legacy:
        return
    if not _METHODS.issuperset(cnf):
        # jwk, jwe, kid, jku, osc or something unknown: a proof we cannot check.
        raise UnsupportedToken("The token is bound by a confirmation method not supported here")
    jkt = cnf.get("jkt")
    if "jkt" in cnf:
        if not _is_sha256_b64url(jkt):
            raise InvalidClaims("The cnf jkt member is invalid")
        if rules.dpop.mode == "disabled":
            raise UnsupportedToken("DPoP-bound tokens are not accepted here")
    if "x5t#S256" in cnf and not _is_sha256_b64url(cnf["x5t#S256"]):
        raise InvalidClaims("The cnf x5t#S256 member is invalid")


def _scheme(dpop: DPoPProof | None) -> str | None:
    """The scheme that carried the token: given, or inferred from the proof's presence;
    None when the given one is neither DPoP nor Bearer."""
    if dpop is None:
        return "Bearer"
    given = dpop.scheme
    if given is None:
        return "Bearer" if dpop.proof is None else "DPoP"
    return _SCHEMES.get(given.lower()) if isinstance(given, str) else None


@dataclass(frozen=True, slots=True)
class Presented:
    """What one request offers to prove possession: the scheme that carried the token,
    its checked DPoP proof (signature not verified yet), its client certificate."""

    scheme: str
    proof: Proof | None
    certificate: ClientCertificate | None


class Binder:
    """Nonces and replay state for DPoP, and the steps that use them."""

    def __init__(self, settings: Settings, policies: list[Policy]) -> None:
        secret = settings.dpop_nonce_secret
        self.nonces = NonceSource(None if secret is None else secret.get_secret_value().encode())
        longest = max((p.dpop_max_age for p in policies), default=60.0)
        self._longest = longest
        self.replay = ReplayCache(settings.dpop_replay_cache_size, retention=2 * longest)
        self._max_length = settings.max_dpop_proof_length
        # Public keys of proofs that passed, by thumbprint: a client's next proof is
        # verified without building its key again. Only a request that passed adds one.
        self._keys: OrderedDict[str, VerificationKey] = OrderedDict()
        self._keys_lock = threading.Lock()
        # Header segments of proofs that passed: a client's next proof (same header) is
        # read without parsing and checking its header and key again. Bounded; emptied
        # when full (refilled by the next request of each client).
        self._headers: dict[str, KnownHeader] = {}

    def challenge(self, rules: BindingRules, dpop: DPoPProof | None) -> Challenge:
        """The challenge for an error answered to a request with this DPoP context."""
        return rules.challenges[_scheme(dpop) or "Bearer"]

    def begin(
        self,
        rules: BindingRules,
        token: str,
        dpop: DPoPProof | None,
        certificate: ClientCertificate | None,
        now: float,
    ) -> Presented | None:
        """Read what the request presents; check its DPoP proof as far as possible
        before the token is validated. None: the caller gave no request context."""
        if dpop is None:
            return None if certificate is None else Presented("Bearer", None, certificate)
        scheme = _scheme(dpop)
        if scheme is None:
            raise InvalidRequest("The authorization scheme must be DPoP or Bearer")
        proof = None
        if scheme == "DPoP" and rules.dpop.mode != "disabled":
            proof = read_proof(
                dpop.proof,
                method=dpop.method,
                url=dpop.url,
                token=token,
                rules=rules.dpop,
                max_length=self._max_length,
                now=now,
                known_headers=self._headers,
            )
            if rules.dpop.nonce:
                nonce = proof.jws.claims.get("nonce")
                if nonce is None or not self.nonces.accepts(nonce, now):
                    raise UseDPoPNonce(self.nonces.current(now))
        return Presented(scheme, proof, certificate)

    def match(
        self, cnf: Mapping[str, Any] | None, presented: Presented | None, rules: BindingRules
    ) -> Proof | None:
        """Whether the request presents what a token bound by ``cnf`` needs, short of
        the proof's signature (run before any key fetch). Returns the proof to verify
        and claim, or None."""
        jkt = cnf.get("jkt") if cnf else None
        x5t = cnf.get("x5t#S256") if cnf else None
        if presented is None:  # validate(token) without the request's proof or certificate
            if rules.legacy:
                return None  # deprecated: the caller checks the binding itself
            if jkt is not None:
                raise InvalidTokenBinding("A DPoP-bound access token needs a DPoP proof")
            if x5t is not None:
                raise InvalidTokenBinding("The access token is bound to a client certificate")
            if not rules.plain:
                raise InvalidTokenBinding("This resource requires DPoP-bound access tokens")
            return None
        proof = None
        if jkt is not None:
            if presented.scheme != "DPoP":
                raise InvalidTokenBinding(
                    "A DPoP-bound access token must be sent with the DPoP scheme"
                )
            proof = presented.proof
            if proof is None:  # only when the policy disables DPoP (refused earlier)
                raise InvalidDPoPProof("A DPoP proof is required")
            if not hmac.compare_digest(proof.thumbprint.encode(), str(jkt).encode()):
                raise InvalidDPoPProof("The DPoP proof key is not the one the token is bound to")
        elif presented.scheme == "DPoP":
            raise InvalidTokenBinding("The access token is not DPoP-bound")
        elif not rules.plain:
            raise InvalidTokenBinding("This resource requires DPoP-bound access tokens")
        if x5t is not None:
            if presented.certificate is None:
                raise InvalidTokenBinding("The access token is bound to a client certificate")
            if not matches_certificate(str(x5t), presented.certificate):
                raise InvalidTokenBinding(
                    "The client certificate is not the one the token is bound to"
                )
        return proof

    def confirm(
        self, info: TokenInfo, presented: Presented | None, rules: BindingRules, now: float
    ) -> Proof | None:
        """All of it for a token validated before (from the cache): :meth:`match`, the
        proof's signature, its ``jti`` in this process. Returns the proof claimed (for
        :meth:`claim_shared` in a fleet), or None."""
        proof = self.match(info.claims.get("cnf"), presented, rules)
        if proof is not None:
            self.verify(proof)
            self.claim(proof, now)
        return proof

    def verify(self, proof: Proof) -> None:
        """The proof's signature (with its key, built once per client key)."""
        with self._keys_lock:
            known = self._keys.get(proof.thumbprint)
        verify_proof(proof, known)

    def claim(self, proof: Proof, now: float) -> None:
        """Remember a verified proof's ``jti``; refuse it if it was seen before."""
        first = self.replay.claim(replay_key(proof.thumbprint, proof.jti), now)
        if first is None:
            log.warning("DPoP replay cache full (Settings.dpop_replay_cache_size): proof refused")
            raise ValidationUnavailable("The DPoP replay cache is full")
        if not first:
            raise InvalidDPoPProof("The DPoP proof was already used")
        if proof.key is not None:
            with self._keys_lock:
                self._keys[proof.thumbprint] = proof.key
                self._keys.move_to_end(proof.thumbprint)
                if len(self._keys) > _MAX_KNOWN_KEYS:
                    self._keys.popitem(last=False)
                segment = proof.segment
                if segment not in self._headers and 0 < len(segment) <= _MAX_HEADER_SEGMENT:
                    if len(self._headers) >= _MAX_KNOWN_HEADERS:
                        self._headers.clear()
                    jws = proof.jws
                    self._headers[segment] = KnownHeader(
                        jws.header, jws.algorithm, jws.typ, proof.jwk, proof.thumbprint
                    )

    def claim_shared(self, proof: Proof, now: float, fleet: FleetTier) -> Generator[Any, Any, None]:
        """Claim a proof that :meth:`claim` accepted for every process of the fleet: a
        proof another process accepted is a replay. The entry lives while any process
        could still accept the proof (its ``iat`` plus the longest window, plus a margin
        for the hosts' clocks). When Redis cannot answer, the fleet's
        ``dpop_replay_when_down`` decides: refuse (503) or rely on :meth:`claim`."""
        ttl = min(proof.iat + self._longest - now, 2 * self._longest) + _FLEET_CLOCK_SKEW
        identity = proof_identity(proof.thumbprint, proof.jti)
        first = yield from fleet.claim_proof(identity, max(ttl, 1.0))
        if first is False:
            raise InvalidDPoPProof("The DPoP proof was already used")
        if first is None and fleet.dpop_replay_when_down == "refuse":
            raise ValidationUnavailable(
                "The DPoP proof cannot be checked for replay: the fleet store is unavailable",
                retry_after=fleet.breaker.retry_after(),
            )
