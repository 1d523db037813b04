"""tokenguard against a real third-party authorization server: panva's oidc-provider.

Tokens are obtained from the server's token endpoint; tokenguard discovers the server
(OIDC discovery, after the RFC 8414 URL answers 404), fetches its JWKS, and introspects
its opaque tokens with the resource server's own client credentials.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from freezegun import freeze_time

from tokenguard import (
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

from .conftest import OidcProviderServer


def make_guard(
    server: OidcProviderServer, *, client_auth: object = None, **policy: object
) -> TokenGuard:
    auth = client_auth or ClientSecretBasic(server.rs_client_id, server.rs_client_secret)
    policies = [
        Policy(name="jwt", audience=server.resource_jwt, **policy),  # type: ignore[arg-type]
        Policy(name="es256", audience=server.resource_jwt_es256, algorithms=("ES256",)),
        Policy(name="opaque", audience=server.resource_opaque, **policy),  # type: ignore[arg-type]
        Policy(name="live", audience=server.resource_opaque, mode="high_assurance"),
        Policy(name="live-jwt", audience=server.resource_jwt, mode="high_assurance"),
        Policy(name="writer", audience=server.resource_jwt, required_scopes=("orders:admin",)),
    ]
    return TokenGuard(
        issuers=[Issuer(server.issuer, client_auth=auth, allow_insecure_http=True)],
        policies=policies,
    )


@pytest.fixture
def guard(oidc_provider: OidcProviderServer) -> Iterator[TokenGuard]:
    with make_guard(oidc_provider) as g:
        yield g


def test_jwt_access_tokens_validate_locally(
    oidc_provider: OidcProviderServer, guard: TokenGuard
) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_jwt)
    info = guard.validate(token, policy="jwt")
    assert info.source == "jwt"
    assert info.issuer == oidc_provider.issuer
    assert info.client_id == oidc_provider.app_client_id
    assert info.scopes == {"orders:read", "orders:write"}
    assert info.audience == (oidc_provider.resource_jwt,)
    assert info.token_type == "at+jwt"

    es = oidc_provider.client_credentials_token(resource=oidc_provider.resource_jwt_es256)
    assert guard.validate(es, policy="es256").subject == oidc_provider.app_client_id


async def test_async_path_gives_the_same_answer(oidc_provider: OidcProviderServer) -> None:
    jwt_token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_jwt)
    opaque = oidc_provider.client_credentials_token(resource=oidc_provider.resource_opaque)
    async with make_guard(oidc_provider) as guard:
        info = await guard.avalidate(jwt_token, policy="jwt")
        assert info.client_id == oidc_provider.app_client_id
        info = await guard.avalidate(opaque, policy="opaque")
        assert info.source == "introspection"


def test_jwt_for_another_audience_is_refused(
    oidc_provider: OidcProviderServer, guard: TokenGuard
) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_jwt_es256)
    with pytest.raises(InvalidAudience) as caught:
        guard.validate(token, policy="jwt")
    assert caught.value.status_code == 401
    assert caught.value.www_authenticate(realm="orders").startswith(
        'Bearer realm="orders", error="invalid_token", '
        'error_description="The access token is not intended for this audience", '
        'DPoP realm="orders", algs="ES256 '
    )


def test_missing_scope_is_403(oidc_provider: OidcProviderServer, guard: TokenGuard) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_jwt)
    with pytest.raises(InsufficientScope) as caught:
        guard.validate(token, policy="writer")
    assert caught.value.status_code == 403
    assert 'scope="orders:admin"' in caught.value.www_authenticate()


def test_expired_jwt_is_refused(oidc_provider: OidcProviderServer, guard: TokenGuard) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_jwt)
    guard.validate(token, policy="jwt")  # keys fetched now
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=oidc_provider.access_token_ttl + 61)
    with freeze_time(later):
        from tokenguard import ExpiredToken

        with pytest.raises(ExpiredToken):
            guard.validate(token, policy="jwt")


def test_opaque_token_is_introspected(oidc_provider: OidcProviderServer, guard: TokenGuard) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_opaque)
    info = guard.validate(token, policy="opaque")
    assert info.source == "introspection"
    assert info.client_id == oidc_provider.app_client_id
    assert info.scopes == {"orders:read", "orders:write"}
    assert info.issuer == oidc_provider.issuer
    assert info.expires_at is not None
    # An opaque token for one resource does not pass a policy for another.
    with pytest.raises(InvalidAudience):
        guard.validate(token, policy="jwt")


def test_revoked_opaque_token_is_refused_after_the_cache_bound(
    oidc_provider: OidcProviderServer, guard: TokenGuard
) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_opaque)
    start = dt.datetime.now(dt.UTC)
    with freeze_time(start) as clock:
        assert guard.validate(token, policy="opaque").active
        oidc_provider.revoke(token)
        # Within the 60 s bound the cached answer stands (that is what the bound means) ...
        clock.tick(30)
        assert guard.validate(token, policy="opaque").cached
        # ... after it, the server is asked again and the revocation shows.
        clock.tick(31)
        with pytest.raises(InactiveToken):
            guard.validate(token, policy="opaque")


def test_high_assurance_sees_revocation_on_the_next_call(
    oidc_provider: OidcProviderServer, guard: TokenGuard
) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_opaque)
    assert guard.validate(token, policy="live").source == "introspection"
    oidc_provider.revoke(token)
    with pytest.raises(InactiveToken):
        guard.validate(token, policy="live")


def test_high_assurance_jwt_cannot_be_confirmed_by_this_server(
    oidc_provider: OidcProviderServer, guard: TokenGuard
) -> None:
    # oidc-provider refuses to introspect its structured JWT access tokens (400
    # unsupported_token_type); high assurance then fails closed with 503, never a pass.
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_jwt)
    with pytest.raises(ValidationUnavailable) as caught:
        guard.validate(token, policy="live-jwt")
    assert caught.value.status_code == 503


@pytest.mark.parametrize("method", ["basic-special", "post"])
def test_client_authentication_methods(oidc_provider: OidcProviderServer, method: str) -> None:
    if method == "post":
        auth: object = ClientSecretPost(oidc_provider.rs_client_id, oidc_provider.rs_client_secret)
    else:  # an id and secret that only work if form-urlencoded per RFC 6749 §2.3.1
        auth = ClientSecretBasic(
            oidc_provider.rs_special_client_id, oidc_provider.rs_special_client_secret
        )
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_opaque)
    with make_guard(oidc_provider, client_auth=auth) as guard:
        assert guard.validate(token, policy="opaque").client_id == oidc_provider.app_client_id


def test_wrong_client_secret_is_503_not_401(oidc_provider: OidcProviderServer) -> None:
    token = oidc_provider.client_credentials_token(resource=oidc_provider.resource_opaque)
    auth = ClientSecretBasic(oidc_provider.rs_client_id, "not-the-secret")
    with make_guard(oidc_provider, client_auth=auth) as guard, pytest.raises(ValidationUnavailable):
        guard.validate(token, policy="opaque")
