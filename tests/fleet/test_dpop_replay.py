"""DPoP proofs are single-use across the fleet (RFC 9449 §11.1): a proof one process
accepted is refused by every other, through the machine's Redis and between real OS
processes; what the fleet writes for it (only for a request that passed); and what a
proof gets while Redis is down (refused by default, the local cache alone on request)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis

from tokenguard import (
    DPoPProof,
    InsufficientScope,
    InvalidDPoPProof,
    InvalidSignature,
    Policy,
    TokenGuard,
    ValidationUnavailable,
)
from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer, DPoPKey, guard_for

from ..conftest import Driver
from ._procs import Worker, job_for
from .conftest import SECRET, RedisServer, fleet_guard

URL = "https://api.example/orders"


def dpop(proof: str | None, method: str = "GET", url: str = URL) -> DPoPProof:
    return DPoPProof(proof, method, url, "DPoP")


def proof_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{prefix}:dp:*", count=1000))


@pytest.fixture
def client(redis_url: str) -> Any:
    connection = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield connection
    connection.close()


def test_a_proof_accepted_by_one_guard_is_refused_by_the_other(
    auth_server: AuthServer, redis_url: str, prefix: str, check: Driver
) -> None:
    """First-seen token and cached token alike: the second guard refuses the replay
    although its own replay cache never saw the proof."""
    key = DPoPKey()
    a = fleet_guard(auth_server, redis_url, prefix)
    b = fleet_guard(auth_server, redis_url, prefix)
    try:
        token = auth_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
        first = key.proof("GET", URL, access_token=token)
        assert check(a, token, dpop=dpop(first)).cnf == key.cnf
        with pytest.raises(InvalidDPoPProof, match="already used") as refused:
            check(b, token, dpop=dpop(first))  # b has not seen the token: first-seen path
        assert refused.value.status_code == 401
        assert len(b._engine.binder.replay) == 1  # b's own cache claimed it, Redis refused
        # Both guards now have the token cached: the replay is refused on that path too.
        check(b, token, dpop=dpop(key.proof("GET", URL, access_token=token)))
        second = key.proof("GET", URL, access_token=token)
        assert check(b, token, dpop=dpop(second)).cached
        with pytest.raises(InvalidDPoPProof, match="already used"):
            check(a, token, dpop=dpop(second))
        assert a.fleet is not None
        assert b.fleet is not None
        assert b.fleet.counters.proofs_replayed == 1
        assert a.fleet.counters.proofs_replayed == 1
        # The same proof is still refused by the guard that accepted it (local cache).
        with pytest.raises(InvalidDPoPProof, match="already used"):
            check(b, token, dpop=dpop(second))
    finally:
        a.close()
        b.close()


def test_bound_opaque_token_replayed_against_another_guard(
    auth_server: AuthServer, redis_url: str, prefix: str, check: Driver
) -> None:
    key = DPoPKey()
    a = fleet_guard(auth_server, redis_url, prefix)
    b = fleet_guard(auth_server, redis_url, prefix)
    try:
        token = auth_server.issue_opaque(
            scopes=["orders:read"], extra={"token_type": "DPoP", "cnf": key.cnf}
        )
        proof = key.proof("POST", URL, access_token=token)
        assert check(a, token, dpop=dpop(proof, "POST")).source == "introspection"
        with pytest.raises(InvalidDPoPProof, match="already used"):
            check(b, token, dpop=dpop(proof, "POST"))
    finally:
        a.close()
        b.close()


def test_only_a_request_that_passed_writes_an_entry(
    auth_server: AuthServer, redis_url: str, prefix: str, client: Any, check: Driver
) -> None:
    """Nothing an unauthenticated (or refused) request sends reaches Redis: a forged
    proof, a proof for an unsigned token, a proof whose request lacks the scope, and a
    proof refused by the cheap checks leave no entry. The entry of an accepted proof is
    an HMAC-named constant with a TTL of the proof's window, naming no jti, key or token."""
    key, attacker = DPoPKey(), DPoPKey()
    guard = fleet_guard(auth_server, redis_url, prefix)
    try:
        token = auth_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
        # Another key than the token's.
        forged = attacker.proof("GET", URL, access_token=token)
        with pytest.raises(InvalidDPoPProof):
            check(guard, token, dpop=dpop(forged))
        # A token whose signature does not verify, with a good proof for it.
        head, payload, _ = token.split(".")
        unsigned = f"{head}.{payload}.{'A' * 342}"
        with pytest.raises(InvalidSignature):
            check(guard, unsigned, dpop=dpop(key.proof("GET", URL, access_token=unsigned)))
        # Stale.
        stale = key.proof("GET", URL, access_token=token, iat=time.time() - 3600)
        with pytest.raises(InvalidDPoPProof):
            check(guard, token, dpop=dpop(stale))
        assert proof_keys(client, prefix) == []

        jti = "a-very-recognisable-jti-0123456789"
        accepted = key.proof("GET", URL, access_token=token, jti=jti)
        check(guard, token, dpop=dpop(accepted))
        [name] = proof_keys(client, prefix)
        assert client.get(name) == b"1"
        ttl = client.pttl(name) / 1000
        assert 55 < ttl <= 60 + 5 + 1  # the proof's window (iat + 60 s) and the clock margin
        text = name.decode()
        for secret in (jti, key.thumbprint, token.split(".")[1][:20]):
            assert secret not in text
    finally:
        guard.close()


def test_a_refused_scope_writes_nothing(
    auth_server: AuthServer, redis_url: str, prefix: str, client: Any, check: Driver
) -> None:
    """A proof that verified, for a token that verified, on a request refused for its
    scope: nothing remembered, here or in Redis."""
    policy = Policy(name="write", audience=DEFAULT_AUDIENCE, required_scopes=["orders:write"])
    key = DPoPKey()
    guard = fleet_guard(auth_server, redis_url, prefix, policy)
    try:
        token = auth_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
        with pytest.raises(InsufficientScope):
            check(guard, token, dpop=dpop(key.proof("GET", URL, access_token=token)))
        assert proof_keys(client, prefix) == []
        assert len(guard._engine.binder.replay) == 0
    finally:
        guard.close()


# -- two real processes ---------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_two_processes_accept_each_proof_once(
    auth_server: AuthServer, redis_url: str, prefix: str, use_async: bool
) -> None:
    """Process A accepts fresh proofs; process B, sent the very same requests, refuses
    every one of them (401 invalid_dpop_proof), and accepts its own fresh ones."""
    key = DPoPKey()
    jwt = auth_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
    opaque = auth_server.issue_opaque(
        scopes=["orders:read"], extra={"token_type": "DPoP", "cnf": key.cnf}
    )
    requests = [
        {"token": token, "proof": key.proof(method, URL, access_token=token), "method": method}
        for token in (jwt, jwt, opaque, opaque)
        for method in ("GET", "DELETE")
    ]
    for request in requests:
        request["url"] = URL
    fresh = [
        {**request, "proof": key.proof(request["method"], URL, access_token=request["token"])}
        for request in requests
    ]
    job = job_for(auth_server, redis_url, prefix, SECRET, do="dpop", requests=requests)
    job["async"] = use_async
    a = Worker(job)
    try:
        assert a.result()["outcomes"] == ["ok"] * len(requests)
    finally:
        a.close()
    b = Worker({**job, "requests": requests + fresh})
    try:
        result = b.result()
    finally:
        b.close()
    assert result["outcomes"] == ["InvalidDPoPProof 401"] * len(requests) + ["ok"] * len(fresh)
    assert result["counters"]["proofs_replayed"] == len(requests)
    assert result["counters"]["proofs_claimed"] == len(fresh)


# -- Redis down -----------------------------------------------------------------------------


def test_redis_down_refuses_proofs_by_default(
    auth_server: AuthServer,
    redis_server: RedisServer,
    check: Driver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fleet-wide replay check cannot be made: 503 with Retry-After (the client
    retries with a new proof); bearer tokens are unaffected. When Redis is back, proofs
    pass again and replays across guards are refused again."""
    caplog.set_level(logging.WARNING, logger="tokenguard.fleet")
    key = DPoPKey()
    a = fleet_guard(auth_server, redis_server.url, "down", timeout=0.1)
    b = fleet_guard(auth_server, redis_server.url, "down", timeout=0.1)
    try:
        token = auth_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
        check(a, token, dpop=dpop(key.proof("GET", URL, access_token=token)))
        redis_server.stop()
        for _ in range(5):  # the first calls time out, then the breaker answers at once
            proof = key.proof("GET", URL, access_token=token)
            with pytest.raises(ValidationUnavailable) as refused:
                check(a, token, dpop=dpop(proof))
            error = refused.value
            assert error.status_code == 503
            assert error.retry_after is not None
            assert 1 <= error.retry_after <= 5
            assert error.headers()["Retry-After"] == str(error.retry_after)
            assert "replay" in error.description
        assert a.validate(auth_server.issue_jwt(scopes=["orders:read"])).scopes
        assert any("DPoP proofs are refused" in r.getMessage() for r in caplog.records)
        redis_server.start()
        assert a.fleet is not None
        a.fleet._tier.breaker._open_until = 0.0  # type: ignore[union-attr]  # probe now
        proof = key.proof("GET", URL, access_token=token)
        deadline = time.monotonic() + 10
        while True:
            try:
                check(a, token, dpop=dpop(proof))
                break
            except ValidationUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.1)
                proof = key.proof("GET", URL, access_token=token)
        b.fleet._tier.breaker._open_until = 0.0  # type: ignore[union-attr]
        with pytest.raises(InvalidDPoPProof, match="already used"):
            check(b, token, dpop=dpop(proof))
    finally:
        a.close()
        b.close()


def test_redis_down_with_local_fallback(
    auth_server: AuthServer, redis_server: RedisServer, check: Driver
) -> None:
    """dpop_replay_when_down="local": each process's own replay cache decides alone while
    Redis is unavailable, so a replay in the same process is still refused and one
    against another process passes (what the docs say this setting costs)."""
    key = DPoPKey()
    options = {"timeout": 0.1, "dpop_replay_when_down": "local"}
    a = fleet_guard(auth_server, redis_server.url, "local", **options)
    b = fleet_guard(auth_server, redis_server.url, "local", **options)
    try:
        token = auth_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
        redis_server.stop()
        proof = key.proof("GET", URL, access_token=token)
        check(a, token, dpop=dpop(proof))
        with pytest.raises(InvalidDPoPProof, match="already used"):
            check(a, token, dpop=dpop(proof))
        check(b, token, dpop=dpop(proof))  # the documented cost of the fallback
        assert a.fleet is not None
        assert a.fleet.counters.proofs_unchecked >= 1
    finally:
        a.close()
        b.close()


def test_the_setting_is_read_from_the_configuration(redis_url: str) -> None:
    from tokenguard.fleet.config import FleetSettings

    settings = FleetSettings(redis_url=redis_url, secret=SECRET, dpop_replay_when_down="local")
    assert settings.dpop_replay_when_down == "local"
    with pytest.raises(ValueError, match="dpop_replay_when_down"):
        FleetSettings(redis_url=redis_url, secret=SECRET, dpop_replay_when_down="open")
    assert FleetSettings(redis_url=redis_url, secret=SECRET).dpop_replay_when_down == "refuse"


def test_guard_without_redis_at_all(auth_server: AuthServer, check: Driver) -> None:
    """Control: without a fleet nothing changes (the local replay cache decides)."""
    key = DPoPKey()
    guard: TokenGuard = guard_for(auth_server)
    token = auth_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
    proof = key.proof("GET", URL, access_token=token)
    check(guard, token, dpop=dpop(proof))
    with pytest.raises(InvalidDPoPProof, match="already used"):
        check(guard, token, dpop=dpop(proof))
