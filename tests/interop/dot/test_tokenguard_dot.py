"""tokenguard against a second real authorization server: django-oauth-toolkit (PyPI).

DOT issues opaque access tokens only, so everything here goes through RFC 7662
introspection: tokens come from DOT's token endpoint (client_credentials), tokenguard
introspects them with the resource server's own credentials, and revocation goes through
DOT's RFC 7009 endpoint. Tests that take ``check`` run once through ``validate`` and once
through ``avalidate``.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator

import pytest
from freezegun import freeze_time

from tokenguard import (
    BearerToken,
    ClientSecretBasic,
    ClientSecretPost,
    InactiveToken,
    InsufficientScope,
    InvalidAudience,
    Issuer,
    Policy,
    TokenGuard,
    ValidationUnavailable,
)

from ...conftest import Driver
from .conftest import DotServer


def make_guard(
    server: DotServer, *, client_auth: object = None, discover: bool = False
) -> TokenGuard:
    """A guard trusting DOT; its introspection endpoint is configured unless ``discover``."""
    auth = client_auth or ClientSecretBasic(server.rs_client_id, server.rs_client_secret)
    orders = server.resource_orders
    return TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                introspection_endpoint=None if discover else server.introspection_endpoint,
                client_auth=auth,
                allow_insecure_http=True,
            )
        ],
        policies=[
            # DOT answers aud only for tokens requested with an RFC 8707 resource, so
            # these policies opt out of the default requirement (issue 14's decision).
            Policy(
                name="orders",
                audience=orders,
                required_scopes=["orders:read"],
                mode="hybrid",
                require_introspection_audience=False,
            ),
            Policy(
                name="live",
                audience=orders,
                required_scopes=["orders:read"],
                mode="high_assurance",
                require_introspection_audience=False,
            ),
            Policy(name="strict-aud", audience=orders),  # the default: aud required
        ],
    )


@pytest.fixture
def guard(dot_server: DotServer) -> Iterator[TokenGuard]:
    with make_guard(dot_server) as g:
        yield g


def test_dot_introspection_response(dot_server: DotServer) -> None:
    # What DOT says, exactly: no iss, sub, jti, iat, token_type; aud only for a token
    # requested with an RFC 8707 resource indicator.
    before = int(time.time())
    token = dot_server.client_credentials_token()
    answer = dot_server.introspect(token)
    assert answer == {
        "active": True,
        "scope": "orders:read orders:write",
        "exp": answer["exp"],
        "client_id": dot_server.app_client_id,
    }
    assert before + dot_server.access_token_ttl - 1 <= answer["exp"] <= time.time() + 300

    bound = dot_server.client_credentials_token(resource=dot_server.resource_orders)
    assert dot_server.introspect(bound)["aud"] == [dot_server.resource_orders]
    assert dot_server.introspect("not-a-token-dot-issued") == {"active": False}


def test_dot_publishes_rfc8414_metadata_but_no_openid_configuration(dot_server: DotServer) -> None:
    metadata = dot_server.metadata()
    assert metadata["issuer"] == dot_server.issuer
    assert metadata["introspection_endpoint"] == dot_server.introspection_endpoint
    # Bearer authentication works too (see below) but is not advertised.
    assert sorted(metadata["introspection_endpoint_auth_methods_supported"]) == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert "jwks_uri" not in metadata  # OIDC is off: no signing keys, no JWT access tokens
    response = dot_server.http.get(f"{dot_server.issuer}/.well-known/openid-configuration")
    assert response.status_code == 404


def test_opaque_token_validates_and_is_cached(
    dot_server: DotServer, guard: TokenGuard, check: Driver
) -> None:
    token = dot_server.client_credentials_token()
    mark = dot_server.requests.mark()
    info = check(guard, token, "orders")
    assert info.active
    assert info.source == "introspection"
    assert not info.cached
    assert info.issuer == dot_server.issuer  # DOT sends no iss: the configured issuer
    assert info.client_id == dot_server.app_client_id
    assert info.scopes == {"orders:read", "orders:write"}
    assert info.subject is None  # no sub, and no user for client_credentials
    assert info.audience == ()
    assert info.token_type is None
    assert info.expires_at is not None
    remaining = (info.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert dot_server.access_token_ttl - 10 < remaining <= dot_server.access_token_ttl

    again = check(guard, token, "orders")
    assert again.cached
    assert again.client_id == dot_server.app_client_id
    # One introspection for both calls, and no discovery: the endpoint is configured.
    assert dot_server.requests.since(mark) == [("POST", "/o/introspect/")]


async def test_native_async_validation(dot_server: DotServer) -> None:
    token = dot_server.client_credentials_token(scope="orders:read")
    async with make_guard(dot_server) as guard:
        info = await guard.avalidate(token, policy="orders")
        assert info.scopes == {"orders:read"}
        assert info.client_id == dot_server.app_client_id
        assert (await guard.avalidate(token, policy="orders")).cached
        dot_server.revoke(token)
        with pytest.raises(InactiveToken):
            await guard.avalidate(token, policy="live")


def test_introspection_endpoint_found_by_rfc8414_discovery(
    dot_server: DotServer, check: Driver
) -> None:
    token = dot_server.client_credentials_token()
    mark = dot_server.requests.mark()
    with make_guard(dot_server, discover=True) as guard:
        assert check(guard, token, "orders").client_id == dot_server.app_client_id
    # RFC 8414 §3.1 URL for the issuer http://127.0.0.1:<port>/o, then the endpoint it named.
    assert dot_server.requests.since(mark) == [
        ("GET", "/.well-known/oauth-authorization-server/o"),
        ("POST", "/o/introspect/"),
    ]


def test_revoked_token_is_refused_once_the_cache_bound_has_passed(
    dot_server: DotServer, guard: TokenGuard, check: Driver
) -> None:
    # DOT runs in this process, so the frozen clock is its clock too.
    token = dot_server.client_credentials_token()
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        assert check(guard, token, "orders").active
        dot_server.revoke(token)
        # Within the policy's 60 s introspection_cache_ttl the cached answer stands ...
        clock.tick(30)
        assert check(guard, token, "orders").cached
        # ... after it, DOT is asked again and the revocation shows.
        clock.tick(31)
        with pytest.raises(InactiveToken) as caught:
            check(guard, token, "orders")
    assert caught.value.status_code == 401


def test_forget_makes_a_revocation_visible_at_once(
    dot_server: DotServer, guard: TokenGuard, check: Driver
) -> None:
    token = dot_server.client_credentials_token()
    assert check(guard, token, "orders").active
    dot_server.revoke(token)
    assert check(guard, token, "orders").cached
    guard.forget(token)
    with pytest.raises(InactiveToken):
        check(guard, token, "orders")


def test_high_assurance_sees_revocation_on_the_next_call(
    dot_server: DotServer, guard: TokenGuard, check: Driver
) -> None:
    token = dot_server.client_credentials_token()
    assert check(guard, token, "live").source == "introspection"
    assert not check(guard, token, "live").cached  # every call asks DOT
    dot_server.revoke(token)
    with pytest.raises(InactiveToken):
        check(guard, token, "live")


def test_expired_token_is_refused(dot_server: DotServer, guard: TokenGuard, check: Driver) -> None:
    token = dot_server.client_credentials_token()
    with freeze_time(dt.datetime.now(dt.UTC)) as clock:
        assert check(guard, token, "orders").active
        clock.tick(dot_server.access_token_ttl + 1)
        # The cached answer ends at exp; DOT, asked again, says inactive.
        with pytest.raises(InactiveToken):
            check(guard, token, "orders")


def test_missing_scope_is_403(dot_server: DotServer, guard: TokenGuard, check: Driver) -> None:
    token = dot_server.client_credentials_token(scope="orders:write")
    with pytest.raises(InsufficientScope) as caught:
        check(guard, token, "orders")
    assert caught.value.status_code == 403
    assert 'error="insufficient_scope"' in caught.value.www_authenticate()
    assert 'scope="orders:read"' in caught.value.www_authenticate()


def test_audience_from_rfc8707_resource_indicators(
    dot_server: DotServer, guard: TokenGuard, check: Driver
) -> None:
    # Without a resource indicator DOT's answer has no aud: accepted by default ...
    unbound = dot_server.client_credentials_token()
    assert check(guard, unbound, "orders").audience == ()
    # ... refused where the policy requires an introspected audience.
    with pytest.raises(InvalidAudience) as caught:
        check(guard, unbound, "strict-aud")
    assert caught.value.status_code == 401

    bound = dot_server.client_credentials_token(resource=dot_server.resource_orders)
    assert check(guard, bound, "strict-aud").audience == (dot_server.resource_orders,)

    elsewhere = dot_server.client_credentials_token(resource=dot_server.resource_billing)
    with pytest.raises(InvalidAudience):
        check(guard, elsewhere, "orders")


@pytest.mark.parametrize(
    "method", ["basic", "basic-special", "post", "post-special", "bearer-introspection-scope"]
)
def test_client_authentication_methods(dot_server: DotServer, check: Driver, method: str) -> None:
    server = dot_server
    auth: object
    if method == "basic":
        auth = ClientSecretBasic(server.rs_client_id, server.rs_client_secret)
    elif method == "basic-special":  # only works if form-urlencoded per RFC 6749 §2.3.1
        auth = ClientSecretBasic(server.rs_special_client_id, server.rs_special_client_secret)
        raw = f"{server.rs_special_client_id}:{server.rs_special_client_secret}".encode()
        unencoded = {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
        assert server.introspection_request("any", headers=unencoded).status_code == 403
    elif method == "post":
        auth = ClientSecretPost(server.rs_client_id, server.rs_client_secret)
    elif method == "post-special":
        auth = ClientSecretPost(server.rs_special_client_id, server.rs_special_client_secret)
    else:  # a DOT access token of the resource server with the "introspection" scope
        auth = BearerToken(server.rs_introspection_token())
    token = server.client_credentials_token()
    with make_guard(server, client_auth=auth) as guard:
        assert check(guard, token, "orders").client_id == server.app_client_id


@pytest.mark.parametrize(
    "method",
    ["basic-wrong-secret", "post-wrong-secret", "unknown-client", "bearer-unknown", "bearer-scope"],
)
def test_refused_introspection_credentials_give_503(
    dot_server: DotServer, check: Driver, method: str
) -> None:
    # DOT answers 403 with an empty body; the token may be fine, so this is not a 401.
    server = dot_server
    auth: object
    if method == "basic-wrong-secret":
        auth = ClientSecretBasic(server.rs_client_id, "not-the-secret")
    elif method == "post-wrong-secret":
        auth = ClientSecretPost(server.rs_client_id, "not-the-secret")
    elif method == "unknown-client":
        auth = ClientSecretBasic("no-such-client", server.rs_client_secret)
    elif method == "bearer-unknown":
        auth = BearerToken("not-a-dot-token")
    else:  # a valid DOT token, but without the "introspection" scope
        auth = BearerToken(server.rs_introspection_token(scope="orders:read"))
    token = server.client_credentials_token()
    response = server.introspection_request(token, headers={})
    assert response.status_code == 403  # what DOT does without acceptable credentials
    with make_guard(server, client_auth=auth) as guard:
        with pytest.raises(ValidationUnavailable) as caught:
            check(guard, token, "orders")
        assert caught.value.status_code == 503


def test_bearer_introspection_credential_expires_with_dot_tokens(
    dot_server: DotServer, check: Driver
) -> None:
    # A BearerToken is a fixed credential, but DOT's introspection bearer is an ordinary
    # access token: once it expires, every introspection is refused (503) until the
    # guard is rebuilt with a new one.
    start = dt.datetime.now(dt.UTC)
    with freeze_time(start) as clock:
        bearer = dot_server.rs_introspection_token()
        with make_guard(dot_server, client_auth=BearerToken(bearer)) as guard:
            assert check(guard, dot_server.client_credentials_token(), "orders").active
            clock.tick(dot_server.access_token_ttl + 1)
            fresh = dot_server.client_credentials_token()
            with pytest.raises(ValidationUnavailable):
                check(guard, fresh, "orders")
