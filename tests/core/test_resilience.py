"""Key rotation, outages, broken answers and stampedes, against a real loopback server."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from freezegun import freeze_time

from tokenguard import (
    InactiveToken,
    InvalidSignature,
    Policy,
    TokenInfo,
    ValidationUnavailable,
)
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for

FAST = {"http_timeout": 0.5}


def test_rotation_is_picked_up_on_unknown_kid(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, auth_server.issue_jwt())
        clock.tick(20)  # past the 15 s refresh cooldown, well within the JWKS max-age
        auth_server.rotate_keys("RS256", keep_old=False)
        info = check(guard, auth_server.issue_jwt())
        assert info.active
    assert auth_server.request_count("jwks") == 2


def test_unknown_kids_refresh_at_most_once_per_cooldown(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server, settings={"jwks_refresh_cooldown": 30})
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, auth_server.issue_jwt())
        assert auth_server.request_count("jwks") == 1
        for i in range(20):
            forged = auth_server.issue_jwt(header={"kid": f"random-{i}"})
            # Issued after our keys were fetched, so maybe signed with a key published
            # since: no refresh allowed this early, so 503 with Retry-After, not 401.
            with pytest.raises(ValidationUnavailable) as raised:
                check(guard, forged)
            assert raised.value.retry_after == 1
        assert (
            auth_server.request_count("jwks") == 1
        )  # still inside the cooldown of the first fetch
        clock.tick(31)
        with pytest.raises(InvalidSignature):
            check(guard, auth_server.issue_jwt(header={"kid": "random-x"}))
        assert auth_server.request_count("jwks") == 2


def test_outage_uses_last_known_good_keys_within_stale_window(
    auth_server: AuthServer, check: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    guard = guard_for(auth_server, settings={"jwks_stale_window": 600, **FAST})
    start = dt.datetime.now(dt.UTC)
    with freeze_time(start) as clock:
        check(guard, auth_server.issue_jwt())  # JWKS max-age is 300 s
        auth_server.go_down()
        clock.tick(400)  # keys expired, server down: stale keys, logged
        with caplog.at_level(logging.WARNING, logger="tokenguard"):
            assert check(guard, auth_server.issue_jwt(lifetime=1000)).active
        assert "last-known-good" in caplog.text
        clock.tick(600)  # beyond the stale window: nothing trustworthy left
        with pytest.raises(ValidationUnavailable) as caught:
            check(guard, auth_server.issue_jwt(lifetime=2000))
        assert caught.value.status_code == 503
        auth_server.come_up()
        clock.tick(60)  # past the failure back-off: fetch again
        assert check(guard, auth_server.issue_jwt(lifetime=3000)).active


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500},
        {"status": 200, "body": b"\x00\xffgarbage"},
        {"status": 200, "body": "<html>maintenance</html>", "content_type": "text/html"},
        {"status": 200, "body": {"keys": "nope"}},
        {"status": 200, "body": [1, 2]},
        {"status": 302, "headers": {"Location": "https://evil.example/jwks"}},
    ],
    ids=["500", "garbage", "html", "not-a-set", "not-an-object", "redirect"],
)
def test_broken_jwks_answers(
    auth_server: AuthServer, check: Driver, failure: dict[str, object]
) -> None:
    guard = guard_for(auth_server)
    auth_server.set_failure("jwks", **failure)  # type: ignore[arg-type]
    with pytest.raises(ValidationUnavailable):
        check(guard, auth_server.issue_jwt())
    # The same answers after good keys are known keep the good keys (last-known-good).
    auth_server.clear_failures()
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        clock.tick(60)  # past the failure back-off
        check(guard, auth_server.issue_jwt(lifetime=3600))
        auth_server.set_failure("jwks", **failure)  # type: ignore[arg-type]
        clock.tick(400)
        assert check(guard, auth_server.issue_jwt(lifetime=3600)).active


@pytest.mark.parametrize(
    "withdrawn",
    [
        {"keys": []},
        {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]},  # only a key too weak to use
    ],
    ids=["empty", "only-unusable"],
)
def test_a_key_set_that_withdraws_every_key_is_honoured(
    auth_server: AuthServer, check: Driver, withdrawn: dict[str, object]
) -> None:
    """Issue 14 rule 4: a 200 key set that withdraws the keys (an incident kill switch) is
    the issuer's word, not an outage: the withdrawn keys stop verifying at the next
    refresh instead of staying trusted for the stale window."""
    guard = guard_for(auth_server, settings={"jwks_stale_window": 6 * 3600})
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        assert check(guard, auth_server.issue_jwt(lifetime=3600)).active
        auth_server.set_failure("jwks", 200, withdrawn)
        clock.tick(400)  # past the JWKS max-age (300 s): the next token refreshes
        with pytest.raises(InvalidSignature):
            check(guard, auth_server.issue_jwt(lifetime=3600))
        # A guard that first meets the withdrawn set: nothing verifies (401, not 503).
        with pytest.raises(InvalidSignature):
            check(guard_for(auth_server), auth_server.issue_jwt(lifetime=3600))
        # Publishing keys again restores service after the refresh cooldown.
        auth_server.clear_failures()
        clock.tick(20)
        assert check(guard, auth_server.issue_jwt(lifetime=3600)).active


def test_metadata_answers_are_checked(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    impostor = {"issuer": "https://evil.example", "jwks_uri": auth_server.jwks_uri}
    auth_server.set_failure("metadata", 200, impostor)
    auth_server.set_failure("openid_configuration", 200, impostor)
    with pytest.raises(ValidationUnavailable):
        check(guard, auth_server.issue_jwt())
    assert auth_server.request_count("jwks") == 0


def test_metadata_endpoints_must_be_https_or_loopback(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server)
    document = {"issuer": auth_server.issuer, "jwks_uri": "http://keys.example/jwks"}
    auth_server.set_failure("metadata", 200, document)
    auth_server.set_failure("openid_configuration", 200, document)
    with pytest.raises(ValidationUnavailable):
        check(guard, auth_server.issue_jwt())


def test_issuers_sharing_well_known_urls_fill_their_own_metadata(
    auth_server: AuthServer, check: Driver
) -> None:
    """Issue 14 rule 5: `http://h` and `http://h/` have the same discovery URLs. A token
    claiming the second issuer must not lead a discovery fetch that the first issuer's
    validations join and then find their own metadata state never filled."""
    from tokenguard import Issuer, TokenGuard

    slash = auth_server.issuer + "/"
    options = {"allow_insecure_http": True}
    guard = TokenGuard(
        issuers=[Issuer(auth_server.issuer, **options), Issuer(slash, **options)],
        policies=[Policy(name="p", audience=AUDIENCE)],
    )
    auth_server.set_delay(0.3, "metadata")
    impostors = [auth_server.issue_jwt(claims={"iss": slash}) for _ in range(3)]
    results = check.many(guard, [*impostors, auth_server.issue_jwt()], "p")
    assert isinstance(results[-1], TokenInfo), results[-1]
    assert all(isinstance(r, ValidationUnavailable) for r in results[:-1]), results


def test_oidc_discovery_fallback(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    auth_server.set_failure("metadata", 404, "not found")
    assert check(guard, auth_server.issue_jwt()).active
    assert auth_server.request_count("openid_configuration") == 1


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500},
        {"status": 401, "body": {"error": "invalid_client"}},
        {"status": 200, "body": b"not json", "content_type": "application/json"},
        {"status": 200, "body": "<html></html>", "content_type": "text/html"},
        {"status": 200, "body": [True]},
        {"status": 200, "body": {"active": True}, "content_type": "text/plain"},
        {"status": 307, "headers": {"Location": "https://evil.example/introspect"}},
        {"status": 200, "body": b"{" + b" " * 70000 + b"}", "content_type": "application/json"},
    ],
    ids=["500", "401", "bad-json", "html", "array", "wrong-type", "redirect", "huge"],
)
def test_broken_introspection_is_503(
    auth_server: AuthServer, check: Driver, failure: dict[str, object]
) -> None:
    guard = guard_for(auth_server)
    auth_server.set_failure("introspection", **failure)  # type: ignore[arg-type]
    token = auth_server.issue_opaque()
    for _ in range(2):  # failures are never cached
        with pytest.raises(ValidationUnavailable):
            check(guard, token)
    assert auth_server.request_count("introspection") == 2


@pytest.mark.parametrize("active", ["true", 1, None, False, "yes"])
def test_active_must_be_json_true(auth_server: AuthServer, check: Driver, active: object) -> None:
    guard = guard_for(auth_server)
    body = {"sub": "x", "aud": AUDIENCE, "scope": "orders:read"}
    if active is not None:
        body["active"] = active  # type: ignore[assignment]
    auth_server.set_failure("introspection", 200, body)
    with pytest.raises(InactiveToken):
        check(guard, auth_server.issue_opaque())


@pytest.mark.parametrize(
    "override",
    [
        {"iss": "https://other.example"},
        {"aud": "urn:other"},
        {"exp": 1000},
        {"token_type": "refresh_token"},
        {"cnf": {"jkt": "abc"}},
        {"exp": "tomorrow"},
    ],
    ids=["iss", "aud", "exp", "refresh-token", "bound", "bad-type"],
)
def test_active_answers_are_checked_against_the_policy(
    auth_server: AuthServer, check: Driver, override: dict[str, object]
) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque(extra=override)
    with pytest.raises(Exception) as caught:
        check(guard, token)
    assert caught.value.status_code == 401  # type: ignore[attr-defined]


def test_introspection_unreachable_is_503_never_401(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, settings=FAST)
    token = auth_server.issue_opaque()
    auth_server.go_down()
    with pytest.raises(ValidationUnavailable):
        check(guard, token)


def test_slow_server_times_out(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, settings=FAST)
    auth_server.set_delay(2.0, "introspection")
    with pytest.raises(ValidationUnavailable):
        check(guard, auth_server.issue_opaque())


def test_high_assurance_fails_closed_when_server_is_down(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server, mode="high_assurance", settings=FAST)
    token = auth_server.issue_jwt()
    check(guard, token)
    auth_server.go_down()
    with pytest.raises(ValidationUnavailable):
        check(guard, token)


def _one_fetch_for_many(auth_server: AuthServer, check: Driver, token: str, endpoint: str) -> None:
    guard = guard_for(auth_server)
    auth_server.set_delay(0.2, endpoint)  # keep the first fetch in flight while the rest arrive
    results = check.many(guard, [token] * 100)
    assert all(isinstance(r, TokenInfo) for r in results), [
        r for r in results if not isinstance(r, TokenInfo)
    ][:3]
    assert auth_server.request_count(endpoint) == 1


def test_stampede_on_a_new_jwt_causes_one_fetch(auth_server: AuthServer, check: Driver) -> None:
    _one_fetch_for_many(auth_server, check, auth_server.issue_jwt(), "jwks")
    assert auth_server.request_count("metadata") == 1


def test_stampede_on_a_new_opaque_token_causes_one_introspection(
    auth_server: AuthServer, check: Driver
) -> None:
    _one_fetch_for_many(auth_server, check, auth_server.issue_opaque(), "introspection")


def test_stampede_of_random_kids_is_bounded(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    check(guard, auth_server.issue_jwt())
    forged = [auth_server.issue_jwt(header={"kid": f"k{i}"}) for i in range(200)]
    results = check.many(guard, forged)
    # 401, or 503 + Retry-After while no refresh is allowed (tokens issued after our keys
    # were fetched may name a key published since: the unannounced-rotation rule).
    assert all(isinstance(r, InvalidSignature | ValidationUnavailable) for r in results)
    # One fetch, plus early refreshes 1 s, then 2 s apart if the stampede lasts that long.
    assert auth_server.request_count("jwks") <= 3


def test_cancelled_waiter_does_not_cancel_the_shared_fetch(auth_server: AuthServer) -> None:
    import asyncio

    guard = guard_for(auth_server)
    token = auth_server.issue_opaque()
    auth_server.set_delay(0.3, "introspection")

    async def run() -> None:
        first = asyncio.ensure_future(guard.avalidate(token))
        second = asyncio.ensure_future(guard.avalidate(token))
        await asyncio.sleep(0.1)
        first.cancel()
        info = await second
        assert info.subject == "user-1"
        with pytest.raises(asyncio.CancelledError):
            await first
        await guard.aclose()

    asyncio.run(run())
    assert auth_server.request_count("introspection") == 1


def test_event_loop_keeps_ticking_during_validation(auth_server: AuthServer) -> None:
    import asyncio
    import time

    guard = guard_for(auth_server)
    auth_server.set_delay(0.3)

    async def run() -> int:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        started = time.monotonic()
        await guard.avalidate(auth_server.issue_jwt())  # metadata + JWKS, 0.3 s each
        elapsed = time.monotonic() - started
        done = True
        await task
        await guard.aclose()
        assert elapsed >= 0.6
        return ticks

    assert asyncio.run(run()) >= 30  # ~60 expected; a blocking call would give ~1


def test_guard_serves_several_policies_and_issuers(auth_server: AuthServer, check: Driver) -> None:
    with AuthServer(issuer_path="/tenant-b") as other:
        from tokenguard import ClientSecretBasic, Issuer, TokenGuard

        guard = TokenGuard(
            issuers=[
                Issuer(
                    a.issuer,
                    client_auth=ClientSecretBasic(a.client_id, a.client_secret),
                    allow_insecure_http=True,
                )
                for a in (auth_server, other)
            ],
            policies=[
                Policy(
                    name="a",
                    audience=AUDIENCE,
                    issuers=[auth_server.issuer],
                    introspection_issuer=auth_server.issuer,
                ),
                Policy(name="both", audience=AUDIENCE, introspection_issuer=other.issuer),
            ],
        )
        assert check(guard, other.issue_jwt(), "both").issuer == other.issuer
        assert check(guard, auth_server.issue_jwt(), "both").issuer == auth_server.issuer
        from tokenguard import UntrustedIssuer

        with pytest.raises(UntrustedIssuer):
            check(guard, other.issue_jwt(), "a")
        assert check(guard, other.issue_opaque(), "both").issuer == other.issuer
        assert other.request_count("metadata") == 1  # RFC 8414 path-aware discovery worked


def test_unknown_kid_during_an_outage_is_503_not_401(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server, settings=FAST)
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, auth_server.issue_jwt())
        clock.tick(20)
        auth_server.go_down()
        new_kid = auth_server.issue_jwt(header={"kid": "rotated-while-we-could-not-look"})
        with pytest.raises(ValidationUnavailable):
            check(guard, new_kid)
        # Known keys keep working meanwhile.
        assert check(guard, auth_server.issue_jwt(lifetime=600)).active
        auth_server.come_up()
        clock.tick(20)
        with pytest.raises(InvalidSignature):  # reachable again: now we know it is unknown
            check(guard, new_kid)


def test_a_server_that_compresses_anyway_is_understood(
    auth_server: AuthServer, check: Driver
) -> None:
    import gzip
    import json

    guard = guard_for(auth_server)
    body = gzip.compress(json.dumps(auth_server.jwks()).encode())
    auth_server.set_failure(
        "jwks", 200, body, content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert check(guard, auth_server.issue_jwt()).active
    # ... but a compressed bomb is cut off at the size cap: 503, nothing crashes.
    bomb = gzip.compress(b" " * 50_000_000)
    auth_server.set_failure(
        "introspection",
        200,
        bomb,
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    with pytest.raises(ValidationUnavailable):
        check(guard, auth_server.issue_opaque())


def test_async_use_from_successive_event_loops(auth_server: AuthServer) -> None:
    """asyncio.run per call, or a loop per test: each loop gets its own client (it used
    to fail with "Event loop is closed")."""
    import asyncio
    import gc
    import warnings

    guard = guard_for(auth_server, introspection_cache_ttl=0, verified_cache_ttl=0)
    token = auth_server.issue_opaque(subject="loopy")
    with warnings.catch_warnings():
        # asyncio.run closes its loop without closing the sockets opened on it; they are
        # reclaimed by the garbage collector, with a ResourceWarning, whoever opened them.
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(3):
            assert asyncio.run(guard.avalidate(token)).subject == "loopy"
        asyncio.run(guard.aclose())  # the last client belongs to a closed loop: dropped
        gc.collect()
    assert auth_server.request_count("introspection") == 3

    async def tidy() -> str | None:
        async with guard:  # closing inside the loop leaves nothing behind
            return (await guard.avalidate(token)).subject

    assert asyncio.run(tidy()) == "loopy"
