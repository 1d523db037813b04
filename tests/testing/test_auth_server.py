"""tokenguard.testing.AuthServer over real HTTP: discovery, JWKS, token, introspection,
revocation, key rotation and the failure switches."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from freezegun import freeze_time
from jwt.algorithms import ECAlgorithm

import tokenguard.testing
from tokenguard.testing import (
    DEFAULT_AUDIENCE,
    DEFAULT_SIGNING_ALGORITHMS,
    ENDPOINTS,
    MAX_BODY_SIZE,
    AuthServer,
)
from tokenguard.testing.endpoints import OAuthApp

CLIENT_CREDENTIALS = {"grant_type": "client_credentials"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def basic(client_id: str, client_secret: str) -> dict[str, str]:
    """An RFC 6749 §2.3.1 Authorization header (form-urlencoded id and secret)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def default_auth(server: AuthServer) -> dict[str, str]:
    return basic(server.client_id, server.client_secret)


def get_token(http: httpx.Client, server: AuthServer, **params: Any) -> dict[str, Any]:
    response = http.post(
        server.token_endpoint, data={**CLIENT_CREDENTIALS, **params}, headers=default_auth(server)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def introspect(http: httpx.Client, server: AuthServer, token: str) -> dict[str, Any]:
    response = http.post(
        server.introspection_endpoint, data={"token": token}, headers=default_auth(server)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def verify(http: httpx.Client, server: AuthServer, token: str, **options: Any) -> dict[str, Any]:
    """Verify ``token`` with PyJWT against the server's published JWKS."""
    jwks = jwt.PyJWKSet.from_dict(http.get(server.jwks_uri).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[key.algorithm_name],
        audience=options.pop("audience", DEFAULT_AUDIENCE),
        issuer=server.issuer,
        **options,
    )
    return claims


# -- discovery and JWKS -----------------------------------------------------------------


def test_metadata_and_openid_configuration(auth_server: AuthServer, http: httpx.Client) -> None:
    assert auth_server.metadata_url == (
        f"http://127.0.0.1:{auth_server.port}/.well-known/oauth-authorization-server"
    )
    metadata = http.get(auth_server.metadata_url).json()
    assert metadata["issuer"] == auth_server.issuer == f"http://127.0.0.1:{auth_server.port}"
    assert metadata["jwks_uri"] == auth_server.jwks_uri
    assert metadata["token_endpoint"] == auth_server.token_endpoint
    assert metadata["introspection_endpoint"] == auth_server.introspection_endpoint
    assert metadata["revocation_endpoint"] == auth_server.revocation_endpoint
    assert metadata["grant_types_supported"] == ["client_credentials"]
    methods = {"client_secret_basic", "client_secret_post", "private_key_jwt"}
    for endpoint in ("token", "introspection", "revocation"):
        assert set(metadata[f"{endpoint}_endpoint_auth_methods_supported"]) == methods
        assert "ES256" in metadata[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]

    oidc = http.get(f"{auth_server.issuer}/.well-known/openid-configuration")
    assert oidc.status_code == 200
    assert oidc.headers["content-type"] == "application/json"
    assert oidc.json() == metadata
    assert auth_server.openid_configuration_url == str(oidc.url)


def test_issuer_path_follows_rfc8414_section_3_1(http: httpx.Client) -> None:
    with AuthServer(issuer_path="/tenants/a") as server:
        origin = f"http://127.0.0.1:{server.port}"
        assert server.issuer == f"{origin}/tenants/a"
        assert server.metadata_url == f"{origin}/.well-known/oauth-authorization-server/tenants/a"
        assert server.token_endpoint == f"{origin}/tenants/a/token"
        metadata = http.get(server.metadata_url).json()
        assert metadata["issuer"] == server.issuer
        assert metadata["jwks_uri"] == server.jwks_uri
        oidc = http.get(f"{server.issuer}/.well-known/openid-configuration")
        assert oidc.json()["issuer"] == server.issuer
        # The path-less well-known URL belongs to another issuer.
        assert http.get(f"{origin}/.well-known/oauth-authorization-server").status_code == 404
        assert http.get(f"{origin}/jwks.json").status_code == 404
        assert http.get(server.jwks_uri).status_code == 200


def test_jwks_shape_and_cache_header(http: httpx.Client) -> None:
    with AuthServer(jwks_max_age=42) as server:
        response = http.get(server.jwks_uri)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "max-age=42"
        assert response.headers["content-type"] == "application/json"
        keys = response.json()["keys"]
        assert [k["alg"] for k in keys] == list(DEFAULT_SIGNING_ALGORITHMS)
        assert len({k["kid"] for k in keys}) == len(keys)
        for key in keys:
            assert key["use"] == "sig"
            assert key["kty"] in {"RSA", "EC", "OKP"}
            assert not {"d", "p", "q", "dp", "dq", "qi", "key_ops"} & key.keys()
        assert server.jwks() == response.json()


# -- token endpoint ---------------------------------------------------------------------


def test_token_endpoint_issues_rfc9068_jwt(auth_server: AuthServer, http: httpx.Client) -> None:
    body = get_token(http, auth_server, scope="orders:read orders:write")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "orders:read orders:write"
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    claims = verify(http, auth_server, token)
    assert claims["sub"] == claims["client_id"] == auth_server.client_id
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert claims["scope"] == "orders:read orders:write"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]


def test_token_endpoint_accepts_client_secret_post(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    response = http.post(
        auth_server.token_endpoint,
        data={
            **CLIENT_CREDENTIALS,
            "client_id": auth_server.client_id,
            "client_secret": auth_server.client_secret,
        },
    )
    assert response.status_code == 200
    assert (
        verify(http, auth_server, response.json()["access_token"])["sub"] == auth_server.client_id
    )


def test_client_auth_counts_say_which_method_was_used(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    token = auth_server.issue_opaque()
    credentials = (auth_server.client_id, auth_server.client_secret)
    http.post(auth_server.introspection_endpoint, data={"token": token}, auth=credentials)
    http.post(
        auth_server.introspection_endpoint,
        data={"token": token, "client_id": credentials[0], "client_secret": credentials[1]},
    )
    http.post(
        auth_server.introspection_endpoint,
        data={"token": token},
        headers={"Authorization": f"Bearer {auth_server.introspection_bearer_token}"},
    )
    http.post(auth_server.introspection_endpoint, data={"token": token}, auth=("x", "y"))
    counts = {
        method: auth_server.client_auth_count("introspection", method)
        for method in ("client_secret_basic", "client_secret_post", "bearer", "private_key_jwt")
    }
    assert counts == {
        "client_secret_basic": 1,
        "client_secret_post": 1,
        "bearer": 1,
        "private_key_jwt": 0,
    }
    assert auth_server.client_auth_count("token", "client_secret_basic") == 0
    auth_server.reset_counts()
    assert auth_server.client_auth_count("introspection", "client_secret_basic") == 0
    with pytest.raises(ValueError, match="unknown endpoint"):
        auth_server.client_auth_count("nope", "bearer")


def test_resource_and_audience_parameters(auth_server: AuthServer, http: httpx.Client) -> None:
    token = get_token(http, auth_server, resource="https://api.example/")["access_token"]
    assert verify(http, auth_server, token, audience="https://api.example/")["aud"] == (
        "https://api.example/"
    )
    response = http.post(
        auth_server.token_endpoint,
        content="grant_type=client_credentials&resource=urn%3Aa&resource=urn%3Ab",
        headers={**default_auth(auth_server), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert jwt.decode(response.json()["access_token"], options={"verify_signature": False})[
        "aud"
    ] == ["urn:a", "urn:b"]
    token = get_token(http, auth_server, audience="orders-api")["access_token"]
    assert verify(http, auth_server, token, audience="orders-api")["aud"] == "orders-api"

    relative = http.post(
        auth_server.token_endpoint,
        data={**CLIENT_CREDENTIALS, "resource": "/relative"},
        headers=default_auth(auth_server),
    )
    assert relative.status_code == 400
    assert relative.json()["error"] == "invalid_target"
    both = http.post(
        auth_server.token_endpoint,
        data={**CLIENT_CREDENTIALS, "resource": "urn:a", "audience": "b"},
        headers=default_auth(auth_server),
    )
    assert both.json()["error"] == "invalid_request"


def test_opaque_tokens_from_the_token_endpoint(auth_server: AuthServer, http: httpx.Client) -> None:
    token = get_token(http, auth_server, token_format="opaque", scope="a")["access_token"]
    assert "." not in token
    assert len(token) >= 43
    info = introspect(http, auth_server, token)
    assert info["active"] is True
    assert info["scope"] == "a"
    assert info["client_id"] == info["sub"] == auth_server.client_id
    assert info["token_type"] == "Bearer"

    client = auth_server.add_client("opaque-client", "s", token_format="opaque", scopes=["x", "y"])
    response = http.post(
        auth_server.token_endpoint, data=CLIENT_CREDENTIALS, headers=basic(client.client_id, "s")
    )
    body = response.json()
    assert "." not in body["access_token"]
    assert body["scope"] == "x y"  # all registered scopes when none is asked for

    bad = http.post(
        auth_server.token_endpoint,
        data={**CLIENT_CREDENTIALS, "token_format": "saml"},
        headers=default_auth(auth_server),
    )
    assert bad.status_code == 400


def test_token_endpoint_errors(auth_server: AuthServer, http: httpx.Client) -> None:
    auth_server.add_client("limited", "secret", scopes=["a"])
    token = auth_server.token_endpoint

    def post(data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return http.post(
            token, data=data, headers=default_auth(auth_server) if headers is None else headers
        )

    wrong = post(CLIENT_CREDENTIALS, basic(auth_server.client_id, "wrong"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic ")
    assert post(CLIENT_CREDENTIALS, {}).status_code == 401
    scope = post({**CLIENT_CREDENTIALS, "scope": "a b"}, basic("limited", "secret"))
    assert scope.json()["error"] == "invalid_scope"
    assert post({"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    two_methods = post(
        {**CLIENT_CREDENTIALS, "client_id": auth_server.client_id, "client_secret": "x"}
    )
    assert two_methods.status_code == 400
    assert two_methods.json()["error"] == "invalid_request"
    json_body = http.post(token, json=CLIENT_CREDENTIALS, headers=default_auth(auth_server))
    assert json_body.json()["error"] == "invalid_request"
    repeated = http.post(
        token,
        content="grant_type=client_credentials&scope=a&scope=b",
        headers={**default_auth(auth_server), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.json()["error"] == "invalid_request"
    get = http.get(token)
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert http.post(auth_server.jwks_uri).status_code == 405


# -- introspection ----------------------------------------------------------------------


def assertion(client_id: str, key: ec.EllipticCurvePrivateKey, aud: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": "k1"})


@pytest.fixture
def jwt_client(auth_server: AuthServer) -> ec.EllipticCurvePrivateKey:
    """Registers client "jwt-client" for private_key_jwt and returns its private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1", "alg": "ES256"}
    auth_server.add_client("jwt-client", jwks={"keys": [jwk]})
    return key


def assertion_form(assertion: str) -> dict[str, str]:
    return {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


@pytest.mark.parametrize("method", ["basic", "post", "private_key_jwt", "bearer"])
def test_introspection_with_each_client_auth_method(
    auth_server: AuthServer,
    http: httpx.Client,
    jwt_client: ec.EllipticCurvePrivateKey,
    method: str,
) -> None:
    token = auth_server.issue_jwt(subject="alice", scopes=["orders:read"], claims={"x": 1})
    data = {"token": token}
    headers: dict[str, str] = {}
    if method == "basic":
        headers = default_auth(auth_server)
    elif method == "post":
        data |= {"client_id": auth_server.client_id, "client_secret": auth_server.client_secret}
    elif method == "bearer":
        headers = {"Authorization": f"Bearer {auth_server.introspection_bearer_token}"}
    else:
        data |= assertion_form(assertion("jwt-client", jwt_client, auth_server.issuer))
    response = http.post(auth_server.introspection_endpoint, data=data, headers=headers)
    assert response.status_code == 200, response.text
    info = response.json()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert info == {"active": True, "token_type": "Bearer", **claims}
    assert info["sub"] == "alice"
    assert info["scope"] == "orders:read"
    assert info["iss"] == auth_server.issuer
    assert info["client_id"] == auth_server.client_id


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        pytest.param(
            {}, {"Authorization": "Basic " + base64.b64encode(b"x:y").decode()}, id="basic"
        ),
        pytest.param({"client_id": "tokenguard-test-client", "client_secret": "no"}, {}, id="post"),
        pytest.param({"client_id": "nobody", "client_secret": "no"}, {}, id="post-unknown"),
        pytest.param({}, {"Authorization": "Bearer not-the-token"}, id="bearer"),
        pytest.param({}, {"Authorization": "Basic %%%"}, id="basic-garbage"),
        pytest.param({}, {"Authorization": "Basic bm9jb2xvbg=="}, id="basic-no-colon"),
        pytest.param({}, {}, id="none"),
    ],
)
def test_introspection_rejects_bad_client_credentials(
    auth_server: AuthServer, http: httpx.Client, data: dict[str, str], headers: dict[str, str]
) -> None:
    response = http.post(
        auth_server.introspection_endpoint,
        data={"token": auth_server.issue_opaque(), **data},
        headers=headers,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_secret_basic_is_form_urlencoded(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before base64 ("+" is a space)."""
    client = auth_server.add_client("svc:1 é", "p@ss word+/%:é")
    token = auth_server.issue_opaque()
    encoded = basic("svc:1 é", "p@ss word+/%:é")
    assert "+" in base64.b64decode(encoded["Authorization"][6:]).decode()
    response = http.post(auth_server.introspection_endpoint, data={"token": token}, headers=encoded)
    assert response.json()["active"] is True
    raw = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
    unencoded = http.post(
        auth_server.introspection_endpoint,
        data={"token": token},
        headers={"Authorization": f"Basic {raw}"},
    )
    assert unencoded.status_code == 401


def test_private_key_jwt_assertions(
    auth_server: AuthServer, http: httpx.Client, jwt_client: ec.EllipticCurvePrivateKey
) -> None:
    token = auth_server.issue_opaque()

    def post(client_assertion: str) -> httpx.Response:
        return http.post(
            auth_server.introspection_endpoint,
            data={"token": token, **assertion_form(client_assertion)},
        )

    for aud in (auth_server.token_endpoint, auth_server.introspection_endpoint):
        assert post(assertion("jwt-client", jwt_client, aud)).json()["active"] is True
    replayed = assertion("jwt-client", jwt_client, auth_server.issuer)
    assert post(replayed).status_code == 200
    assert post(replayed).status_code == 401
    other_key = ec.generate_private_key(ec.SECP256R1())
    assert post(assertion("jwt-client", other_key, auth_server.issuer)).status_code == 401
    assert post(assertion("jwt-client", jwt_client, "https://elsewhere")).status_code == 401
    expired = assertion("jwt-client", jwt_client, auth_server.issuer, exp=int(time.time()) - 300)
    assert post(expired).status_code == 401
    # A client without a secret cannot use client_secret_basic, one without a JWKS
    # cannot use private_key_jwt.
    no_secret = http.post(
        auth_server.introspection_endpoint, data={"token": token}, headers=basic("jwt-client", "")
    )
    assert no_secret.status_code == 401
    secret_only = auth_server.client_id
    assert post(assertion(secret_only, jwt_client, auth_server.issuer)).status_code == 401
    # And private_key_jwt works at the token endpoint too.
    response = http.post(
        auth_server.token_endpoint,
        data={
            **CLIENT_CREDENTIALS,
            **assertion_form(assertion("jwt-client", jwt_client, auth_server.issuer)),
        },
    )
    assert response.status_code == 200
    assert verify(http, auth_server, response.json()["access_token"])["sub"] == "jwt-client"


def test_introspection_of_inactive_and_opaque_tokens(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    assert introspect(http, auth_server, "never-issued") == {"active": False}
    assert introspect(http, auth_server, "") == {"active": False}
    expired = auth_server.issue_jwt(lifetime=-1)
    assert introspect(http, auth_server, expired) == {"active": False}
    not_yet = auth_server.issue_jwt(not_before=time.time() + 60)
    assert introspect(http, auth_server, not_yet) == {"active": False}
    forever = auth_server.issue_jwt(claims={"exp": None})
    assert introspect(http, auth_server, forever)["active"] is True

    opaque = auth_server.issue_opaque(
        subject="bob",
        scopes=["a", "b"],
        audience=["urn:one", "urn:two"],
        client_id="some-client",
        extra={"username": "bob@example.com", "jti": None},
    )
    info = introspect(http, auth_server, opaque)
    assert info["active"] is True
    assert info["username"] == "bob@example.com"
    assert info["sub"] == "bob"
    assert info["scope"] == "a b"
    assert info["aud"] == ["urn:one", "urn:two"]
    assert info["client_id"] == "some-client"
    assert info["iss"] == auth_server.issuer
    assert info["exp"] - info["iat"] == 300
    assert "jti" not in info
    missing = http.post(auth_server.introspection_endpoint, headers=default_auth(auth_server))
    assert missing.json()["error"] == "invalid_request"


# -- revocation -------------------------------------------------------------------------


def test_revocation(auth_server: AuthServer, http: httpx.Client) -> None:
    token = get_token(http, auth_server)["access_token"]
    response = http.post(
        auth_server.revocation_endpoint, data={"token": token}, headers=default_auth(auth_server)
    )
    assert response.status_code == 200
    assert introspect(http, auth_server, token) == {"active": False}
    unknown = http.post(
        auth_server.revocation_endpoint, data={"token": "nope"}, headers=default_auth(auth_server)
    )
    assert unknown.status_code == 200  # RFC 7009 §2.2
    auth_server.add_client("other", "secret")
    foreign = auth_server.issue_opaque()
    refused = http.post(
        auth_server.revocation_endpoint, data={"token": foreign}, headers=basic("other", "secret")
    )
    assert refused.status_code == 400
    assert introspect(http, auth_server, foreign)["active"] is True
    bearer = http.post(
        auth_server.revocation_endpoint,
        data={"token": foreign},
        headers={"Authorization": f"Bearer {auth_server.introspection_bearer_token}"},
    )
    assert bearer.status_code == 401

    assert auth_server.revoke(foreign) is True
    assert auth_server.revoke("never-issued") is False
    assert introspect(http, auth_server, foreign) == {"active": False}


# -- direct minting ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", DEFAULT_SIGNING_ALGORITHMS)
def test_issue_jwt_with_each_algorithm(
    auth_server: AuthServer, http: httpx.Client, alg: str
) -> None:
    token = auth_server.issue_jwt(alg=alg, scopes=["a"])
    assert jwt.get_unverified_header(token)["alg"] == alg
    claims = verify(http, auth_server, token)
    assert claims["scope"] == "a"
    assert claims["sub"] == "user-1"
    assert claims["client_id"] == auth_server.client_id


def test_issue_jwt_overrides(auth_server: AuthServer, http: httpx.Client) -> None:
    token = auth_server.issue_jwt(
        claims={"scope": None, "roles": ["admin"], "aud": "urn:other"},
        header={"x-test": "1"},
        typ=None,
        issued_at=1_000,
        lifetime=10,
        not_before=1_005,
        client_id="c",
    )
    header = jwt.get_unverified_header(token)
    assert "typ" not in header
    assert header["x-test"] == "1"
    claims = verify(http, auth_server, token, audience="urn:other", options={"verify_exp": False})
    assert "scope" not in claims
    assert claims["roles"] == ["admin"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1_000, 1_005, 1_010)
    assert claims["client_id"] == "c"

    lying = auth_server.issue_jwt(header={"alg": "HS256", "kid": "unknown"})
    assert jwt.get_unverified_header(lying) == {"alg": "HS256", "kid": "unknown", "typ": "at+jwt"}
    unsigned = auth_server.issue_jwt(alg="none")
    assert unsigned.endswith(".")
    assert jwt.get_unverified_header(unsigned)["alg"] == "none"
    assert auth_server.issue_jwt(scopes="a b", audience=None, claims={"sub": None}).count(".") == 2
    no_aud = jwt.decode(
        auth_server.issue_jwt(audience=None, scopes="a b"), options={"verify_signature": False}
    )
    assert "aud" not in no_aud
    assert no_aud["scope"] == "a b"


def test_issue_jwt_needs_a_published_key(auth_server: AuthServer, http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="ES384"):
        auth_server.issue_jwt(alg="ES384")
    with pytest.raises(ValueError, match="unsupported"):
        auth_server.rotate_keys("HS256")
    kid = auth_server.rotate_keys("ES384")
    token = auth_server.issue_jwt(alg="ES384")
    assert jwt.get_unverified_header(token)["kid"] == kid
    assert verify(http, auth_server, token)["iss"] == auth_server.issuer
    with pytest.raises(ValueError, match="kid"):
        auth_server.issue_jwt(kid="nope")
    with pytest.raises(ValueError, match="bound"):
        auth_server.issue_jwt(kid=kid, alg="RS256")


# -- key rotation -----------------------------------------------------------------------


def kids(http: httpx.Client, server: AuthServer) -> list[str]:
    return [key["kid"] for key in http.get(server.jwks_uri).json()["keys"]]


def test_rotate_keys_keeping_the_old_key(auth_server: AuthServer, http: httpx.Client) -> None:
    old_token = auth_server.issue_jwt()
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = auth_server.rotate_keys()
    assert new_kid != old_kid
    assert {old_kid, new_kid} <= set(kids(http, auth_server))
    new_token = auth_server.issue_jwt()
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    verify(http, auth_server, old_token)
    verify(http, auth_server, new_token)
    assert jwt.get_unverified_header(auth_server.issue_jwt(kid=old_kid))["kid"] == old_kid
    via_http = get_token(http, auth_server)["access_token"]
    assert jwt.get_unverified_header(via_http)["kid"] == new_kid


def test_rotate_keys_dropping_the_old_key(auth_server: AuthServer, http: httpx.Client) -> None:
    old_token = auth_server.issue_jwt()
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    es256_kid = jwt.get_unverified_header(auth_server.issue_jwt(alg="ES256"))["kid"]
    new_kid = auth_server.rotate_keys("RS256", keep_old=False)
    published = kids(http, auth_server)
    assert old_kid not in published
    assert new_kid in published
    assert es256_kid in published
    with pytest.raises(StopIteration):
        verify(http, auth_server, old_token)


# -- availability switches --------------------------------------------------------------


def test_go_down_refuses_connections_and_come_up_reuses_the_port(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    port = auth_server.port
    assert http.get(auth_server.jwks_uri).status_code == 200  # leaves a keep-alive connection
    auth_server.go_down()
    assert not auth_server.is_up
    with pytest.raises(httpx.TransportError):
        http.get(auth_server.jwks_uri)
    with pytest.raises(httpx.ConnectError):
        httpx.get(auth_server.jwks_uri)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    auth_server.go_down()  # idempotent
    auth_server.come_up()
    auth_server.come_up()  # idempotent
    assert auth_server.is_up
    assert auth_server.port == port
    assert http.get(auth_server.jwks_uri).status_code == 200
    token = auth_server.issue_opaque()
    assert introspect(http, auth_server, token)["active"] is True


def test_delay(auth_server: AuthServer, http: httpx.Client) -> None:
    auth_server.set_delay(0.3, "jwks")
    started = time.perf_counter()
    assert http.get(auth_server.jwks_uri).status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    http.get(auth_server.metadata_url)
    assert time.perf_counter() - started < 0.3
    with pytest.raises(httpx.ReadTimeout):
        http.get(auth_server.jwks_uri, timeout=0.05)
    auth_server.set_delay(0, "jwks")
    auth_server.set_delay(0.3)  # every endpoint
    started = time.perf_counter()
    http.get(auth_server.metadata_url)
    assert time.perf_counter() - started >= 0.3


def test_reset_wakes_delayed_requests(auth_server: AuthServer) -> None:
    auth_server.set_delay(30)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, auth_server.jwks_uri, timeout=20)
        deadline = time.monotonic() + 5
        while auth_server.request_count("jwks") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        auth_server.reset()
        assert pending.result().status_code == 200
    assert time.perf_counter() - started < 5
    assert auth_server.request_count("jwks") == 0


# -- forced failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "status", "content_type", "body"),
    [
        ("jwks", {}, 500, "text/plain; charset=utf-8", b"Internal Server Error"),
        (
            "jwks",
            {"status": 503, "body": b"\x00\xff\xfe"},
            503,
            "application/octet-stream",
            b"\x00\xff\xfe",
        ),
        (
            "metadata",
            {"status": 200, "body": "<html>login</html>", "content_type": "text/html"},
            200,
            "text/html",
            b"<html>login</html>",
        ),
        (
            "introspection",
            {"status": 200, "body": {"active": "true"}},
            200,
            "application/json",
            b'{"active": "true"}',
        ),
        (
            "token",
            {"status": 200, "body": b"x" * 5_000_000},
            200,
            "application/octet-stream",
            b"x" * 5_000_000,
        ),
    ],
)
def test_forced_failures(
    auth_server: AuthServer,
    http: httpx.Client,
    endpoint: str,
    kwargs: dict[str, Any],
    status: int,
    content_type: str,
    body: bytes,
) -> None:
    auth_server.set_failure(endpoint, **kwargs)
    url = {
        "jwks": auth_server.jwks_uri,
        "metadata": auth_server.metadata_url,
        "introspection": auth_server.introspection_endpoint,
        "token": auth_server.token_endpoint,
    }[endpoint]
    for _ in range(2):
        response = http.request("GET" if endpoint in {"jwks", "metadata"} else "POST", url)
        assert response.status_code == status
        assert response.headers["content-type"] == content_type
        assert response.content == body
    auth_server.clear_failures()
    assert http.get(auth_server.jwks_uri).status_code == 200


def test_forced_redirect_and_limited_failures(auth_server: AuthServer, http: httpx.Client) -> None:
    auth_server.set_failure(
        "jwks", 302, b"", headers={"Location": "http://attacker.invalid/jwks.json"}
    )
    response = http.get(auth_server.jwks_uri)
    assert response.status_code == 302
    assert response.headers["location"] == "http://attacker.invalid/jwks.json"

    auth_server.set_failure("jwks", 500, times=2)
    assert [http.get(auth_server.jwks_uri).status_code for _ in range(3)] == [500, 500, 200]
    auth_server.set_failure("jwks", 204, times=1)
    empty = http.get(auth_server.jwks_uri)
    assert (empty.status_code, empty.content) == (204, b"")
    assert http.get(auth_server.jwks_uri).status_code == 200

    with pytest.raises(ValueError, match="endpoint"):
        auth_server.set_failure("userinfo")
    with pytest.raises(ValueError, match="status"):
        auth_server.set_failure("jwks", 100)
    with pytest.raises(ValueError, match="times"):
        auth_server.set_failure("jwks", times=0)


# -- counters, limits, robustness -------------------------------------------------------


def test_request_counts(auth_server: AuthServer, http: httpx.Client) -> None:
    assert all(auth_server.request_count(name) == 0 for name in ENDPOINTS)
    http.get(auth_server.jwks_uri)
    http.get(auth_server.jwks_uri)
    http.get(auth_server.openid_configuration_url)
    auth_server.set_failure("metadata", 500)
    http.get(auth_server.metadata_url)
    http.get(auth_server.token_endpoint)  # 405, still counted
    introspect(http, auth_server, "x")
    http.post(
        auth_server.revocation_endpoint, data={"token": "x"}, headers=default_auth(auth_server)
    )
    http.get(f"{auth_server.issuer}/unknown")  # not an endpoint
    assert {name: auth_server.request_count(name) for name in ENDPOINTS} == {
        "metadata": 1,
        "openid_configuration": 1,
        "jwks": 2,
        "token": 1,
        "introspection": 1,
        "revocation": 1,
    }
    auth_server.reset_counts()
    assert auth_server.request_count("jwks") == 0
    with pytest.raises(ValueError, match="unknown endpoint"):
        auth_server.request_count("userinfo")


def test_oversized_and_malformed_requests(auth_server: AuthServer, http: httpx.Client) -> None:
    big = http.post(
        auth_server.introspection_endpoint,
        content=b"token=" + b"a" * MAX_BODY_SIZE,
        headers={**default_auth(auth_server), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413
    assert auth_server.request_count("introspection") == 1

    def chunks() -> Iterator[bytes]:
        yield b"token=x"

    chunked = http.post(
        auth_server.introspection_endpoint,
        content=chunks(),
        headers={**default_auth(auth_server), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 411
    not_utf8 = http.post(
        auth_server.introspection_endpoint,
        content=b"token=\xff",
        headers={**default_auth(auth_server), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.json()["error"] == "invalid_request"

    many_headers = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    for garbage, status in [
        (b"NOPE /jwks.json HTTP/1.1\r\n\r\n", b"501"),
        (b"GET /jwks.json HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"GET /jwks.json HTTP/1.1\r\nContent-Length: many\r\n\r\n", b"400"),
        (b"POST /token HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", b"400"),
        (b"GET /jwks.json HTTP/1.1\r\n" + many_headers + b"\r\n", b"431"),
        (b"", b""),
    ]:
        with socket.create_connection(("127.0.0.1", auth_server.port), timeout=5) as raw:
            raw.sendall(garbage)
            raw.shutdown(socket.SHUT_WR)
            assert raw.recv(4096)[9:12] == status
    assert http.get(auth_server.jwks_uri).status_code == 200


def test_concurrent_token_requests(auth_server: AuthServer, http: httpx.Client) -> None:
    def one(_: int) -> str:
        token: str = get_token(http, auth_server)["access_token"]
        return token

    with ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(one, range(48)))
    assert len(set(tokens)) == 48
    assert auth_server.request_count("token") == 48


def test_logs_contain_no_tokens_or_secrets(
    auth_server: AuthServer, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = get_token(http, auth_server, scope="a")["access_token"]
    introspect(http, auth_server, token)
    http.post(
        auth_server.introspection_endpoint,
        data={"token": token},
        headers={"Authorization": f"Bearer {auth_server.introspection_bearer_token}"},
    )
    http.post(
        auth_server.revocation_endpoint, data={"token": token}, headers=default_auth(auth_server)
    )
    assert "introspection -> 200" in caplog.text
    for secret in (token, auth_server.client_secret, auth_server.introspection_bearer_token):
        assert secret not in caplog.text


# -- clocks, lifecycle ------------------------------------------------------------------


def test_frozen_time_expires_tokens(auth_server: AuthServer, http: httpx.Client) -> None:
    with freeze_time("2031-05-01 12:00:00") as frozen:
        body = get_token(http, auth_server)
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["iat"] == int(time.time())
        opaque = auth_server.issue_opaque(lifetime=60)
        assert introspect(http, auth_server, body["access_token"])["active"] is True
        frozen.tick(61)
        assert introspect(http, auth_server, opaque) == {"active": False}
        assert introspect(http, auth_server, body["access_token"])["active"] is True
        frozen.tick(300)
        assert introspect(http, auth_server, body["access_token"]) == {"active": False}


def test_server_started_under_frozen_time(http: httpx.Client) -> None:
    with freeze_time("2031-05-01 12:00:00") as frozen, AuthServer(issuer_path="/") as server:
        assert server.issuer.endswith(f":{server.port}/")
        assert http.get(server.metadata_url).json()["issuer"] == server.issuer
        token = get_token(http, server)["access_token"]
        assert jwt.decode(token, options={"verify_signature": False})["iat"] == 1_935_403_200
        frozen.tick(3600)
        assert introspect(http, server, token) == {"active": False}


def test_lifecycle_errors_and_validation() -> None:
    server = AuthServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.issuer
    with pytest.raises(RuntimeError, match="not started"):
        server.issue_jwt()
    server.stop()  # stopping a server that never started is harmless
    with server:
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
        with pytest.raises(ValueError, match="already registered"):
            server.add_client(server.client_id)
        with pytest.raises(ValueError, match="token_format"):
            server.add_client("x", token_format="saml")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="endpoint"):
            server.set_delay(1, "nope")
    assert not server.is_up
    server.reset()  # still down
    assert not server.is_up
    with pytest.raises(RuntimeError, match="stopped"):
        server.come_up()
    with pytest.raises(ValueError, match="issuer_path"):
        AuthServer(issuer_path="tenant")
    with pytest.raises(ValueError, match="negative"):
        AuthServer(token_lifetime=-1)
    with pytest.raises(ValueError, match="HS256"):
        AuthServer(signing_algorithms=["RS256", "HS256"])
    generated = AuthServer().add_client("generated")
    assert generated.client_secret
    assert generated.client_secret not in repr(generated)


def test_async_context_manager() -> None:
    async def main() -> int:
        async with AuthServer() as server, httpx.AsyncClient() as client:
            response = await client.get(server.jwks_uri)
        assert not server.is_up
        return response.status_code

    assert asyncio.run(main()) == 200


def test_internal_errors_become_500(
    auth_server: AuthServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(OAuthApp, "handle", boom)
    assert http.get(auth_server.jwks_uri).status_code == 500
    monkeypatch.undo()
    assert http.get(auth_server.jwks_uri).status_code == 200


def test_package_exports() -> None:
    assert "AuthServer" in dir(tokenguard.testing)
    with pytest.raises(AttributeError, match="nope"):
        _ = tokenguard.testing.nope


def test_other_methods_and_unknown_paths(auth_server: AuthServer, http: httpx.Client) -> None:
    assert http.get(auth_server.jwks_uri, params={"ignored": "1"}).status_code == 200
    assert http.delete(auth_server.token_endpoint).status_code == 405
    assert http.head(auth_server.jwks_uri).status_code == 405
    missing = http.get(f"{auth_server.issuer}/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found"}
    thread_names = {t.name for t in threading.enumerate()}
    assert f"tokenguard-auth-server-{auth_server.port}" in thread_names
    json.dumps(auth_server.jwks())  # JSON-serialisable


def test_retire_old_keys_keeps_the_signing_key(auth_server: AuthServer) -> None:
    old = {k["kid"] for k in auth_server.jwks()["keys"] if k["alg"] == "RS256"}
    new = auth_server.rotate_keys("RS256", keep_old=True)
    auth_server.retire_old_keys("RS256")
    published = {k["kid"] for k in auth_server.jwks()["keys"] if k["alg"] == "RS256"}
    assert published == {new}
    assert not old & published
    assert any(k["alg"] == "ES256" for k in auth_server.jwks()["keys"])
