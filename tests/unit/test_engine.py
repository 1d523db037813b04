"""engine.py: the validation flow, driven by hand with canned HTTP outcomes (no I/O)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from tokenguard.client_auth import ClientSecretBasic
from tokenguard.config import GuardConfig, Issuer, Policy, Settings
from tokenguard.core.engine import Engine
from tokenguard.core.exchange import HttpFailure, HttpOutcome, HttpRequest, HttpResponse
from tokenguard.errors import (
    ConfigurationError,
    ExpiredToken,
    InactiveToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidSignature,
    MalformedToken,
    MissingToken,
    UnsupportedToken,
    UntrustedIssuer,
    ValidationUnavailable,
)
from tokenguard.models import TokenInfo

from ._support import make_token, oct_jwk, public_jwk

AS = "https://as.example"
JWKS = f"{AS}/jwks"
INTROSPECT = f"{AS}/introspect"
RFC8414 = f"{AS}/.well-known/oauth-authorization-server"
OIDC = f"{AS}/.well-known/openid-configuration"
AUD = "https://api.example"


def json_response(document: Any, status: int = 200, **headers: str) -> HttpResponse:
    return HttpResponse(
        status, {"content-type": "application/json", **headers}, json.dumps(document).encode()
    )


class Server:
    """Canned outcomes per URL; records every request a flow asked for."""

    def __init__(self, routes: dict[str, HttpOutcome | Callable[[HttpRequest], HttpOutcome]]):
        self.routes = routes
        self.requests: list[HttpRequest] = []

    def run(self, engine: Engine, token: object, policy: Any = None) -> TokenInfo:
        flow = engine.start(token, policy)
        if isinstance(flow, TokenInfo):
            return flow
        try:
            fetch = next(flow)
            while True:
                request = fetch.build()
                self.requests.append(request)
                outcome = self.routes.get(request.url, HttpFailure("connection failed"))
                if callable(outcome):
                    outcome = outcome(request)
                fetch = flow.send(fetch.complete(outcome))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.requests]


def engine(*policies: Policy, issuers: list[Issuer] | None = None, **settings: Any) -> Engine:
    return Engine(
        GuardConfig(
            issuers=issuers or [Issuer(AS, jwks_uri=JWKS)],
            policies=policies or [Policy(name="api", audience=AUD)],
            settings=Settings(**settings),
        )
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": AS,
        "sub": "alice",
        "aud": AUD,
        "client_id": "app",
        "iat": now - 10,
        "exp": now + 300,
        "jti": "j1",
        "scope": "read write",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def token(keys: SimpleNamespace) -> Callable[..., str]:
    def build(header: dict[str, Any] | None = None, key: Any = None, **payload: Any) -> str:
        h = {"alg": "RS256", "typ": "at+jwt", "kid": "k1", **(header or {})}
        return make_token(h, claims(**payload), key=key or keys.rsa)

    return build


@pytest.fixture
def jwks(keys: SimpleNamespace) -> HttpResponse:
    return json_response(
        {"keys": [public_jwk(keys.rsa, kid="k1")]}, **{"cache-control": "max-age=600"}
    )


# -- entry points ------------------------------------------------------------------------


def test_digest_checks() -> None:
    e = engine()
    with pytest.raises(MissingToken):
        e.start(None, None)
    with pytest.raises(MissingToken):
        e.start("", None)
    with pytest.raises(MalformedToken, match="must be a string"):
        e.start(b"abc", None)
    with pytest.raises(MalformedToken, match="too long"):
        e.start("a" * 16385, None)


def test_policy_lookup() -> None:
    one = Policy(name="one", audience="a")
    two = Policy(name="two", audience="b")
    e = engine(one, two)
    with pytest.raises(ConfigurationError, match="several policies are configured"):
        e.policy(None)
    assert e.policy("two").name == "two"
    assert e.policy(one).name == "one"
    with pytest.raises(ConfigurationError, match="unknown policy"):
        e.policy("three")
    with pytest.raises(ConfigurationError, match="unknown policy"):
        e.policy(Policy(name="one", audience="other"))  # same name, different policy
    with pytest.raises(ConfigurationError, match="unknown policy"):
        e.policy(5)  # type: ignore[arg-type]
    assert engine(one).policy(None).name == "one"


# -- local JWT path ----------------------------------------------------------------------


def test_jwt_valid_then_cached(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = engine()
    server = Server({JWKS: jwks})
    t = token()
    info = server.run(e, t)
    assert info.subject == "alice"
    assert info.source == "jwt"
    assert info.cached is False
    assert info.token_type == "at+jwt"
    assert info.issuer == AS
    assert server.urls == [JWKS]
    assert server.requests[0].method == "GET"
    assert "application/jwk-set+json" in server.requests[0].headers["Accept"]
    again = e.start(t, "api")
    assert isinstance(again, TokenInfo)
    assert again.cached is True
    # Another token from the same issuer reuses the key set: no fetch.
    other = server.run(e, token(sub="bob"))
    assert other.subject == "bob"
    assert server.urls == [JWKS]
    e.forget(t)
    assert not isinstance(e.start(t, "api"), TokenInfo)


@pytest.mark.parametrize(
    ("payload", "header", "error", "message"),
    [
        ({"iss": "https://evil.example"}, {}, UntrustedIssuer, ""),
        ({"iss": None}, {}, UntrustedIssuer, ""),
        ({"exp": 1000}, {}, ExpiredToken, ""),
        ({"exp": None}, {}, InvalidClaims, "no exp"),
        ({"iat": None}, {}, InvalidClaims, "no iat"),
        ({"aud": "https://other.example"}, {}, InvalidAudience, ""),
        ({"aud": None}, {}, InvalidAudience, "no audience"),
        ({"cnf": {"jkt": "x"}}, {}, InvalidClaims, "cnf jkt member is invalid"),
        ({"cnf": {"jwk": {"kty": "EC"}}}, {}, UnsupportedToken, "confirmation method"),
        ({}, {"typ": "JWT"}, UnsupportedToken, "typ"),
        ({}, {"typ": "dpop+jwt"}, UnsupportedToken, "typ"),
        ({}, {"alg": "HS256"}, InvalidSignature, "not allowed"),
        ({"sub": 5}, {}, InvalidClaims, "sub claim"),
    ],
)
def test_jwt_refused_before_any_fetch(
    token: Callable[..., str],
    keys: SimpleNamespace,
    payload: dict[str, Any],
    header: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    server = Server({})
    key = keys.hmac if header.get("alg") == "HS256" else None
    with pytest.raises(error, match=message or None):
        server.run(engine(), token(header, key=key, **payload))
    assert server.requests == []


def test_plain_jwt_accepted_when_allowed(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = engine(Policy(name="api", audience=AUD, accept_plain_jwt=True))
    info = Server({JWKS: jwks}).run(e, token({"typ": "JWT"}, iat=None))
    assert info.token_type == "JWT"


def test_jwt_wrong_signature(
    token: Callable[..., str], jwks: HttpResponse, keys: SimpleNamespace
) -> None:
    with pytest.raises(InvalidSignature) as info:
        Server({JWKS: jwks}).run(engine(), token(key=keys.rsa_other))
    assert info.value.description == "The access token signature is invalid"


def test_jwt_unknown_kid(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = engine()
    server = Server({JWKS: jwks})
    server.run(e, token())
    with pytest.raises(InvalidSignature, match="No trusted key matches"):
        # Issued long before our keys were fetched: its key would have been in them.
        server.run(e, token({"kid": "unknown"}, iat=int(time.time()) - 3600))
    # The unknown kid did not cause a refresh inside the cooldown
    # (tokens that may be newer than our keys: tests/unit/test_key_rotation.py).
    assert server.urls == [JWKS]


def test_jwks_unavailable(token: Callable[..., str]) -> None:
    server = Server({JWKS: json_response({}, status=500)})
    with pytest.raises(ValidationUnavailable, match="signing keys are unavailable"):
        server.run(engine(), token())
    server = Server({JWKS: HttpResponse(200, {}, b"not json")})
    with pytest.raises(ValidationUnavailable):
        server.run(engine(), token())
    with pytest.raises(ValidationUnavailable):
        Server({}).run(engine(), token())


def test_jwks_via_discovery(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = engine(issuers=[Issuer(AS)])
    server = Server({RFC8414: json_response({"issuer": AS, "jwks_uri": JWKS}), JWKS: jwks})
    assert server.run(e, token()).subject == "alice"
    assert server.urls == [RFC8414, JWKS]


def test_discovery_falls_back_to_oidc(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = engine(issuers=[Issuer(AS)])
    server = Server(
        {
            RFC8414: json_response({}, status=404),
            OIDC: json_response({"issuer": AS, "jwks_uri": JWKS}),
            JWKS: jwks,
        }
    )
    assert server.run(e, token()).subject == "alice"
    assert server.urls == [RFC8414, OIDC, JWKS]


def test_discovery_without_jwks_uri(token: Callable[..., str]) -> None:
    e = engine(issuers=[Issuer(AS)])
    server = Server({RFC8414: json_response({"issuer": AS})})
    with pytest.raises(ValidationUnavailable):
        server.run(e, token())


def test_discovery_fails(token: Callable[..., str]) -> None:
    e = engine(issuers=[Issuer(AS)])
    server = Server({})
    with pytest.raises(ValidationUnavailable):
        server.run(e, token())
    assert server.urls == [RFC8414, OIDC]


def test_static_hmac_key(keys: SimpleNamespace) -> None:
    secret = b"h" * 32
    issuer = Issuer(AS, static_jwks={"keys": [oct_jwk(secret, kid="k1")]})
    e = engine(Policy(name="api", audience=AUD, algorithms=("HS256",)), issuers=[issuer])
    t = make_token({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, claims(), key=secret)
    server = Server({})
    assert server.run(e, t).subject == "alice"
    assert server.urls == []
    bad = make_token({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, claims(), key=b"x" * 32)
    with pytest.raises(InvalidSignature):
        server.run(e, bad)


def test_required_scopes_checked_last(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = engine(Policy(name="api", audience=AUD, required_scopes=("admin",)))
    server = Server({JWKS: jwks})
    with pytest.raises(InsufficientScope) as info:
        server.run(e, token())
    assert info.value.scopes == ("admin",)
    with pytest.raises(ExpiredToken):
        server.run(e, token(exp=1000))


# -- introspection path ------------------------------------------------------------------


def introspecting(*policies: Policy, **issuer: Any) -> Engine:
    fields = {"jwks_uri": JWKS, "introspection_endpoint": INTROSPECT, **issuer}
    return engine(
        *policies, issuers=[Issuer(AS, client_auth=ClientSecretBasic("rs", "pw"), **fields)]
    )


def test_opaque_active_then_cached() -> None:
    e = introspecting()
    server = Server({INTROSPECT: json_response({"active": True, "sub": "carol", "aud": AUD})})
    info = server.run(e, "opaque-1")
    assert info.source == "introspection"
    assert info.subject == "carol"
    assert not info.cached
    request = server.requests[0]
    assert request.method == "POST"
    assert request.form is not None
    assert request.form["token"] == "opaque-1"
    assert request.headers["Authorization"].startswith("Basic ")
    cached = e.start("opaque-1", None)
    assert isinstance(cached, TokenInfo)
    assert cached.cached


def test_opaque_inactive() -> None:
    e = introspecting()
    server = Server({INTROSPECT: json_response({"active": False})})
    with pytest.raises(InactiveToken):
        server.run(e, "opaque-2")
    # The inactive answer is cached for inactive_cache_ttl.
    with pytest.raises(InactiveToken):
        server.run(e, "opaque-2")
    assert len(server.requests) == 1


def test_introspection_answer_reused_across_policies_but_checked_per_policy() -> None:
    e = introspecting(
        Policy(name="a", audience="aud-a", verified_cache_ttl=0),
        Policy(name="b", audience="aud-b", verified_cache_ttl=0),
    )
    server = Server({INTROSPECT: json_response({"active": True, "aud": "aud-a"})})
    assert server.run(e, "opaque-3", "a").audience == ("aud-a",)
    with pytest.raises(InvalidAudience):
        server.run(e, "opaque-3", "b")
    assert len(server.requests) == 1
    again = server.run(e, "opaque-3", "a")
    assert again.cached is True


@pytest.mark.parametrize(
    "outcome",
    [
        HttpFailure("timeout"),
        json_response({"active": True}, status=500),
        HttpResponse(200, {"content-type": "text/html"}, b"<html>"),
    ],
)
def test_introspection_unavailable(outcome: HttpOutcome) -> None:
    with pytest.raises(ValidationUnavailable):
        Server({INTROSPECT: outcome}).run(introspecting(), "opaque-4")


def test_introspection_invalid_claims_raised_as_copy() -> None:
    server = Server({INTROSPECT: json_response({"active": True, "exp": "soon"})})
    with pytest.raises(InvalidClaims, match="exp claim must be a number"):
        server.run(introspecting(), "opaque-5")


def test_introspection_endpoint_from_metadata() -> None:
    e = introspecting(introspection_endpoint=None)
    server = Server(
        {
            RFC8414: json_response({"issuer": AS, "introspection_endpoint": INTROSPECT}),
            INTROSPECT: json_response({"active": True, "aud": AUD}),
        }
    )
    assert server.run(e, "opaque-6").source == "introspection"
    assert server.urls == [RFC8414, INTROSPECT]


def test_introspection_endpoint_missing_from_metadata() -> None:
    e = introspecting(introspection_endpoint=None)
    server = Server({RFC8414: json_response({"issuer": AS})})
    with pytest.raises(ConfigurationError, match="publishes no introspection_endpoint"):
        server.run(e, "opaque-7")


def test_introspection_metadata_unavailable() -> None:
    e = introspecting(introspection_endpoint=None)
    with pytest.raises(ValidationUnavailable, match="metadata is unavailable"):
        Server({}).run(e, "opaque-8")


def test_high_assurance(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = introspecting(Policy(name="api", audience=AUD, mode="high_assurance"))
    server = Server({JWKS: jwks, INTROSPECT: json_response({"active": True, "iss": AS})})
    t = token()
    info = server.run(e, t)
    assert info.source == "jwt+introspection"
    assert server.urls == [JWKS, INTROSPECT]
    # No verified cache, no introspection cache: every call asks again.
    assert not isinstance(e.start(t, None), TokenInfo)
    server.run(e, t)
    assert server.urls == [JWKS, INTROSPECT, INTROSPECT]


def test_high_assurance_revoked(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = introspecting(Policy(name="api", audience=AUD, mode="high_assurance"))
    server = Server({JWKS: jwks, INTROSPECT: json_response({"active": False})})
    with pytest.raises(InactiveToken):
        server.run(e, token())


def test_high_assurance_as_down(token: Callable[..., str], jwks: HttpResponse) -> None:
    e = introspecting(Policy(name="api", audience=AUD, mode="high_assurance"))
    with pytest.raises(ValidationUnavailable):
        Server({JWKS: jwks}).run(e, token())


def test_inactive_answer_evicts_verified_cache(
    token: Callable[..., str], jwks: HttpResponse
) -> None:
    e = introspecting(
        Policy(name="jwt", audience=AUD),
        Policy(name="live", audience=AUD, mode="introspect"),
    )
    t = token()
    server = Server({JWKS: jwks, INTROSPECT: json_response({"active": False})})
    assert server.run(e, t, "jwt").subject == "alice"
    assert isinstance(e.start(t, "jwt"), TokenInfo)
    with pytest.raises(InactiveToken):
        server.run(e, t, "live")
    # The revocation signal evicted the token from the other policy's cache.
    assert not isinstance(e.start(t, "jwt"), TokenInfo)


def test_static_keys_survive_jwks_outage(keys: SimpleNamespace) -> None:
    issuer = Issuer(AS, jwks_uri=JWKS, static_jwks={"keys": [public_jwk(keys.p256, kid="s1")]})
    e = engine(issuers=[issuer])
    t = make_token({"alg": "ES256", "typ": "at+jwt", "kid": "s1"}, claims(), key=keys.p256)
    server = Server({})
    assert server.run(e, t).subject == "alice"
    assert server.urls == [JWKS]  # tried, failed, static key used


def test_metadata_cached_between_flows() -> None:
    e = introspecting(introspection_endpoint=None, metadata_url=f"{AS}/meta")
    server = Server(
        {
            f"{AS}/meta": json_response({"issuer": AS, "introspection_endpoint": INTROSPECT}),
            INTROSPECT: json_response({"active": True, "aud": AUD}),
        }
    )
    server.run(e, "opaque-9")
    server.run(e, "opaque-10")
    assert server.urls == [f"{AS}/meta", INTROSPECT, INTROSPECT]


def test_lone_surrogate_token_is_malformed() -> None:
    with pytest.raises(MalformedToken):
        engine().start("abc\udc80def", None)


def test_typed_token_without_iat_refused_even_with_plain_jwt_accepted(
    token: Callable[..., str], jwks: HttpResponse
) -> None:
    e = engine(Policy(name="api", audience=AUD, accept_plain_jwt=True))
    with pytest.raises(InvalidClaims, match="no iat"):
        Server({JWKS: jwks}).run(e, token(iat=None))
