"""Smoke tests for the oidc-provider interop harness, using only httpx and PyJWT.

They prove the harness works and pin down, for the pinned oidc-provider version, the exact
wire behaviour tokenguard has to interoperate with (token shapes, introspection fields,
client authentication quirks). The observed facts are asserted, so an upgrade that changes
them fails here first.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from .conftest import (
    RESOURCE_JWT,
    RESOURCE_JWT_ES256,
    RESOURCE_OPAQUE,
    SCOPES,
    OidcProviderServer,
    basic_auth_header,
)

# Exactly what oidc-provider 9.13.x puts in a client_credentials JWT access token.
JWT_CLAIMS = {"jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}
# Exactly what its introspection endpoint returns for an active client_credentials token that
# has a resource (audience) and scope. No sub (no end user), no jti (for opaque tokens the
# token value *is* the jti, which oidc-provider omits), no nbf, no username.
INTROSPECTION_FIELDS = {"active", "client_id", "exp", "iat", "iss", "aud", "scope", "token_type"}


def b64url_json(segment: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


def verify_jwt(server: OidcProviderServer, token: str, resource: str, alg: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    jwks = jwt.PyJWKSet.from_dict(server.jwks())
    key = jwks[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=[alg],
        audience=resource,
        issuer=server.issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "client_id"]},
    )
    return claims


def test_discovery_document(oidc_provider: OidcProviderServer) -> None:
    meta = oidc_provider.fetch_metadata()
    assert meta["issuer"] == oidc_provider.issuer
    assert meta["issuer"].startswith("http://127.0.0.1:")
    assert meta["jwks_uri"] == f"{oidc_provider.issuer}/jwks"
    assert meta["token_endpoint"] == f"{oidc_provider.issuer}/token"
    assert meta["introspection_endpoint"] == f"{oidc_provider.issuer}/token/introspection"
    assert meta["revocation_endpoint"] == f"{oidc_provider.issuer}/token/revocation"
    assert "client_credentials" in meta["grant_types_supported"]
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    # oidc-provider does not publish the RFC 8414 per-endpoint auth method lists; the
    # introspection/revocation endpoints accept the token endpoint's methods.
    assert "introspection_endpoint_auth_methods_supported" not in meta
    assert "revocation_endpoint_auth_methods_supported" not in meta


def test_jwks_is_public_and_has_both_keys(oidc_provider: OidcProviderServer) -> None:
    response = oidc_provider.http.get(oidc_provider.jwks_uri)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    keys = response.json()["keys"]
    assert {(k["kty"], k["alg"], k["use"]) for k in keys} == {
        ("RSA", "RS256", "sig"),
        ("EC", "ES256", "sig"),
    }
    for k in keys:
        assert "d" not in k  # no private parts
        assert k["kid"]


@pytest.mark.parametrize(
    ("resource", "alg"), [(RESOURCE_JWT, "RS256"), (RESOURCE_JWT_ES256, "ES256")]
)
def test_jwt_access_token_is_rfc9068(
    oidc_provider: OidcProviderServer, resource: str, alg: str
) -> None:
    response = oidc_provider.client_credentials_token_response(resource=resource, scope=SCOPES)
    assert response["token_type"] == "Bearer"
    assert response["expires_in"] == oidc_provider.access_token_ttl
    assert response["scope"] == SCOPES
    token = response["access_token"]

    header = b64url_json(token.split(".")[0])
    # oidc-provider uses the short media type "at+jwt" (not "application/at+jwt").
    assert header == {"alg": alg, "typ": "at+jwt", "kid": header["kid"]}

    claims = verify_jwt(oidc_provider, token, resource, alg)
    assert set(claims) == JWT_CLAIMS
    assert claims["iss"] == oidc_provider.issuer
    assert claims["aud"] == resource  # a single string, not a list
    assert claims["sub"] == oidc_provider.app_client_id  # client_credentials: sub = client_id
    assert claims["client_id"] == oidc_provider.app_client_id
    assert claims["scope"] == SCOPES
    assert claims["exp"] - claims["iat"] == oidc_provider.access_token_ttl


def test_jwt_for_another_resource_fails_audience_check(
    oidc_provider: OidcProviderServer,
) -> None:
    token = oidc_provider.client_credentials_token(resource=RESOURCE_JWT_ES256)
    with pytest.raises(jwt.InvalidAudienceError):
        verify_jwt(oidc_provider, token, RESOURCE_JWT, "ES256")


def test_scope_is_narrowed_and_unknown_scopes_are_dropped(
    oidc_provider: OidcProviderServer,
) -> None:
    narrowed = oidc_provider.client_credentials_token_response(
        resource=RESOURCE_JWT, scope="orders:read"
    )
    assert narrowed["scope"] == "orders:read"

    unknown = oidc_provider.client_credentials_token_response(
        resource=RESOURCE_JWT, scope="orders:delete"
    )
    # Silently dropped: a token without any scope, no "scope" in response or token.
    assert "scope" not in unknown
    assert "scope" not in jwt.decode(unknown["access_token"], options={"verify_signature": False})


def test_token_request_errors(oidc_provider: OidcProviderServer) -> None:
    unknown = oidc_provider.token_request(resource="urn:tokenguard:interop:nope", scope=SCOPES)
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_target"

    two = oidc_provider.http.post(
        oidc_provider.token_endpoint,
        content=(
            f"grant_type=client_credentials&resource={RESOURCE_JWT}&resource={RESOURCE_OPAQUE}"
        ),
        headers={
            **oidc_provider.app_auth(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert two.status_code == 400
    assert two.json()["error"] == "invalid_target"


def test_opaque_token_introspects_active(oidc_provider: OidcProviderServer) -> None:
    response = oidc_provider.client_credentials_token_response(
        resource=RESOURCE_OPAQUE, scope=SCOPES
    )
    token = response["access_token"]
    assert token.count(".") == 0  # opaque: not a JWS

    raw = oidc_provider.introspection_request(token)
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/json; charset=utf-8"
    assert raw.headers["cache-control"] == "no-store"

    body = raw.json()
    assert set(body) == INTROSPECTION_FIELDS
    assert body["active"] is True
    assert body["client_id"] == oidc_provider.app_client_id
    assert body["iss"] == oidc_provider.issuer
    assert body["aud"] == RESOURCE_OPAQUE  # a single string
    assert body["scope"] == SCOPES
    assert body["token_type"] == "Bearer"
    assert body["exp"] - body["iat"] == oidc_provider.access_token_ttl


def test_token_without_resource_has_no_aud(oidc_provider: OidcProviderServer) -> None:
    token = oidc_provider.client_credentials_token(resource=None, scope=None)
    assert token.count(".") == 0  # without a resource indicator tokens are opaque
    body = oidc_provider.introspect(token)
    assert body["active"] is True
    assert set(body) == INTROSPECTION_FIELDS - {"aud", "scope"}


def test_revoked_opaque_token_is_inactive(oidc_provider: OidcProviderServer) -> None:
    token = oidc_provider.client_credentials_token(resource=RESOURCE_OPAQUE)
    assert oidc_provider.introspect(token)["active"] is True

    raw = oidc_provider.revocation_request(token)
    assert raw.status_code == 200
    assert raw.content == b""

    assert oidc_provider.introspect(token) == {"active": False}
    # Revoking again (an unknown token) is still 200, per RFC 7009.
    oidc_provider.revoke(token)


def test_only_the_owner_may_revoke(oidc_provider: OidcProviderServer) -> None:
    token = oidc_provider.client_credentials_token(resource=RESOURCE_OPAQUE)
    response = oidc_provider.http.post(
        oidc_provider.revocation_endpoint, data={"token": token}, headers=oidc_provider.rs_auth()
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert oidc_provider.introspect(token)["active"] is True


def test_unknown_token_is_inactive(oidc_provider: OidcProviderServer) -> None:
    assert oidc_provider.introspect("not-a-token-this-server-issued") == {"active": False}


@pytest.mark.parametrize("resource", [RESOURCE_JWT, RESOURCE_JWT_ES256])
def test_jwt_tokens_cannot_be_introspected_or_revoked(
    oidc_provider: OidcProviderServer, resource: str
) -> None:
    token = oidc_provider.client_credentials_token(resource=resource)

    introspection = oidc_provider.introspection_request(token)
    assert introspection.status_code == 400
    assert introspection.json() == {
        "error": "unsupported_token_type",
        "error_description": (
            "Structured JWT Tokens cannot be introspected via the introspection_endpoint"
        ),
    }

    revocation = oidc_provider.revocation_request(token)
    assert revocation.status_code == 400
    assert revocation.json()["error"] == "unsupported_token_type"


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "bogus"])
def test_token_type_hint_does_not_change_the_answer(
    oidc_provider: OidcProviderServer, hint: str
) -> None:
    token = oidc_provider.client_credentials_token(resource=RESOURCE_OPAQUE)
    assert oidc_provider.introspect(token, token_type_hint=hint)["active"] is True


def test_introspection_client_authentication(oidc_provider: OidcProviderServer) -> None:
    server = oidc_provider
    token = server.client_credentials_token(resource=RESOURCE_OPAQUE)
    url = server.introspection_endpoint

    # client_secret_post is accepted although the client is registered client_secret_basic.
    post = server.http.post(
        url,
        data={
            "token": token,
            "client_id": server.rs_client_id,
            "client_secret": server.rs_client_secret,
        },
    )
    assert post.status_code == 200
    assert post.json()["active"] is True

    # No client authentication at all: 400 invalid_request (not 401).
    anonymous = server.http.post(url, data={"token": token})
    assert anonymous.status_code == 400
    assert anonymous.json()["error"] == "invalid_request"

    # Wrong secret: 401 invalid_client with a Basic challenge.
    wrong = server.introspection_request(
        token, headers={"Authorization": basic_auth_header(server.rs_client_id, "wrong")}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic ")

    # Both Basic and client_secret in the body: rejected.
    both = server.http.post(
        url,
        data={"token": token, "client_secret": server.rs_client_secret},
        headers=server.rs_auth(),
    )
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"


def test_basic_credentials_must_be_form_urlencoded(oidc_provider: OidcProviderServer) -> None:
    server = oidc_provider
    token = server.client_credentials_token(resource=RESOURCE_OPAQUE)
    client_id, secret = server.rs_special_client_id, server.rs_special_client_secret

    encoded = server.introspection_request(
        token, headers={"Authorization": basic_auth_header(client_id, secret)}
    )
    assert encoded.status_code == 200
    assert encoded.json()["active"] is True

    # httpx's BasicAuth (like most HTTP clients) does not form-urlencode: rejected.
    raw = server.http.post(
        server.introspection_endpoint, data={"token": token}, auth=(client_id, secret)
    )
    assert raw.status_code == 400
    assert raw.json()["error"] == "invalid_request"


def test_introspection_requires_form_body(oidc_provider: OidcProviderServer) -> None:
    server = oidc_provider
    token = server.client_credentials_token(resource=RESOURCE_OPAQUE)

    as_json = server.http.post(
        server.introspection_endpoint, json={"token": token}, headers=server.rs_auth()
    )
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"

    as_get = server.http.get(
        server.introspection_endpoint, params={"token": token}, headers=server.rs_auth()
    )
    assert as_get.status_code == 404

    missing = server.http.post(server.introspection_endpoint, data={}, headers=server.rs_auth())
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"

    with_charset = server.http.post(
        server.introspection_endpoint,
        content=urlencode({"token": token}),
        headers={
            **server.rs_auth(),
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        },
    )
    assert with_charset.status_code == 200
    assert with_charset.json()["active"] is True


def test_server_is_still_healthy(oidc_provider: OidcProviderServer) -> None:
    assert oidc_provider.process.poll() is None
    assert "server_error" not in oidc_provider.stderr_text()
