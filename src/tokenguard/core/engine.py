"""The validation flow, written once. No I/O.

:meth:`Engine.start` either answers at once (a token already validated for this
policy) or returns a generator: the flow of one validation, which yields a
:class:`~tokenguard.exchange.Fetch` whenever it needs the network and otherwise runs
the steps of ``docs/architecture.md`` as plain function calls. The sync and async
shells drive the same generator, so every rule lives here exactly once.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..config import GuardConfig, Issuer, Policy
from ..errors import (
    ConfigurationError,
    InactiveToken,
    InsufficientScope,
    InvalidSignature,
    MalformedToken,
    MissingToken,
    SecurityEventError,
    TokenGuardError,
    UntrustedIssuer,
    ValidationUnavailable,
)
from ..models import TokenInfo
from .binding import Binder, Presented, check_binding
from .caches import IntrospectionCache, VerifiedCache, token_digest
from .claims import (
    Claims,
    check_audience,
    check_claim_values,
    check_times,
    read_claims,
    to_token_info,
)
from .detect import TokenFormat, detect
from .discovery import Metadata
from .dpop import DPoPProof, Proof
from .events import SecurityEvent, check_set_type, event_cutoffs, read_set
from .exchange import Fetch, HttpOutcome, HttpRequest, HttpResponse
from .introspection import (
    IntrospectionRecord,
    build_request,
    check_record,
    read_document,
    read_response,
)
from .jose import JWS, check_typ, parse_jws, strict_json, verify_signature
from .jwks import VerificationKey
from .needs import Joint
from .observe import Observer, Trace
from .policy import (
    IssuerRuntime,
    PolicyRuntime,
    Route,
    compile_config,
    introspection_keep,
    issuer_runtime,
    route,
)
from .requirements import check_profile_claims
from .revocation import (
    Revocation,
    RevocationKind,
    Revocations,
    SeenEvents,
    cutoff,
    jti_revocation_id,
    signed_content_id,
    token_revocation_id,
)
from .signed_introspection import SignedAnswer, read_signed_response
from .urls import well_known_urls

if TYPE_CHECKING:
    from ..fleet.tier import FleetTier
    from .mtls import ClientCertificate

__all__ = ["Engine", "Flow"]

log = logging.getLogger("tokenguard")

Flow = Generator[Any, Any, TokenInfo]  # yields Fetch and the needs of core/needs.py

#: How often a validation restarts because its token was forgotten or revoked meanwhile.
_MAX_RESTARTS = 3

_JWKS_ACCEPT = {"Accept": "application/jwk-set+json, application/json"}
_METADATA_ACCEPT = {"Accept": "application/json"}


class Engine:
    """Configuration, key and cache state, and the validation flow over them."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.issuers, self.policies = compile_config(config)
        runtimes = self.policies.values()
        self.introspection_cache = IntrospectionCache(
            self.settings.introspection_cache_size,
            max_active_ttl=max(p.active_cache_age for p in runtimes),
            max_inactive_ttl=max(p.inactive_cache_age for p in runtimes),
        )
        self.verified_cache = VerifiedCache(self.settings.verified_cache_size, self.policies)
        self._introspection_keep = introspection_keep(runtimes)
        self.binder = Binder(self.settings, list(config.policies))
        self.revocations = Revocations()
        self.fleet: FleetTier | None = None  # set by a fleet attached to the guard
        self.observer = Observer()  # counters (guard.stats()) and a listener (tokenguard.otel)
        # The two lookups every first-seen JWT counts, without a method call each.
        self._verified_miss = self.observer.lookup_counter("verified", False)
        self._jwks_hit = self.observer.lookup_counter("jwks", True)
        self._transmitters: dict[tuple[str, str], IssuerRuntime] = {}
        self._seen_events = SeenEvents()
        self._all_algorithms = frozenset().union(*(p.algorithms for p in runtimes))
        self._max_leeway = max(p.leeway for p in runtimes)
        self._default = next(iter(self.policies.values())) if len(self.policies) == 1 else None

    # -- entry points ---------------------------------------------------------------

    def policy(self, ref: str | Policy | None) -> PolicyRuntime:
        """The compiled policy for a name (or a configured :class:`Policy`)."""
        if type(ref) is str and (runtime := self.policies.get(ref)) is not None:
            return runtime  # the common case, first
        if ref is None:
            if self._default is None:
                raise ConfigurationError("several policies are configured: name one")
            return self._default
        name = ref.name if isinstance(ref, Policy) else ref
        runtime = self.policies.get(name) if isinstance(name, str) else None
        if runtime is None or (isinstance(ref, Policy) and runtime.config != ref):
            raise ConfigurationError("unknown policy")
        return runtime

    def digest(self, token: object) -> bytes:
        """Check the token is a string of acceptable length; return its cache identity."""
        if token is None or token == "":
            raise MissingToken()
        if not isinstance(token, str):
            raise MalformedToken("The access token must be a string")
        if len(token) > self.settings.max_token_length:
            raise MalformedToken("The access token is too long")
        if not token.isascii():  # RFC 6750 b64token; also keeps encode() total
            raise MalformedToken()
        return token_digest(token)

    def start(
        self,
        token: object,
        policy: str | Policy | None,
        dpop: DPoPProof | None = None,
        certificate: ClientCertificate | None = None,
    ) -> TokenInfo | Flow:
        """A cached answer, or the flow that will produce one. ``dpop`` and
        ``certificate`` are what the request offers to prove a bound token's possession."""
        runtime = self.policy(policy)
        path = "none"
        try:
            digest = self.digest(token)
            now = time.time()
            assert isinstance(token, str)
            presented = None
            if dpop is not None or certificate is not None:
                presented = self.binder.begin(runtime.binding, token, dpop, certificate, now)
            if runtime.verified_cache_ttl:
                cached = self.verified_cache.get(digest, runtime.name, now)
                if cached is not None:
                    if not self.revocations.active or not self._revoked(cached, token, digest, now):
                        runtime.hits.add()  # the only count of the hot path (observe.py)
                        if (
                            presented is None
                            and runtime.binding.plain
                            and "cnf" not in cached.claims
                        ):
                            return cached  # the common case: a bearer token seen before
                        path = "cache"
                        proof = self.binder.confirm(cached, presented, runtime.binding, now)
                        if proof is not None and self.fleet is not None:
                            trace = Trace(runtime.name, detect(token).value, "cache", True)
                            return self._observed(
                                trace, self._claimed(cached, proof, now, self.fleet)
                            )
                        return cached
                    self.verified_cache.forget(digest)  # the flow refuses it
                self._verified_miss()  # observer.lookup("verified", False)
        except TokenGuardError as error:
            self.observer.refused_early(runtime.name, error, path)
            raise
        return self._flow(token, digest, runtime, now, presented, Trace(runtime.name))

    def challenge(
        self, error: TokenGuardError, policy: str | Policy | None, dpop: DPoPProof | None
    ) -> None:
        """Set the policy's challenge (Bearer and/or DPoP, RFC 9449 §7.1) on an error."""
        try:
            runtime = self.policy(policy)
        except ConfigurationError:
            return
        error.challenge = self.binder.challenge(runtime.binding, dpop)

    def forget(self, token: str) -> None:
        """Drop every cached answer about ``token`` (e.g. after a revocation signal)."""
        if not isinstance(token, str) or not token.isascii():
            return  # never validated, so never cached
        self.forget_digest(token_digest(token))

    def forget_digest(self, digest: bytes) -> None:
        """Forget by digest: ordered first (rule 3), then the caches are dropped."""
        self.revocations.touch(digest, time.time())
        self.verified_cache.forget(digest)
        self.introspection_cache.forget(digest, self.issuers)

    def _revoked(self, info: TokenInfo, token: object, digest: bytes, now: float) -> bool:
        """Whether a cached answer is revoked (only asked while revocations exist)."""
        ids = [token_revocation_id(digest)]
        if info.source != "introspection" and isinstance(token, str):
            ids.append(signed_content_id(token.rpartition(".")[0].encode()))
            if info.token_id is not None and info.issuer is not None:
                ids.append(jti_revocation_id(info.issuer, info.token_id))
        iat = info.claims.get("iat")
        return self.revocations.refuses(
            token_ids=tuple(ids),
            issuer=info.issuer,
            subject=info.subject,
            client_id=info.client_id,
            issued_at=iat if isinstance(iat, int | float) else None,
            now=now,
        )

    # -- revocation -----------------------------------------------------------------

    def revoke(self, token: object) -> Generator[Any, Any, None]:
        """Revoke one token: refused from now on (in every process of a fleet), every
        cached answer about it dropped, until it would have expired anyway."""
        digest = self.digest(token)
        assert isinstance(token, str)
        now = time.time()
        if detect(token) is TokenFormat.JWS:
            found = yield from self._jwt_revocations(token, digest, now)
        else:
            found = [Revocation("token", token_revocation_id(digest), None, 0.0, self._until(now))]
        self.revocations.add_all(found, now)
        self.forget_digest(digest)
        if self.fleet is not None:
            yield from self.fleet.publish(found, self.fleet.forget_shared(digest, self.issuers))

    def revoke_cutoff(
        self, kind: RevocationKind, name: object, issuer: object, before: object
    ) -> Generator[Any, Any, None]:
        """Refuse every token of a subject or client issued before ``before``."""
        now = time.time()
        revocation = cutoff(kind, name, issuer, before, now, self.issuers, self._until)
        self.revocations.add_all([revocation], now)
        if self.fleet is not None:
            yield from self.fleet.publish([revocation])

    def _until(self, now: float, exp: float | None = None) -> float:
        """How long a revocation is kept: until the token's ``exp`` (plus leeway) or,
        when that is not known, the longest token lifetime configured."""
        longest = now + self.settings.max_token_lifetime + self._max_leeway
        return longest if exp is None else min(longest, exp + self._max_leeway)

    def _jwt_revocations(
        self, token: str, digest: bytes, now: float
    ) -> Generator[Any, Any, list[Revocation]]:
        """A JWT is revoked by its bytes and by what was signed (covering every other
        signature of the same content); by issuer and ``jti`` too when its signature
        verifies (so a forged token cannot revoke someone else's)."""
        try:
            jws = parse_jws(token, self._all_algorithms)
            claims = read_claims(jws.claims)
        except TokenGuardError:
            return [Revocation("token", token_revocation_id(digest), None, 0.0, self._until(now))]
        until = self._until(now, claims.exp)
        found = [
            Revocation("token", token_revocation_id(digest), None, 0.0, until),
            Revocation("token", signed_content_id(jws.signing_input), None, 0.0, until),
        ]
        issuer = self.issuers.get(claims.issuer) if claims.issuer is not None else None
        if issuer is not None and claims.token_id is not None:
            try:
                keys = yield from self._keys(issuer, jws, now)
                verify_signature(jws, keys)
            except TokenGuardError:
                log.info("revoke: signature not verified; revoked by content only, not by jti")
            else:
                ident = jti_revocation_id(issuer.issuer, claims.token_id)
                found.append(Revocation("token", ident, None, 0.0, until))
        return found

    def security_event(
        self, token: object, *, issuer: str, audience: str, jwks_uri: str | None
    ) -> Generator[Any, Any, SecurityEvent]:
        """Verify a Security Event Token and apply the revocations it carries."""
        if not isinstance(token, str) or not token.isascii():
            raise SecurityEventError("invalid_request", "The body is not a JWT")
        if len(token) > self.settings.max_token_length or detect(token) is not TokenFormat.JWS:
            raise SecurityEventError("invalid_request", "The body is not a signed JWT")
        now = time.time()
        try:
            jws = parse_jws(token, self._all_algorithms)
        except InvalidSignature:
            raise SecurityEventError(
                "invalid_key", "The event's algorithm is not accepted"
            ) from None
        except TokenGuardError:
            raise SecurityEventError("invalid_request", "The event cannot be parsed") from None
        check_set_type(jws.typ)
        leeway = self._max_leeway
        jti, iat, events = read_set(
            jws.claims, issuer=issuer, audience=audience, now=now, leeway=leeway
        )
        transmitter = self._transmitter(issuer, jwks_uri)
        try:
            keys = yield from self._keys(transmitter, jws, now)
            verify_signature(jws, keys)
        except InvalidSignature:
            raise SecurityEventError(
                "invalid_key", "No key of the transmitter verifies the event"
            ) from None
        cutoffs = event_cutoffs(
            jws.claims, events, transmitter=issuer, issuers=self.issuers, iat=iat, now=now
        )
        result = SecurityEvent(issuer, jti, tuple(events), cutoffs)
        if not self._seen_events.add((issuer, jti), now):
            return dataclasses.replace(result, duplicate=True)
        until = self._until(now)
        found = [
            Revocation("subject", c.subject.encode(), c.issuer, c.before, until) for c in cutoffs
        ]
        self.revocations.add_all(found, now)
        if found and self.fleet is not None:
            yield from self.fleet.publish(found)
        return result

    def _transmitter(self, issuer: str, jwks_uri: str | None) -> IssuerRuntime:
        """The runtime whose keys verify a transmitter's events: a configured issuer's
        (same keys as its tokens), or one of its own for another ``jwks_uri``."""
        configured = self.issuers.get(issuer)
        if jwks_uri is None:
            if configured is None:
                raise ConfigurationError(
                    "a transmitter that is not a configured issuer needs jwks_uri"
                )
            return configured
        key = (issuer, jwks_uri)
        runtime = self._transmitters.get(key)
        if runtime is None:
            insecure = configured is not None and configured.config.allow_insecure_http
            try:
                spec = Issuer(issuer, jwks_uri=jwks_uri, allow_insecure_http=insecure)
            except ValueError:
                raise ConfigurationError(
                    "the transmitter's issuer or jwks_uri is not acceptable"
                ) from None
            runtime = self._transmitters.setdefault(key, issuer_runtime(spec, self.config))
        return runtime

    def warm_up(self) -> Generator[Fetch, Any, dict[str, bool]]:
        """Fetch each issuer's keys (and metadata, when discovered) ahead of any token,
        skipping what is cached or backing off. Returns, per issuer, whether it can be
        used now: keys fresh or last-known-good, or metadata known, or nothing to fetch
        ahead (static keys; an issuer used only through a configured introspection
        endpoint)."""
        now = time.time()
        ready: dict[str, bool] = {}
        for issuer in self.issuers.values():
            state = issuer.jwks
            if state is not None and state.usable(now) is None and state.wants_fetch(now, "", None):
                yield from self._fetch_jwks(issuer, now)
            config = issuer.config
            ready[issuer.issuer] = (
                state is None
                or state.usable(now) is not None
                or issuer.metadata.metadata is not None
                or (config.introspection_endpoint is not None and config.jwks_uri is None)
            )
        return ready

    # -- the flow -------------------------------------------------------------------

    def _observed(self, trace: Trace, flow: Flow) -> Flow:
        """``flow``, with its end told to the observer (core/observe.py)."""
        try:
            info = yield from flow
        except TokenGuardError as error:
            self.observer.finished(trace, error)
            raise
        self.observer.finished(trace, None)
        return info

    def _flow(
        self,
        token: str,
        digest: bytes,
        policy: PolicyRuntime,
        now: float,
        presented: Presented | None,
        trace: Trace,
    ) -> Flow:
        """One validation, its end told to the observer (as :meth:`_observed` does, without
        a generator layer of its own: this runs for every first-seen token). If the token
        is forgotten or revoked while it runs, whatever it learnt is dropped and it starts
        again: nothing obtained before a forget or a revocation is cached or served after
        it returns."""
        try:
            for _ in range(_MAX_RESTARTS):
                began = self.revocations.mark()
                info = yield from self._attempt(token, digest, policy, now, began, presented, trace)
                revocations = self.revocations
                if not revocations.touched_since(digest, began):
                    if revocations.cut_since(began) and self._revoked(info, token, digest, now):
                        # A subject/client cut-off arrived meanwhile and covers this token.
                        self.verified_cache.forget(digest)
                        raise InactiveToken("The access token has been revoked")
                    if presented is not None and presented.proof is not None:
                        # Last: only a DPoP proof whose request passed is remembered, here
                        # first, then (a store need) across the fleet.
                        self.binder.claim(presented.proof, now)
                        if self.fleet is not None:
                            yield from self.binder.claim_shared(presented.proof, now, self.fleet)
                    break
                self.verified_cache.forget(digest)  # undo what this attempt remembered
                now = time.time()
            else:
                raise ValidationUnavailable("The token kept being revoked during validation")
        except TokenGuardError as error:
            self.observer.finished(trace, error)
            raise
        self.observer.finished(trace, None)
        return info

    def _claimed(self, info: TokenInfo, proof: Proof, now: float, fleet: FleetTier) -> Flow:
        """A cached token's answer once its DPoP proof is claimed across the fleet."""
        yield from self.binder.claim_shared(proof, now, fleet)
        return info

    def _attempt(
        self,
        token: str,
        digest: bytes,
        policy: PolicyRuntime,
        now: float,
        began: int,
        presented: Presented | None,
        trace: Trace,
    ) -> Flow:
        fmt = detect(token)
        trace.format = fmt.value
        path = route(fmt, policy)
        trace.path = _PATHS[path]
        token_ids: tuple[bytes, ...] = (token_revocation_id(digest),)
        if self.revocations.active and self.revocations.is_revoked(token_ids, now):
            raise InactiveToken("The access token has been revoked")  # before any request
        introspected: IntrospectionRecord | None = None
        was_cached = False
        if path is Route.INTROSPECT:
            issuer = policy.introspector
            assert issuer is not None  # route() never introspects without one
            introspected, was_cached = yield from self._introspect(
                issuer, token, digest, policy, now, began
            )
            trace.cached = was_cached
            claims = self._check_introspected(introspected, issuer, policy, now, opaque=True)
            proof = self.binder.match(claims.cnf, presented, policy.binding)
            info = to_token_info(
                claims,
                source="introspection",
                issuer=issuer.issuer,
                token_type=claims.token_type,
                keep=policy.keep,
            )
        else:
            jws = parse_jws(token, policy.algorithms)
            claims, issuer = self._check_jwt_claims(jws, policy, now)
            proof = self.binder.match(claims.cnf, presented, policy.binding)
            keys = self._keys_in_hand(issuer, jws, now)
            if keys is None:
                issued_by = None if claims.iat is None else claims.iat + policy.leeway
                keys = yield from self._keys(issuer, jws, now, issued_by)
            if not keys:
                raise InvalidSignature("No trusted key matches the token")
            verify_signature(jws, keys)
            if self.revocations.active:  # two SHA-256 a first-seen token need not pay
                token_ids += (signed_content_id(jws.signing_input),)
                if claims.token_id is not None:
                    token_ids += (jti_revocation_id(issuer.issuer, claims.token_id),)
            source: Any = "jwt"
            if path is Route.BOTH:
                introspected, was_cached = yield from self._introspect(
                    issuer, token, digest, policy, now, began
                )
                trace.cached = was_cached
                self._check_introspected(introspected, issuer, policy, now, opaque=False)
                source = "jwt+introspection"
            info = to_token_info(
                claims, source=source, issuer=issuer.issuer, token_type=jws.typ, keep=policy.keep
            )

        if self.revocations.active and self.revocations.refuses(
            token_ids=token_ids,
            issuer=issuer.issuer,
            subject=claims.subject,
            client_id=claims.client_id,
            issued_at=claims.iat,
            now=now,
        ):
            raise InactiveToken("The access token has been revoked")
        if proof is not None:
            self.binder.verify(proof)  # the DPoP proof's signature, once the token's verified
        # Authorisation last, so an expired token is reported as expired.
        if not policy.required_scopes <= info.scopes:
            raise InsufficientScope(policy.required_scopes)
        if policy.step_up is not None:
            policy.step_up.check(claims.acr, claims.auth_time, now)
        self._remember(info, digest, policy, claims, introspected, now)
        if was_cached:
            info = info.as_cached()
        return info

    def _check_jwt_claims(
        self, jws: JWS, policy: PolicyRuntime, now: float
    ) -> tuple[Claims, IssuerRuntime]:
        """Every claim check that needs no key: run before any network call, so a token
        that cannot pass (wrong issuer, expired, wrong audience) never causes a fetch."""
        config = policy.config
        typed = check_typ(jws.typ, accept_plain_jwt=config.accept_plain_jwt)
        claims = read_claims(jws.claims)
        # iss only selects among the policy's trusted issuers; it never adds one.
        issuer = policy.issuers.get(claims.issuer) if claims.issuer is not None else None
        if issuer is None:
            raise UntrustedIssuer()
        # RFC 9068 §2.2 requires iat in an at+jwt; untyped JWTs (accept_plain_jwt) may lack it.
        check_times(claims, now, policy.leeway, require_exp=True, require_iat=typed)
        check_audience(claims, policy.audience, required=True, claim=config.audience_claim)
        if config.required_claim_values:
            check_claim_values(claims, config.required_claim_values)
        check_binding(claims, policy.binding)
        if typed and config.require_rfc9068_claims:
            check_profile_claims(claims)  # RFC 9068 §2.2: sub, client_id, jti
        return claims, issuer

    def _check_introspected(
        self,
        record: IntrospectionRecord,
        issuer: IssuerRuntime,
        policy: PolicyRuntime,
        now: float,
        *,
        opaque: bool,
    ) -> Claims:
        config = policy.config
        claims = check_record(
            record,
            issuer=issuer.issuer,
            audience=policy.audience,
            audience_claim=config.audience_claim,
            leeway=policy.leeway,
            # A JWT already proved its audience; an opaque token has only this answer.
            require_audience=opaque and config.require_introspection_audience,
            binding=policy.binding,
            now=now,
        )
        if opaque and config.required_claim_values:
            check_claim_values(claims, config.required_claim_values)
        return claims

    def _remember(
        self,
        info: TokenInfo,
        digest: bytes,
        policy: PolicyRuntime,
        claims: Claims,
        introspected: IntrospectionRecord | None,
        now: float,
    ) -> None:
        """Put a validated token in the verified cache, bounded by the policy's
        verified-cache TTL and by what a fresh check would still accept: a JWT until its
        exp + leeway (the leeway absorbs clock skew with the issuer, and a fresh local
        check would pass it that long), an introspected token until its exp and the
        introspection bound (past exp only the server can say it is still active)."""
        if not policy.verified_cache_ttl:
            return
        not_after = now + policy.verified_cache_ttl
        if introspected is not None:
            not_after = min(not_after, introspected.fetched_at + policy.active_cache_age)
        if policy.step_up is not None:
            # A cached answer must not outlive the user's authentication being recent enough.
            fresh = policy.step_up.fresh_until(claims.auth_time)
            if fresh is not None:
                not_after = min(not_after, fresh)
        if claims.exp is not None:
            not_after = min(not_after, claims.exp + (0 if introspected else policy.leeway))
        self.verified_cache.put(digest, policy.name, info, not_after, now)

    # -- the steps that may need the network ----------------------------------------

    def _keys_in_hand(
        self, issuer: IssuerRuntime, jws: JWS, now: float
    ) -> tuple[VerificationKey, ...] | None:
        """What :meth:`_keys` returns when it needs no fetch and the issuer's fresh key
        set has keys for the token (the common case, without a generator); else None."""
        alg, kid = jws.algorithm.name, jws.kid
        state = issuer.jwks
        static = issuer.static.candidates(alg, kid) if issuer.static else ()
        if state is None:
            return static
        found = state.fresh_candidates(now, alg, kid)
        if found is None:
            return None
        self._jwks_hit()  # observer.lookup("jwks", True), as _keys counts it
        return static + found if static else found

    def _keys(
        self, issuer: IssuerRuntime, jws: JWS, now: float, issued_by: float | None = None
    ) -> Generator[Fetch, Any, tuple[VerificationKey, ...]]:
        """Keys that may verify this token: static ones, then the (maybe refreshed) JWKS.
        ``issued_by``: the latest the token can have been issued (iat + leeway), for the
        rule on keys that rotate without warning (:meth:`JwksState.wants_fetch`)."""
        alg, kid = jws.algorithm.name, jws.kid
        static = issuer.static.candidates(alg, kid) if issuer.static else ()
        state = issuer.jwks
        if state is None:
            return static
        fetched = state.wants_fetch(now, alg, kid, issued_by=issued_by)
        self.observer.lookup("jwks", not fetched)
        if fetched:
            yield from self._fetch_jwks(issuer, now)
        keyset = state.usable(now, verifying=True)
        if keyset is None:
            if static:
                return static
            raise ValidationUnavailable("The issuer's signing keys are unavailable")
        keys = static + keyset.candidates(alg, kid)
        if not keys and state.failing:
            # The key may be one we could not fetch: that is not knowable now, so 503,
            # never a 401 for a token that may be valid.
            raise ValidationUnavailable("The issuer's signing keys could not be refreshed")
        if fetched:
            state.refreshed_for(found=bool(keys))
        elif not keys and (wait := state.retry_after(now, kid, issued_by)) is not None:
            # Maybe signed with a key published after our last fetch, and no refresh is
            # allowed yet: not knowable now, so 503 with when to retry, never a 401.
            raise ValidationUnavailable(
                "The token's signing key is not known yet", retry_after=max(math.ceil(wait), 1)
            )
        return keys

    def _fetch_jwks(self, issuer: IssuerRuntime, now: float) -> Generator[Fetch, Any, None]:
        state = issuer.jwks
        assert state is not None
        uri = issuer.config.jwks_uri
        if uri is None:
            metadata = yield from self._metadata(issuer, now)
            uri = metadata.jwks_uri if metadata else None
            if uri is None:
                if metadata is not None:
                    log.error("metadata of %s publishes no jwks_uri", issuer.issuer)
                state.absorb(None, None, now)
                self.observer.jwks_refreshed(issuer.issuer, ok=False)
                return

        def complete(outcome: HttpOutcome) -> None:
            document = None
            cache_control = None
            if isinstance(outcome, HttpResponse) and outcome.status == 200:
                cache_control = outcome.header("cache-control")
                try:
                    parsed = strict_json(outcome.body)
                except ValueError:
                    parsed = None
                document = parsed if isinstance(parsed, dict) else None
            if document is None:
                log.warning("JWKS of %s could not be fetched: %s", issuer.issuer, _why(outcome))
            state.absorb(document, cache_control, now)
            self.observer.jwks_refreshed(issuer.issuer, ok=not state.failing)

        request = HttpRequest(
            "GET", uri, max_bytes=self.settings.max_jwks_bytes, headers=_JWKS_ACCEPT
        )
        yield Fetch(key=("jwks", issuer.issuer), build=lambda: request, complete=complete)

    def _metadata(
        self, issuer: IssuerRuntime, now: float
    ) -> Generator[Fetch, Any, Metadata | None]:
        """The issuer's metadata: cached, or discovered (RFC 8414 first, then OIDC)."""
        state = issuer.metadata
        if not state.wants_fetch(now):
            self.observer.lookup("metadata", True)
            return state.metadata
        self.observer.lookup("metadata", False)
        configured = issuer.config.metadata_url
        urls = (configured,) if configured else well_known_urls(issuer.issuer)
        for url in urls:
            request = HttpRequest(
                "GET", url, max_bytes=self.settings.max_metadata_bytes, headers=_METADATA_ACCEPT
            )
            usable = yield Fetch(
                # The key names the issuer whose state `complete` fills: two issuers whose
                # well-known URLs coincide (`https://h`, `https://h/`) fetch separately.
                key=("metadata", issuer.issuer, url),
                build=functools.partial(_same, request),
                complete=functools.partial(state.absorb, now=now),
            )
            if usable:
                break
        else:
            state.failed(now)
        return state.metadata

    def _introspect(
        self,
        issuer: IssuerRuntime,
        token: str,
        digest: bytes,
        policy: PolicyRuntime,
        now: float,
        began: int,
    ) -> Generator[Any, Any, tuple[IntrospectionRecord, bool]]:
        """What the issuer says about the token: from the cache if this policy allows
        an answer that old, else asked once however many validations wait for it."""
        if policy.active_cache_age or policy.inactive_cache_age:
            record = self.introspection_cache.get(
                issuer.issuer,
                digest,
                now,
                max_active_age=policy.active_cache_age,
                max_inactive_age=policy.inactive_cache_age,
            )
            self.observer.lookup("introspection", record is not None)
            if record is not None:
                return record, True
        client_auth = issuer.config.client_auth
        assert client_auth is not None  # policies only introspect with client_auth
        endpoint = issuer.config.introspection_endpoint
        if endpoint is None:
            metadata = yield from self._metadata(issuer, now)
            if metadata is None:
                raise ValidationUnavailable("The authorization server metadata is unavailable")
            endpoint = metadata.introspection_endpoint
            if client_auth.tls_identity is not None and metadata.mtls_introspection_endpoint:
                # RFC 8705 §5: a client authenticating with mutual TLS uses the alias.
                endpoint = metadata.mtls_introspection_endpoint
            if endpoint is None:
                raise ConfigurationError("the issuer publishes no introspection_endpoint")

        revocations = self.revocations
        high = policy.mode == "high_assurance"
        era = revocations.era(digest, high_assurance=high)
        sent = [began]

        signed = issuer.config.signed_introspection  # RFC 9701

        def build() -> HttpRequest:
            # From here on, the answer is "obtained before" any later forget (rule 3);
            # under high_assurance, validations that start now need a request of their own.
            sent[0] = revocations.sent_high_assurance(digest) if high else revocations.mark()
            return build_request(
                endpoint,
                token,
                client_auth,
                issuer=issuer.issuer,
                max_bytes=self.settings.max_introspection_bytes,
                signed=signed,
            )

        def complete(outcome: HttpOutcome) -> IntrospectionRecord | SignedAnswer | TokenGuardError:
            if signed:  # verified by each flow with the issuer's keys, then absorbed
                return read_signed_response(
                    outcome,
                    issuer=issuer.issuer,
                    client_id=getattr(client_auth, "client_id", ""),
                    algorithms=self._all_algorithms,
                    max_age=self._max_leeway + self.settings.http_timeout,
                    now=now,
                )
            # Trimmed to what the policies asking this issuer keep, before it is cached.
            keep = self._introspection_keep.get(issuer.issuer)
            return absorb(read_response(outcome, now, keep=keep))

        def absorb(
            result: IntrospectionRecord | TokenGuardError,
        ) -> IntrospectionRecord | TokenGuardError:
            if isinstance(result, IntrospectionRecord):
                self.introspection_cache.put(issuer.issuer, digest, result)
                if revocations.touched_since(digest, sent[0]):
                    # Forgotten while this request was out: the answer predates it.
                    self.introspection_cache.forget(digest, (issuer.issuer,))
                elif not result.active:
                    # A revocation signal: no policy may keep serving this token.
                    self.verified_cache.forget(digest)
            return result

        fetch = Fetch(
            key=("introspect", issuer.issuer, digest, *era),
            build=build,
            complete=complete,
            budget=("introspections", issuer.issuer),  # a bounded number in flight at once
        )
        shared = False
        if self.fleet is not None and (policy.active_cache_age or policy.inactive_cache_age):
            # A signed answer (RFC 9701) is not shared before this flow verified it.
            result, shared = yield self._shared(fetch, issuer.issuer, digest, policy)
        else:
            result = yield fetch
        if isinstance(result, SignedAnswer):
            result = absorb((yield from self._signed_answer(issuer, policy, result, now)))
        if isinstance(result, TokenGuardError):
            raise copy.copy(result)  # the flight's error is shared; raise a fresh one
        return result, shared

    def _shared(self, fetch: Fetch, issuer: str, digest: bytes, policy: PolicyRuntime) -> Joint:
        """The introspection step through the fleet: another process's answer, or one
        request for the whole fleet (see :mod:`tokenguard.fleet.tier`)."""
        fleet = self.fleet
        assert fleet is not None
        cache = self.introspection_cache

        def accept(record: IntrospectionRecord) -> IntrospectionRecord | None:
            now = time.time()
            if record.fetched_at > now:  # another host's clock runs ahead: not older
                record = dataclasses.replace(record, fetched_at=now)
            if self.revocations.touched_after(digest, record.fetched_at):
                return None  # fetched before this process forgot the token (rule 3)
            cache.put(issuer, digest, record)
            if not record.active:
                self.verified_cache.forget(digest)
            if self.revocations.touched_after(digest, record.fetched_at):
                cache.forget(digest, (issuer,))
                return None
            return cache.get(
                issuer,
                digest,
                now,
                max_active_age=policy.active_cache_age,
                max_inactive_age=policy.inactive_cache_age,
            )

        def keep_for(record: IntrospectionRecord) -> float:
            return cache.until(record) - time.time()

        ages = (policy.active_cache_age, policy.inactive_cache_age)
        return Joint(
            key=("fleet", fetch.key, ages),
            start=functools.partial(fleet.introspect, issuer, digest, fetch, accept, keep_for),
        )

    def _signed_answer(
        self, issuer: IssuerRuntime, policy: PolicyRuntime, answer: SignedAnswer, now: float
    ) -> Generator[Any, Any, IntrospectionRecord | TokenGuardError]:
        """An RFC 9701 answer counts once its signature verifies with the issuer's keys
        and an algorithm this policy accepts; else the server's answer is unusable (503)."""
        jws = answer.jws
        try:
            if jws.algorithm.name not in policy.algorithms:
                raise InvalidSignature()
            keys = yield from self._keys(issuer, jws, now)
            verify_signature(jws, keys)
        except InvalidSignature:
            log.warning("signed introspection answer of %s: signature not verified", issuer.issuer)
            return ValidationUnavailable(
                "The authorization server's signed answer is not acceptable"
            )
        return read_document(answer.document, now)


_UNSIGNED = "The authorization server's signed answer is not acceptable"

#: ``tokenguard.path`` of each route (core/observe.py).
_PATHS = {Route.LOCAL: "jwt", Route.INTROSPECT: "introspection", Route.BOTH: "jwt+introspection"}


def _same(request: HttpRequest) -> HttpRequest:
    return request


def _why(outcome: HttpOutcome) -> str:
    if isinstance(outcome, HttpResponse):
        return f"HTTP {outcome.status}" if outcome.status != 200 else "not a JSON object"
    return outcome.reason
