"""The pytest11 plugin: fixtures registered through the ``tokenguard`` entry point."""

from __future__ import annotations

from importlib.metadata import entry_points

import httpx
import jwt
import pytest

from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer
from tokenguard.testing.pytest_plugin import IssueToken


def test_plugin_is_declared_as_pytest11_entry_point() -> None:
    (entry_point,) = entry_points(group="pytest11", name="tokenguard")
    assert entry_point.value == "tokenguard.testing.pytest_plugin"


def test_issue_token_fixture(auth_server: AuthServer, issue_token: IssueToken) -> None:
    token = issue_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "orders:read"
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert claims["iss"] == auth_server.issuer

    opaque = issue_token(["a", "b"], audience="urn:x", format="opaque", subject="bob")
    response = httpx.post(
        auth_server.introspection_endpoint,
        data={"token": opaque},
        auth=(auth_server.client_id, auth_server.client_secret),
    )
    assert response.json()["active"] is True
    assert response.json()["sub"] == "bob"
    assert response.json()["aud"] == "urn:x"

    with pytest.raises(ValueError, match="format"):
        issue_token(format="saml")  # type: ignore[arg-type]


def test_session_server(auth_server_session: AuthServer) -> None:
    assert auth_server_session.is_up
    assert httpx.get(auth_server_session.jwks_uri).status_code == 200
