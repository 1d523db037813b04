"""``TokenGuard.stats()``: what a guard has counted since it was made, as frozen models.

The same counters feed the OpenTelemetry metrics of :mod:`tokenguard.otel`, the
gateway's ``/metrics`` and ``/stats``, and ``tokenguard stats``. Every count is
cumulative (a counter: compare two snapshots for a rate). No count is keyed by anything
that comes from a token: policies and issuers are configured names, results, paths and
caches fixed vocabularies, error types class names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .core.engine import Engine

__all__ = [
    "CacheStats",
    "CachesStats",
    "FleetStats",
    "GuardStats",
    "IssuerStats",
    "ValidationStats",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class ValidationStats(BaseModel):
    """Validations of one policy that ended one way.

    Attributes:
        policy: the policy's name.
        result: ``success``; ``missing`` (no token); ``invalid`` (a 400/401 refusal:
            malformed, expired, bad signature, wrong audience, inactive ...);
            ``forbidden`` (a good token that does not allow the request: insufficient
            scope or user authentication); ``unavailable`` (503: the authorization
            server or its keys could not be reached in time); ``error`` (a
            configuration problem found while validating).
        error_type: the error's class (``tokenguard.ExpiredToken``); None on success.
        path: ``cache`` (the verified-token cache answered), ``jwt`` (verified
            locally), ``introspection``, ``jwt+introspection`` (``high_assurance``), or
            ``none`` (refused before any path: no token, malformed, not accepted here).
        cached: whether the answer came from a cache (the verified-token cache, or an
            introspection answer from the local or the fleet's cache).
        count: how many.
    """

    model_config = _FROZEN

    policy: str
    result: str
    error_type: str | None
    path: str
    cached: bool
    count: int


class CacheStats(BaseModel):
    """Lookups in one cache."""

    model_config = _FROZEN

    hits: int = 0
    misses: int = 0

    @property
    def ratio(self) -> float | None:
        """Hits over lookups (None before the first lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else None


class CachesStats(BaseModel):
    """Lookups per cache.

    Attributes:
        verified: the verified-token cache (a hit answers without any work).
        introspection: this process's introspection answers.
        jwks: whether an issuer's key set could be used without a fetch.
        metadata: whether an issuer's metadata could be used without a fetch.
        fleet: the fleet's shared introspection answers (Redis), when there is a fleet.
    """

    model_config = _FROZEN

    verified: CacheStats
    introspection: CacheStats
    jwks: CacheStats
    metadata: CacheStats
    fleet: CacheStats


class IssuerStats(BaseModel):
    """What the guard asked one issuer (authorization server), and how it went.

    Attributes:
        issuer: the configured issuer.
        jwks_refreshes: key-set fetches that brought a key set.
        jwks_refresh_failures: key-set fetches that did not (no answer, an error
            status, not a key set): the last-known-good keys stay in use.
        stale_keys_used: validations that used last-known-good keys past their
            freshness (within ``jwks_stale_window``).
        metadata_requests: metadata requests (RFC 8414, OpenID discovery).
        metadata_failures: those without a 200 answer.
        introspections: introspection requests made (RFC 7662).
        introspection_failures: those without a 200 answer.
        introspection_seconds: their total duration (divide by ``introspections``
            for the mean).
        introspection_max_seconds: the longest.
        introspections_refused: validations refused (503, ``Retry-After``) because
            ``max_concurrent_introspections`` were in flight for this issuer.
    """

    model_config = _FROZEN

    issuer: str
    jwks_refreshes: int = 0
    jwks_refresh_failures: int = 0
    stale_keys_used: int = 0
    metadata_requests: int = 0
    metadata_failures: int = 0
    introspections: int = 0
    introspection_failures: int = 0
    introspection_seconds: float = 0.0
    introspection_max_seconds: float = 0.0
    introspections_refused: int = 0


class FleetStats(BaseModel):
    """The fleet tier (Redis), when the guard has one.

    Attributes:
        errors: Redis calls that failed (validation went on without Redis).
        circuit_open: whether Redis is skipped right now (too many failures in a row).
        circuit_trips: how often the circuit opened.
        shared_hits: introspection answers another process had put in Redis.
        shared_misses: lookups in Redis that found none.
        flights_led: introspections this process made for the whole fleet.
        flights_waited: times this process waited for another process's introspection.
        rejected: entries read from Redis that failed authentication or checks.
        revocations_received: revocations received from other processes.
        revocations_pending: revocations made here while Redis was unavailable, not
            yet written to it.
    """

    model_config = _FROZEN

    errors: int
    circuit_open: bool
    circuit_trips: int
    shared_hits: int
    shared_misses: int
    flights_led: int
    flights_waited: int
    rejected: int
    revocations_received: int
    revocations_pending: int


class GuardStats(BaseModel):
    """A snapshot of a guard's counters (:meth:`tokenguard.TokenGuard.stats`).

    Attributes:
        validations: one entry per (policy, result, error type, path, cached) seen.
        caches: lookups per cache.
        issuers: requests to each configured issuer.
        flight_joins: validations that waited for a request (or fleet step) another
            validation had already started, by kind (``jwks``, ``metadata``,
            ``introspection``, ``fleet``): each is a request not made.
        flight_timeouts: of those, how many gave up at the request's deadline.
        fleet: the fleet tier's counters, or None without a fleet.
    """

    model_config = _FROZEN

    validations: tuple[ValidationStats, ...]
    caches: CachesStats
    issuers: tuple[IssuerStats, ...]
    flight_joins: dict[str, int]
    flight_timeouts: dict[str, int]
    fleet: FleetStats | None

    def total(self, *, policy: str | None = None, result: str | None = None) -> int:
        """Validations, all of them or of one policy and/or result class."""
        return sum(
            v.count
            for v in self.validations
            if (policy is None or v.policy == policy) and (result is None or v.result == result)
        )


def snapshot(engine: Engine) -> GuardStats:
    """The counters of ``engine`` now (a few microseconds per issuer and policy)."""
    counts = engine.observer.copy()
    by_key: dict[tuple[str, str, str | None, str, bool], int] = dict(counts.validations)
    verified_hits = 0
    for runtime in engine.policies.values():
        hits = runtime.hits.value
        verified_hits += hits
        if hits:
            # Cached answers later refused (a bound token whose proof fails) were
            # counted as refusals with path "cache": the rest succeeded.
            refused = sum(n for k, n in by_key.items() if k[0] == runtime.name and k[3] == "cache")
            key = (runtime.name, "success", None, "cache", True)
            by_key[key] = by_key.get(key, 0) + hits - refused
    validations = tuple(
        ValidationStats(policy=k[0], result=k[1], error_type=k[2], path=k[3], cached=k[4], count=n)
        for k, n in sorted(by_key.items(), key=lambda item: _order(item[0]))
        if n
    )
    lookups = counts.lookups

    def cache(name: str) -> CacheStats:
        return CacheStats(hits=lookups.get((name, True), 0), misses=lookups.get((name, False), 0))

    tier = engine.fleet
    caches = CachesStats(
        verified=CacheStats(hits=verified_hits, misses=lookups.get(("verified", False), 0)),
        introspection=cache("introspection"),
        jwks=cache("jwks"),
        metadata=cache("metadata"),
        fleet=CacheStats(
            hits=tier.counters.shared_hits if tier else 0,
            misses=tier.counters.shared_misses if tier else 0,
        ),
    )
    issuers = []
    for name, issuer in engine.issuers.items():
        metadata = counts.requests.get(("metadata", name))
        intro = counts.requests.get(("introspection", name))
        issuers.append(
            IssuerStats(
                issuer=name,
                jwks_refreshes=counts.jwks.get((name, True), 0),
                jwks_refresh_failures=counts.jwks.get((name, False), 0),
                stale_keys_used=issuer.jwks.stale_uses if issuer.jwks is not None else 0,
                metadata_requests=metadata.count if metadata else 0,
                metadata_failures=metadata.failures if metadata else 0,
                introspections=intro.count if intro else 0,
                introspection_failures=intro.failures if intro else 0,
                introspection_seconds=intro.seconds if intro else 0.0,
                introspection_max_seconds=intro.max_seconds if intro else 0.0,
                introspections_refused=counts.refused.get(name, 0),
            )
        )
    fleet = None
    if tier is not None:
        c = tier.counters
        fleet = FleetStats(
            errors=c.failures,
            circuit_open=tier.breaker.is_open,
            circuit_trips=tier.breaker.trips,
            shared_hits=c.shared_hits,
            shared_misses=c.shared_misses,
            flights_led=c.flights_led,
            flights_waited=c.flights_waited,
            rejected=c.rejected,
            revocations_received=c.revocations_received,
            revocations_pending=tier.pending,
        )
    return GuardStats(
        validations=validations,
        caches=caches,
        issuers=tuple(issuers),
        flight_joins=dict(sorted(counts.joins.items())),
        flight_timeouts=dict(sorted(counts.overdue.items())),
        fleet=fleet,
    )


def _order(key: tuple[str, str, str | None, str, bool]) -> tuple[str, str, str, str, bool]:
    return (key[0], key[1], key[2] or "", key[3], key[4])
