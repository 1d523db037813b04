"""RFC 9470 step-up and RFC 9068 required claims, on both token paths, sync and async."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from freezegun import freeze_time

from tokenguard import (
    ConfigurationError,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidClaims,
    Policy,
    TokenInfo,
)
from tokenguard.core.requirements import StepUp
from tokenguard.testing import AuthServer

from ..conftest import Driver, guard_for


def _issue(server: AuthServer, fmt: str, **claims: object) -> str:
    if fmt == "jwt":
        return server.issue_jwt(scopes=["orders:read"], claims=claims)
    return server.issue_opaque(scopes=["orders:read"], extra=claims)


@pytest.mark.parametrize("fmt", ["jwt", "opaque"])
def test_acr_values_step_up(auth_server: AuthServer, check: Driver, fmt: str) -> None:
    guard = guard_for(auth_server, acr_values=["phr", "mfa"])
    now = int(time.time())
    assert check(guard, _issue(auth_server, fmt, acr="mfa", auth_time=now)).acr == "mfa"
    for claims in ({"acr": "pwd"}, {}, {"acr": "MFA"}):
        with pytest.raises(InsufficientUserAuthentication) as caught:
            check(guard, _issue(auth_server, fmt, **claims))
        error = caught.value
        assert error.status_code == 401
        assert error.acr_values == ("phr", "mfa")
        challenge = error.www_authenticate()
        assert 'error="insufficient_user_authentication"' in challenge
        assert 'acr_values="phr mfa"' in challenge
        assert "max_age" not in challenge


@pytest.mark.parametrize("fmt", ["jwt", "opaque"])
def test_max_age_step_up(auth_server: AuthServer, check: Driver, fmt: str) -> None:
    guard = guard_for(auth_server, max_age=300)
    now = int(time.time())
    assert check(guard, _issue(auth_server, fmt, auth_time=now - 100)).auth_time is not None
    for claims in ({"auth_time": now - 1000}, {}):
        with pytest.raises(InsufficientUserAuthentication) as caught:
            check(guard, _issue(auth_server, fmt, **claims))
        assert caught.value.max_age == 300
        assert 'max_age="300"' in caught.value.www_authenticate()
        assert "more recent" in caught.value.description


def test_cached_answer_expires_with_max_age(auth_server: AuthServer, check: Driver) -> None:
    # A token validated while the login was recent must not keep passing from the
    # verified-token cache once the login is older than max_age.
    guard = guard_for(auth_server, max_age=120)
    start = time.time()
    token = auth_server.issue_jwt(claims={"auth_time": int(start) - 60}, lifetime=3600)
    with freeze_time(dt.datetime.fromtimestamp(start, dt.UTC)) as frozen:
        assert not check(guard, token).cached
        assert check(guard, token).cached
        frozen.tick(61.5)
        with pytest.raises(InsufficientUserAuthentication):
            check(guard, token)


def test_scope_is_reported_before_step_up(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, acr_values=["mfa"], required_scopes=["orders:write"])
    with pytest.raises(InsufficientScope):
        check(guard, auth_server.issue_jwt(scopes=["orders:read"], claims={"acr": "pwd"}))


def test_ill_typed_acr_and_auth_time_are_invalid(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, acr_values=["mfa"], max_age=60)
    for claims in ({"acr": ["mfa"]}, {"acr": "mfa", "auth_time": "now"}):
        with pytest.raises(InvalidClaims):
            check(guard, auth_server.issue_jwt(claims=claims))


@pytest.mark.parametrize("claim", ["sub", "client_id", "jti"])
def test_at_jwt_requires_profile_claims(auth_server: AuthServer, check: Driver, claim: str) -> None:
    # RFC 9068 §2.2: REQUIRED in a token typed at+jwt.
    token = auth_server.issue_jwt(claims={claim: None})
    with pytest.raises(InvalidClaims, match=f"no {claim} claim"):
        check(guard_for(auth_server), token)
    relaxed = guard_for(auth_server, require_rfc9068_claims=False)
    assert check(relaxed, token).claims.get(claim) is None
    # Untyped tokens (accept_plain_jwt) keep the older rules.
    plain = auth_server.issue_jwt(claims={claim: None}, typ="JWT")
    assert check(guard_for(auth_server, accept_plain_jwt=True), plain).token_type == "JWT"


def test_profile_claims_are_not_required_of_introspection(
    auth_server: AuthServer, check: Driver
) -> None:
    token = auth_server.issue_opaque(extra={"sub": None, "jti": None})
    assert check(guard_for(auth_server), token).subject is None


def test_token_info_require_authentication() -> None:
    now = int(time.time())
    info = TokenInfo(claims={"acr": "mfa", "auth_time": now - 30})
    info.require_authentication()
    info.require_authentication(["phr", "mfa"], 60)
    with pytest.raises(InsufficientUserAuthentication) as caught:
        info.require_authentication(["phr"])
    assert caught.value.acr_values == ("phr",)
    with pytest.raises(InsufficientUserAuthentication):
        info.require_authentication(max_age=10)
    with pytest.raises(InsufficientUserAuthentication):
        TokenInfo().require_authentication(max_age=10)


@pytest.mark.parametrize(
    ("acr_values", "max_age"), [([], None), (["a b"], None), ([""], None), (None, -1)]
)
def test_bad_step_up_configuration(acr_values: list[str] | None, max_age: int | None) -> None:
    with pytest.raises(ValueError):
        StepUp.of(acr_values, max_age)
    with pytest.raises(ConfigurationError):
        guard_for_config(acr_values, max_age)


def guard_for_config(acr_values: list[str] | None, max_age: int | None) -> None:
    from tokenguard import Issuer, TokenGuard

    TokenGuard(
        issuers=[Issuer("https://as.example.com")],
        policies=[{"name": "p", "audience": "a", "acr_values": acr_values, "max_age": max_age}],
    )


def test_policy_step_up_fields() -> None:
    policy = Policy(name="p", audience="a", acr_values=["mfa"], max_age=0)
    assert policy.acr_values == ("mfa",)
    assert policy.max_age == 0
    assert policy.require_rfc9068_claims
    assert StepUp.of(None, None) is None
