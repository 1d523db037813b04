"""Policy(claims=[...]): only what the service reads is kept (issue 10 §3), sync and async.

``TokenInfo.claims``, the verified-token cache and the introspection cache hold the
claims a policy names plus the registered ones tokenguard reads itself; an introspection
answer is trimmed before it is cached, to what the policies asking that issuer keep.
"""

from __future__ import annotations

import pytest

from tokenguard import ConfigurationError, Policy
from tokenguard.core.claims import REGISTERED_CLAIMS, minimise
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for

EXTRA = {
    "email": "alice@example.com",
    "name": "Alice Liddell",
    "roles": ["admin", "ops"],
    "tenant": "t-42",
    "address": {"street": "1 Rabbit Hole", "city": "Oxford"},
}


def _policies(**mode: str) -> tuple[Policy, ...]:
    return (
        Policy(name="slim", audience=AUDIENCE, claims=["tenant"], **mode),
        Policy(name="roles", audience=AUDIENCE, claims=["roles", "email"], **mode),
        Policy(name="all", audience=AUDIENCE, **mode),
    )


def _registered(info_claims: dict[str, object]) -> set[str]:
    return set(info_claims) & REGISTERED_CLAIMS


def test_jwt_claims_trimmed_per_policy(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, *_policies())
    token = auth_server.issue_jwt(subject="alice", scopes=["read"], claims=EXTRA)
    slim = check(guard, token, "slim")
    roles = check(guard, token, "roles")
    full = check(guard, token, "all")
    assert set(full.claims) - REGISTERED_CLAIMS == set(EXTRA)
    assert set(slim.claims) - REGISTERED_CLAIMS == {"tenant"}
    assert set(roles.claims) - REGISTERED_CLAIMS == {"roles", "email"}
    # Registered claims are always kept, and the fields read from them still work.
    assert _registered(dict(slim.claims)) == _registered(dict(full.claims))
    assert slim.subject == "alice"
    assert slim.scopes == frozenset({"read"})
    assert slim.expires_at == full.expires_at
    assert slim.client_id == full.client_id
    # The verified-token cache keeps the same trimmed view.
    again = check(guard, token, "slim")
    assert again.cached
    assert dict(again.claims) == dict(slim.claims)
    assert "Alice Liddell" not in repr(again.model_dump())


def test_introspection_answer_trimmed_before_it_is_cached(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server, *_policies(mode="introspect"))
    token = auth_server.issue_opaque(subject="alice", scopes=["read"], extra=EXTRA)
    slim = check(guard, token, "slim")
    assert set(slim.claims) - REGISTERED_CLAIMS == {"tenant"}
    engine = guard._engine
    record = engine.introspection_cache.get(
        auth_server.issuer, _digest(token), _now(), max_active_age=60, max_inactive_age=10
    )
    assert record is not None
    assert record.claims is not None
    # One cache serves every policy of the issuer: it keeps what any of them reads; with
    # a policy that keeps everything ("all"), nothing can be dropped.
    assert set(record.claims.raw) >= set(EXTRA)


def test_introspection_cache_keeps_the_union_of_what_policies_read(
    auth_server: AuthServer, check: Driver
) -> None:
    policies = _policies(mode="introspect")[:2]  # "slim" and "roles"
    guard = guard_for(auth_server, *policies)
    token = auth_server.issue_opaque(subject="alice", scopes=["read"], extra=EXTRA)
    before = auth_server.request_count("introspection")
    slim = check(guard, token, "slim")
    roles = check(guard, token, "roles")
    assert auth_server.request_count("introspection") == before + 1  # one answer, cached
    assert set(slim.claims) - REGISTERED_CLAIMS == {"tenant"}
    assert set(roles.claims) - REGISTERED_CLAIMS == {"roles", "email"}
    record = guard._engine.introspection_cache.get(
        auth_server.issuer, _digest(token), _now(), max_active_age=60, max_inactive_age=10
    )
    assert record is not None
    assert record.claims is not None
    assert set(record.claims.raw) - REGISTERED_CLAIMS == {"tenant", "roles", "email"}


def test_minimise_keeps_registered_and_named() -> None:
    raw = {"sub": "a", "x": 1, "y": 2}
    assert minimise(raw, None) is raw
    assert minimise(raw, frozenset({"sub", "x", "y", "z"})) is raw  # nothing to drop
    assert minimise(raw, REGISTERED_CLAIMS | {"y"}) == {"sub": "a", "y": 2}


@pytest.mark.parametrize("claims", [[""], ["ok", ""]])
def test_claim_names_must_be_non_empty(claims: list[str]) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        Policy(name="p", audience=AUDIENCE, claims=claims)


def _digest(token: str) -> bytes:
    from tokenguard.core.caches import token_digest

    return token_digest(token)


def _now() -> float:
    import time

    return time.time()
