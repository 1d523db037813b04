"""``guard.stats()``: the counters without OpenTelemetry, through both shells, against a
real loopback authorization server (and real Redis for the fleet's counters)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from freezegun import freeze_time
from pydantic import ValidationError

import tokenguard
from tokenguard import (
    ExpiredToken,
    GuardStats,
    InsufficientScope,
    MissingToken,
    TokenGuard,
    ValidationUnavailable,
)
from tokenguard.redis import RedisFleet
from tokenguard.testing import AuthServer

from ..conftest import Driver, guard_for


def counts(stats: GuardStats) -> dict[tuple[str, str, str | None, str, bool], int]:
    return {
        (v.policy, v.result, v.error_type, v.path, v.cached): v.count for v in stats.validations
    }


def test_a_fresh_guard_has_counted_nothing(auth_server: AuthServer) -> None:
    stats = guard_for(auth_server).stats()
    assert stats.validations == ()
    assert stats.caches.verified.hits == stats.caches.verified.misses == 0
    assert stats.caches.verified.ratio is None
    assert [i.issuer for i in stats.issuers] == [auth_server.issuer]
    assert stats.issuers[0].jwks_refreshes == 0
    assert stats.flight_joins == {}
    assert stats.fleet is None
    assert stats.total() == 0


def test_stats_is_a_frozen_model_exported_from_tokenguard(auth_server: AuthServer) -> None:
    stats = guard_for(auth_server).stats()
    assert isinstance(stats, tokenguard.GuardStats)
    with pytest.raises(ValidationError):
        stats.fleet = None  # type: ignore[misc]
    assert GuardStats.model_validate_json(stats.model_dump_json()) == stats


def test_a_jwt_then_its_cached_hit(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, required_scopes=["orders:read"])
    token = auth_server.issue_jwt(scopes=["orders:read"])
    assert not check(guard, token).cached
    assert check(guard, token).cached
    stats = guard.stats()
    assert counts(stats) == {
        ("default", "success", None, "jwt", False): 1,
        ("default", "success", None, "cache", True): 1,
    }
    assert stats.caches.verified.model_dump() == {"hits": 1, "misses": 1}
    assert stats.caches.verified.ratio == 0.5
    # The issuer is discovered (RFC 8414) and its key set fetched, once each.
    assert stats.caches.metadata.model_dump() == {"hits": 0, "misses": 1}
    assert stats.caches.jwks.model_dump() == {"hits": 0, "misses": 1}
    issuer = stats.issuers[0]
    assert (issuer.jwks_refreshes, issuer.jwks_refresh_failures) == (1, 0)
    assert (issuer.metadata_requests, issuer.metadata_failures) == (1, 0)
    assert issuer.introspections == 0
    assert stats.total(result="success") == 2


def test_an_opaque_token_is_introspected_then_cached(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque()
    check(guard, token)
    guard.forget(token)  # drops both caches: introspected again
    check(guard, token)
    other = guard_for(auth_server, verified_cache_ttl=0)  # no verified-token cache
    check(other, token)
    assert check(other, token).cached  # the introspection cache answered
    stats = guard.stats()
    assert counts(stats) == {("default", "success", None, "introspection", False): 2}
    issuer = stats.issuers[0]
    assert (issuer.introspections, issuer.introspection_failures) == (2, 0)
    assert 0 < issuer.introspection_max_seconds <= issuer.introspection_seconds < 5
    assert stats.caches.introspection.model_dump() == {"hits": 0, "misses": 2}
    other_stats = other.stats()
    assert counts(other_stats) == {
        ("default", "success", None, "introspection", False): 1,
        ("default", "success", None, "introspection", True): 1,
    }
    assert other_stats.caches.introspection.model_dump() == {"hits": 1, "misses": 1}
    assert other_stats.caches.verified.model_dump() == {"hits": 0, "misses": 0}


def test_each_failure_class_is_counted(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, required_scopes=["orders:read"], settings={"http_timeout": 1})
    for token, error in (
        ("", MissingToken),
        ("not a token!", tokenguard.MalformedToken),
        (auth_server.issue_jwt(scopes=["orders:read"], lifetime=-600), ExpiredToken),
        (auth_server.issue_jwt(scopes=["other"]), InsufficientScope),
    ):
        with pytest.raises(error):
            check(guard, token)
    auth_server.go_down()
    with pytest.raises(ValidationUnavailable):
        check(guard, auth_server.issue_opaque(scopes=["orders:read"]))
    assert counts(guard.stats()) == {
        ("default", "missing", "tokenguard.MissingToken", "none", False): 1,
        ("default", "invalid", "tokenguard.MalformedToken", "none", False): 1,
        ("default", "invalid", "tokenguard.ExpiredToken", "jwt", False): 1,
        ("default", "forbidden", "tokenguard.InsufficientScope", "jwt", False): 1,
        ("default", "unavailable", "tokenguard.ValidationUnavailable", "introspection", False): 1,
    }
    issuer = guard.stats().issuers[0]
    assert (issuer.introspections, issuer.introspection_failures) == (1, 1)  # no answer


def test_a_jwks_outage_counts_failed_refreshes_and_stale_keys(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(
        auth_server,
        issuer={"jwks_uri": auth_server.jwks_uri},
        settings={"jwks_stale_window": 600, "http_timeout": 0.5},
    )
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, auth_server.issue_jwt())
        auth_server.go_down()
        clock.tick(400)  # the keys expired (max-age 300): refresh fails, stale keys serve
        check(guard, auth_server.issue_jwt(lifetime=1000))
        check(guard, auth_server.issue_jwt(lifetime=1000))
    issuer = guard.stats().issuers[0]
    assert (issuer.jwks_refreshes, issuer.jwks_refresh_failures) == (1, 1)
    assert issuer.stale_keys_used == 2
    assert guard.stats().caches.jwks.model_dump() == {"hits": 1, "misses": 2}


def test_joins_and_refusals_of_a_full_introspection_budget(auth_server: AuthServer) -> None:
    guard = guard_for(
        auth_server,
        issuer={"introspection_endpoint": auth_server.introspection_endpoint},
        settings={"max_concurrent_introspections": 1, "introspection_queue_wait": 0.05},
    )
    auth_server.set_delay(0.4, "introspection")
    same = auth_server.issue_opaque()
    results: list[object] = []

    def one(token: str) -> None:
        try:
            results.append(guard.validate(token))
        except ValidationUnavailable as error:
            results.append(error)

    first = threading.Thread(target=one, args=(same,))
    first.start()
    while auth_server.request_count("introspection") == 0:
        pass
    threads = [threading.Thread(target=one, args=(same,)) for _ in range(3)]
    threads.append(threading.Thread(target=one, args=(auth_server.issue_opaque(),)))
    for thread in threads:
        thread.start()
    for thread in [first, *threads]:
        thread.join()
    stats = guard.stats()
    assert stats.flight_joins == {"introspection": 3}  # one request for four validations
    assert stats.issuers[0].introspections_refused == 1  # the other token: budget full
    assert stats.issuers[0].introspections == 1
    refused = [r for r in results if isinstance(r, ValidationUnavailable)]
    assert len(refused) == 1
    assert refused[0].retry_after == 1
    assert counts(stats)[("default", "unavailable", "tokenguard.ValidationUnavailable",
                          "introspection", False)] == 1  # fmt: skip


def test_a_fleet_with_redis_down_counts_errors_and_opens_its_circuit(
    auth_server: AuthServer,
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fleet = RedisFleet(f"redis://127.0.0.1:{port}/0", "s" * 32, prefix="obs", startup_timeout=0)
    plain = guard_for(auth_server)
    guard = TokenGuard.from_config(plain.config.model_dump(), fleet=fleet)
    try:
        for _ in range(4):  # new tokens, each asks Redis first (until the circuit opens)
            guard.validate(auth_server.issue_opaque())
        fleet_stats = guard.stats().fleet
        assert fleet_stats is not None
        assert fleet_stats.errors == 3  # the breaker opens after 3 failures in a row
        assert fleet_stats.circuit_open
        assert fleet_stats.circuit_trips == 1
        assert fleet_stats.shared_hits == 0
        assert guard.stats().total(result="success") == 4
    finally:
        guard.close()


def test_counting_is_exact_under_concurrent_cached_hits(auth_server: AuthServer) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_jwt()
    guard.validate(token)

    def hammer() -> None:
        for _ in range(2000):
            guard.validate(token)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert guard.stats().caches.verified.hits == 16000


def test_a_dpop_bound_token_across_the_fleet(
    auth_server: AuthServer, redis_url: str, prefix: str, check: Driver
) -> None:
    """A cached DPoP-bound token whose proof is claimed across the fleet (real Redis):
    a success through the cache, and a replayed proof refused on that path, each counted
    once."""
    from tokenguard import DPoPProof, InvalidDPoPProof
    from tokenguard.testing import DPoPKey

    from ..fleet.conftest import fleet_guard

    url = "https://api.example/orders"
    key = DPoPKey()
    a = fleet_guard(auth_server, redis_url, prefix)
    b = fleet_guard(auth_server, redis_url, prefix)
    try:
        token = auth_server.issue_jwt(claims={"cnf": key.cnf})

        def proof() -> DPoPProof:
            return DPoPProof(key.proof("GET", url, access_token=token), "GET", url, "DPoP")

        check(a, token, dpop=proof())
        check(b, token, dpop=proof())
        second = proof()
        assert check(b, token, dpop=second).cached  # the claim flow of a cached token
        with pytest.raises(InvalidDPoPProof):
            check(a, token, dpop=second)  # a replay: refused on the cached path
        assert counts(a.stats()) == {
            ("default", "success", None, "jwt", False): 1,
            ("default", "invalid", "tokenguard.InvalidDPoPProof", "cache", True): 1,
        }
        assert counts(b.stats()) == {
            ("default", "success", None, "jwt", False): 1,
            ("default", "success", None, "cache", True): 1,
        }
    finally:
        a.close()
        b.close()
