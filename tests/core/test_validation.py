"""End-to-end validation against the embedded authorization server, sync and async."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from freezegun import freeze_time

from tokenguard import (
    BearerToken,
    ClientSecretPost,
    ConfigurationError,
    ExpiredToken,
    InactiveToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidSignature,
    Issuer,
    MalformedToken,
    MissingToken,
    Policy,
    PrivateKeyJWT,
    TokenGuard,
    TokenNotYetValid,
    UnsupportedToken,
    UntrustedIssuer,
)
from tokenguard.core.algorithms import DEFAULT_DPOP_ALGORITHMS
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_jwt_validates_through_discovery(auth_server: AuthServer, check: Driver, alg: str) -> None:
    guard = guard_for(auth_server, required_scopes=["orders:read"])
    token = auth_server.issue_jwt(alg=alg, scopes=["orders:read", "orders:write"], subject="alice")
    info = check(guard, token)
    assert info.source == "jwt"
    assert info.subject == "alice"
    assert info.issuer == auth_server.issuer
    assert info.scopes == {"orders:read", "orders:write"}
    assert info.audience == (AUDIENCE,)
    assert info.expires_at is not None
    assert info.expires_at.tzinfo is not None
    assert info.token_type == "at+jwt"
    assert not info.cached
    assert info.claims["sub"] == "alice"
    # Discovery and keys were fetched once; no introspection for a JWT in hybrid mode.
    assert auth_server.request_count("metadata") == 1
    assert auth_server.request_count("jwks") == 1
    assert auth_server.request_count("introspection") == 0
    again = check(guard, token)
    assert again.cached
    assert again.subject == "alice"
    assert auth_server.request_count("jwks") == 1


DPOP_ALGS = " ".join(DEFAULT_DPOP_ALGORITHMS)


def test_opaque_token_is_introspected_and_cached(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque(scopes=["orders:read"], subject="bob", extra={"username": "b"})
    info = check(guard, token)
    assert info.source == "introspection"
    assert (info.subject, info.username, info.client_id) == ("bob", "b", auth_server.client_id)
    assert info.scopes == {"orders:read"}
    assert info.token_type == "Bearer"
    assert info.issuer == auth_server.issuer
    assert check(guard, token).cached
    assert auth_server.request_count("introspection") == 1


def test_introspection_cache_is_shared_but_checked_per_policy(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(
        auth_server,
        Policy(name="orders", audience=AUDIENCE),
        Policy(name="billing", audience="urn:billing"),
        Policy(name="orders-admin", audience=AUDIENCE, required_scopes=["orders:admin"]),
    )
    token = auth_server.issue_opaque(scopes=["orders:read"])
    check(guard, token, "orders")
    # The cached "active" answer must not let the token into another audience ...
    with pytest.raises(InvalidAudience):
        check(guard, token, "billing")
    # ... nor past another policy's scope requirement.
    with pytest.raises(InsufficientScope) as caught:
        check(guard, token, "orders-admin")
    assert caught.value.scopes == ("orders:admin",)
    assert auth_server.request_count("introspection") == 1


def test_expired_jwt_is_401_with_rfc6750_header(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, leeway=30)
    with freeze_time(dt.datetime.now(dt.UTC).replace(microsecond=0)) as clock:
        token = auth_server.issue_jwt(lifetime=60)
        check(guard, token)
        clock.tick(89)
        assert check(guard, token).cached  # within exp + leeway
        clock.tick(2)
        with pytest.raises(ExpiredToken) as caught:
            check(guard, token)
    error = caught.value
    assert error.status_code == 401
    # The default policy takes DPoP-bound tokens too, so it offers both schemes
    # (RFC 9449 §7.1); the error goes in the Bearer one, the scheme of the request.
    assert error.www_authenticate(realm="api") == (
        'Bearer realm="api", error="invalid_token", '
        'error_description="The access token has expired", '
        f'DPoP realm="api", algs="{DPOP_ALGS}"'
    )


def test_expired_jwt_causes_no_fetch(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    with pytest.raises(ExpiredToken):
        check(guard, auth_server.issue_jwt(lifetime=-120))
    assert auth_server.request_count("jwks") == 0
    assert auth_server.request_count("metadata") == 0


def test_not_yet_valid(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, leeway=10)
    with pytest.raises(TokenNotYetValid):
        check(guard, auth_server.issue_jwt(not_before=time.time() + 60))
    with pytest.raises(TokenNotYetValid):
        check(guard, auth_server.issue_jwt(issued_at=time.time() + 60))
    assert check(guard, auth_server.issue_jwt(not_before=time.time() + 5)).active


def test_wrong_audience(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    with pytest.raises(InvalidAudience) as caught:
        check(guard, auth_server.issue_jwt(audience="urn:somebody-else"))
    assert caught.value.www_authenticate() == (
        'Bearer error="invalid_token", '
        'error_description="The access token is not intended for this audience", '
        f'DPoP algs="{DPOP_ALGS}"'
    )
    with pytest.raises(InvalidAudience):
        check(guard, auth_server.issue_jwt(audience=None))
    # aud as an array containing ours is fine.
    assert check(guard, auth_server.issue_jwt(audience=["urn:x", AUDIENCE])).audience == (
        "urn:x",
        AUDIENCE,
    )


def test_untrusted_issuer(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    forged = auth_server.issue_jwt(claims={"iss": "https://evil.example"})
    with pytest.raises(UntrustedIssuer):
        check(guard, forged)
    with pytest.raises(UntrustedIssuer):
        check(guard, auth_server.issue_jwt(claims={"iss": None}))
    assert auth_server.request_count("jwks") == 0


def test_insufficient_scope_is_403_after_validity(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, required_scopes=["orders:write", "orders:read"])
    with pytest.raises(InsufficientScope) as caught:
        check(guard, auth_server.issue_jwt(scopes=["orders:read"]))
    error = caught.value
    assert error.status_code == 403
    assert error.www_authenticate(realm="api") == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="The access token lacks the required scope", '
        f'scope="orders:read orders:write", DPoP realm="api", algs="{DPOP_ALGS}"'
    )
    # An expired token lacking the scope is reported as expired.
    with pytest.raises(ExpiredToken):
        check(guard, auth_server.issue_jwt(scopes=[], lifetime=-300))


def test_scp_claim_counts_as_scopes(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, required_scopes=["a", "b"])
    token = auth_server.issue_jwt(claims={"scope": None, "scp": ["a", "b"]})
    assert check(guard, token).scopes == {"a", "b"}


def test_typ_is_enforced_unless_plain_jwt_is_accepted(
    auth_server: AuthServer, check: Driver
) -> None:
    strict = guard_for(auth_server)
    plain = auth_server.issue_jwt(typ="JWT")
    untyped = auth_server.issue_jwt(typ=None)
    for token in (plain, untyped, auth_server.issue_jwt(typ="dpop+jwt")):
        with pytest.raises(UnsupportedToken):
            check(strict, token)
    lenient = guard_for(auth_server, accept_plain_jwt=True)
    assert check(lenient, plain).active
    assert check(lenient, untyped).active
    with pytest.raises(UnsupportedToken):
        check(lenient, auth_server.issue_jwt(typ="dpop+jwt"))


def test_algorithm_outside_the_policy_is_refused(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, algorithms=["ES256"])
    with pytest.raises(InvalidSignature):
        check(guard, auth_server.issue_jwt(alg="RS256"))
    assert check(guard, auth_server.issue_jwt(alg="ES256")).active
    assert auth_server.request_count("jwks") == 1


def test_jwt_mode_refuses_opaque_and_introspect_mode_introspects_jwt(
    auth_server: AuthServer, check: Driver
) -> None:
    jwt_only = guard_for(auth_server, mode="jwt")
    with pytest.raises(UnsupportedToken):
        check(jwt_only, auth_server.issue_opaque())
    assert auth_server.request_count("introspection") == 0
    everything = guard_for(auth_server, mode="introspect")
    info = check(everything, auth_server.issue_jwt())
    assert info.source == "introspection"
    assert auth_server.request_count("jwks") == 0
    assert auth_server.request_count("introspection") == 1


def test_hybrid_without_client_auth_refuses_opaque(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, issuer={"client_auth": None})
    with pytest.raises(UnsupportedToken):
        check(guard, auth_server.issue_opaque())
    assert check(guard, auth_server.issue_jwt()).active


def test_revoked_opaque_token_rejected_after_cache_bound(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server, introspection_cache_ttl=30)
    token = auth_server.issue_opaque(lifetime=600)
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, token)
        auth_server.revoke(token)
        clock.tick(29)
        assert check(guard, token).cached
        clock.tick(2)
        with pytest.raises(InactiveToken):
            check(guard, token)
    assert auth_server.request_count("introspection") == 2


def test_introspection_cache_never_outlives_exp(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, introspection_cache_ttl=3600, leeway=0)
    token = auth_server.issue_opaque(lifetime=20)
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, token)
        clock.tick(21)
        with pytest.raises(InactiveToken):  # asked again: the server says it expired
            check(guard, token)
    assert auth_server.request_count("introspection") == 2


def test_introspected_token_is_not_accepted_past_exp(
    auth_server: AuthServer, check: Driver
) -> None:
    """The leeway absorbs clock skew when reading a fresh answer; no cache (verified or
    introspection) keeps an introspected token past its exp: only the server can say."""
    guard = guard_for(auth_server, introspection_cache_ttl=3600)  # default leeway: 60 s
    token = auth_server.issue_opaque(lifetime=20)
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        check(guard, token)
        clock.tick(19)
        assert check(guard, token).cached
        clock.tick(2)  # past exp, well within exp + leeway
        with pytest.raises(InactiveToken):
            check(guard, token)
    assert auth_server.request_count("introspection") == 2


def test_inactive_answers_are_cached_briefly(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, inactive_cache_ttl=5)
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        for _ in range(3):
            with pytest.raises(InactiveToken):
                check(guard, "no-such-token")
        assert auth_server.request_count("introspection") == 1
        clock.tick(6)
        with pytest.raises(InactiveToken):
            check(guard, "no-such-token")
    assert auth_server.request_count("introspection") == 2


def test_high_assurance_checks_live_every_time(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, mode="high_assurance")
    token = auth_server.issue_jwt(scopes=["orders:read"])
    info = check(guard, token)
    assert info.source == "jwt+introspection"
    assert not info.cached
    check(guard, token)
    assert auth_server.request_count("introspection") == 2
    auth_server.revoke(token)
    with pytest.raises(InactiveToken):
        check(guard, token)


def test_revocation_evicts_verified_cache_of_other_policies(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(
        auth_server,
        Policy(name="fast", audience=AUDIENCE),
        Policy(name="live", audience=AUDIENCE, mode="high_assurance"),
    )
    token = auth_server.issue_jwt()
    check(guard, token, "fast")
    assert check(guard, token, "fast").cached
    auth_server.revoke(token)
    with pytest.raises(InactiveToken):
        check(guard, token, "live")
    # The live "inactive" answer is a revocation signal for every policy.
    info = check(guard, token, "fast")  # a JWT is valid locally again, freshly verified
    assert not info.cached


def test_forget(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque()
    check(guard, token)
    guard.forget(token)
    assert not check(guard, token).cached
    assert auth_server.request_count("introspection") == 2


@pytest.mark.parametrize("method", ["post", "private_key_jwt", "bearer"])
def test_client_authentication_methods(auth_server: AuthServer, check: Driver, method: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    if method == "post":
        auth: object = ClientSecretPost(auth_server.client_id, auth_server.client_secret)
    elif method == "bearer":
        auth = BearerToken(auth_server.introspection_bearer_token)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "rs-key"}
        auth_server.add_client("rs-pkjwt", jwks={"keys": [jwk]})
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        auth = PrivateKeyJWT("rs-pkjwt", pem, algorithm="ES256", kid="rs-key")
    guard = guard_for(auth_server, issuer={"client_auth": auth})
    assert check(guard, auth_server.issue_opaque(subject="carol")).subject == "carol"


def test_malformed_and_missing_tokens(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, settings={"max_token_length": 1024})
    with pytest.raises(MissingToken):
        check(guard, "")
    for bad in ("a b", "tok\x00en", "ünïcode", "x" * 1025, "eyJhbGciOiJSUzI1NiJ9.e30.a+b"):
        with pytest.raises(MalformedToken):
            check(guard, bad)
    assert auth_server.request_count("introspection") == 0


def test_policy_selection(auth_server: AuthServer) -> None:
    guard = guard_for(
        auth_server, Policy(name="a", audience=AUDIENCE), Policy(name="b", audience=AUDIENCE)
    )
    token = auth_server.issue_jwt()
    with pytest.raises(ConfigurationError):
        guard.validate(token)  # several policies: a name is needed
    with pytest.raises(ConfigurationError):
        guard.validate(token, "nope")
    assert guard.validate(token, guard.config.policies[1]).active
    with pytest.raises(ConfigurationError):
        guard.validate(token, Policy(name="a", audience="urn:other"))
    guard.close()


def test_from_config_toml(
    auth_server: AuthServer, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    monkeypatch.setenv("TG_TEST_SECRET", auth_server.client_secret)
    config = tmp_path / "tokenguard.toml"
    config.write_text(
        f"""
[settings]
http_timeout = 2

[[issuers]]
issuer = "{auth_server.issuer}"
allow_insecure_http = true
[issuers.client_auth]
method = "client_secret_basic"
client_id = "{auth_server.client_id}"
client_secret_env = "TG_TEST_SECRET"

[[policies]]
name = "orders"
audience = "{AUDIENCE}"
required_scopes = ["orders:read"]
"""
    )
    with TokenGuard.from_config(config) as guard:
        assert guard.validate(auth_server.issue_opaque(scopes=["orders:read"])).active
        assert guard.validate(auth_server.issue_jwt(scopes=["orders:read"])).active
        assert auth_server.client_secret not in repr(guard.config)


def test_user_supplied_clients_are_used_and_not_closed(auth_server: AuthServer) -> None:
    import asyncio

    import httpx

    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async def ahook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    client = httpx.Client(event_hooks={"request": [hook]}, follow_redirects=True)
    aclient = httpx.AsyncClient(event_hooks={"request": [ahook]})
    options = {"client_auth": None, "allow_insecure_http": True}
    guard = TokenGuard(
        issuers=[Issuer(auth_server.issuer, **options)],
        policies=[Policy(name="api", audience=AUDIENCE)],
        http_client=client,
        async_http_client=aclient,
    )
    with guard:
        guard.validate(auth_server.issue_jwt())
    assert seen == ["/.well-known/oauth-authorization-server", "/jwks.json"]
    assert not client.is_closed

    async def run() -> None:
        async with guard:
            guard.forget("x")
            await guard.avalidate(auth_server.issue_jwt(alg="ES256"))
        assert not aclient.is_closed
        await aclient.aclose()

    asyncio.run(run())
    client.close()


def test_no_token_or_secret_in_logs(
    auth_server: AuthServer, check: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    guard = guard_for(auth_server)
    tokens = [auth_server.issue_jwt(), auth_server.issue_opaque()]
    for token in tokens:
        check(guard, token)
    auth_server.set_failure("introspection", 500)
    late = auth_server.issue_opaque()
    with pytest.raises(Exception) as caught:
        check(guard, late)
    tokens.append(late)
    text = caplog.text + repr(caught.value) + str(caught.value) + repr(guard)
    for secret in (*tokens, auth_server.client_secret):
        assert secret not in text


# -- issue 14: audience of introspected tokens, generic descriptions ------------------------


def test_opaque_token_without_aud_is_refused_by_default(
    auth_server: AuthServer, check: Driver
) -> None:
    """An answer without ``aud`` may be about a token for another resource server: by
    default an opaque token needs its audience; a policy can opt out for servers that
    never send one."""
    token = auth_server.issue_opaque(audience=None)
    with pytest.raises(InvalidAudience, match="no audience"):
        check(guard_for(auth_server), token)
    lenient = guard_for(auth_server, require_introspection_audience=False)
    assert check(lenient, token).active
    # A present aud is always checked, opt-out or not.
    other = auth_server.issue_opaque(audience="urn:other-service")
    with pytest.raises(InvalidAudience):
        check(lenient, other)


def test_high_assurance_jwt_needs_no_aud_in_the_introspection_answer(
    auth_server: AuthServer, check: Driver
) -> None:
    """Under high assurance the JWT proved its audience; the live answer (some servers
    omit ``aud``) only confirms the token is active."""
    guard = guard_for(auth_server, mode="high_assurance")
    token = auth_server.issue_jwt()
    auth_server.set_failure(
        "introspection",
        200,
        {"active": True, "iss": auth_server.issuer, "exp": int(time.time()) + 300},
    )
    assert check(guard, token).source == "jwt+introspection"


def test_generic_error_descriptions(auth_server: AuthServer, check: Driver) -> None:
    """Settings(error_descriptions="generic"): unsigned probes cannot tell an untrusted
    issuer from a wrong audience or an expired token by the description; the error
    class stays specific for the service's own logs."""
    guard = guard_for(auth_server, settings={"error_descriptions": "generic"})
    probes = {
        UntrustedIssuer: auth_server.issue_jwt(claims={"iss": "https://x.example"}),
        InvalidAudience: auth_server.issue_jwt(audience="urn:probe"),
        ExpiredToken: auth_server.issue_jwt(lifetime=-3600),
        MalformedToken: "eyJhbGciOiJSUzI1NiJ9.e30*.c2ln",
    }
    descriptions = set()
    for kind, token in probes.items():
        with pytest.raises(kind) as caught:
            check(guard, token)
        descriptions.add(caught.value.description)
        assert str(caught.value) == caught.value.description
        assert 'error_description="The access token is invalid"' in (
            caught.value.www_authenticate()
        )
    assert descriptions == {"The access token is invalid"}
    # Not a 401: unchanged (the scope challenge is part of the protocol).
    with pytest.raises(InsufficientScope) as scope:
        check(
            guard_for(
                auth_server, required_scopes=["admin"], settings={"error_descriptions": "generic"}
            ),
            auth_server.issue_jwt(),
        )
    assert scope.value.description == InsufficientScope.default_description
    # Detailed by default.
    with pytest.raises(InvalidAudience) as detailed:
        check(guard_for(auth_server), probes[InvalidAudience])
    assert detailed.value.description == "The access token is not intended for this audience"


# -- servers whose access tokens carry no aud (Amazon Cognito) ------------------------------


def test_audience_from_client_id_with_required_claim_values(
    auth_server: AuthServer, check: Driver
) -> None:
    """Policy(audience_claim="client_id", required_claim_values=...): the token's
    client_id must be the audience, and token_use must say "access"; an ID token of the
    same issuer (aud = the client, token_use "id") is refused, on both token paths."""
    policy = {
        "audience": "app-client-1",
        "audience_claim": "client_id",
        "required_claim_values": {"token_use": "access"},
        "accept_plain_jwt": True,
        "require_introspection_audience": True,  # ignored for client_id: always required
    }
    guard = guard_for(auth_server, **policy)
    access = {"aud": None, "token_use": "access"}
    info = check(guard, auth_server.issue_jwt(typ=None, client_id="app-client-1", claims=access))
    assert info.client_id == "app-client-1"
    with pytest.raises(InvalidAudience):  # another app client
        check(guard, auth_server.issue_jwt(typ=None, client_id="app-client-2", claims=access))
    id_token = {"aud": "app-client-1", "client_id": None, "token_use": "id"}
    with pytest.raises(InvalidAudience):
        check(guard, auth_server.issue_jwt(typ=None, claims=id_token))
    wrong_use = {"aud": None, "token_use": "id"}
    with pytest.raises(InvalidClaims, match="token_use claim does not have the required value"):
        check(guard, auth_server.issue_jwt(typ=None, client_id="app-client-1", claims=wrong_use))
    with pytest.raises(InvalidClaims):  # absent, or not a string
        check(
            guard, auth_server.issue_jwt(typ=None, client_id="app-client-1", claims={"aud": None})
        )
    # The introspection path applies the same two rules.
    opaque = auth_server.issue_opaque(
        audience=None, client_id="app-client-1", extra={"token_use": "access"}
    )
    assert check(guard, opaque).client_id == "app-client-1"
    other = auth_server.issue_opaque(
        audience=None, client_id="app-client-1", extra={"token_use": "refresh"}
    )
    with pytest.raises(InvalidClaims):
        check(guard, other)
