"""MCP: the official SDK's server over streamable HTTP under uvicorn, with the SDK's
client, validating every request with tokenguard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from starlette.testclient import TestClient

from tokenguard.mcp import TokenGuardVerifier
from tokenguard.testing import AuthServer, guard_for

from .conftest import load_example
from .contract import AUDIENCE, RESOURCE
from .servers import uvicorn_server

MCP_URL = RESOURCE + "/mcp"
METADATA_URL = f"{RESOURCE}/.well-known/oauth-protected-resource/mcp"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def base(env: dict[str, str]) -> Iterator[str]:
    module: ModuleType = load_example("mcp_server")
    with uvicorn_server(module.app, lifespan="on") as url:
        yield url
    module.guard.close()


async def _whoami(base: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        streamable_http_client(f"{base}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {})
    content: Any = result.content[0]
    return str(content.text)


async def test_sdk_client_calls_a_tool(base: str, auth: AuthServer) -> None:
    token = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE, subject="fay")
    assert await _whoami(base, token) == "fay"
    opaque = auth.issue_opaque(scopes=["orders:read"], audience=AUDIENCE, subject="gus")
    assert await _whoami(base, opaque) == "gus"


def _post(base: str, token: str | None) -> httpx.Response:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{base}/mcp", json=INITIALIZE, headers=headers, timeout=20)


def test_refusals_under_uvicorn(
    base: str, auth: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = []
    # The SDK's own 401 (with its RFC 9728 challenge) for no token and a bad one.
    for token in (None, "unknown-token", auth.issue_jwt(scopes=["orders:read"], lifetime=-600)):
        response = _post(base, token)
        assert response.status_code == 401
        assert f'resource_metadata="{METADATA_URL}"' in response.headers["www-authenticate"]
        tokens.append(token)
    # The SDK's own 403 for a scope AuthSettings requires.
    scopeless = auth.issue_jwt(scopes=["profile"], audience=AUDIENCE)
    response = _post(base, scopeless)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    # The authorization server is down: tokenguard's 503, not the SDK's 401.
    unknown = auth.issue_opaque(scopes=["orders:read"], audience=AUDIENCE)
    auth.go_down()
    try:
        down = _post(base, unknown)
    finally:
        auth.come_up()
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
    assert down.json()["error"] == "temporarily_unavailable"
    assert f'resource_metadata="{METADATA_URL}"' in down.headers["www-authenticate"]
    # The SDK serves the RFC 9728 document.
    metadata = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=20).json()
    assert metadata["resource"] == MCP_URL
    assert metadata["authorization_servers"] == [auth.issuer]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("tokenguard"))
    for token in (*tokens[1:], scopeless, unknown):
        assert token not in logged


def test_step_up_and_the_unprotected_app(auth: AuthServer) -> None:
    guard = guard_for(auth, name="mcp", audience=AUDIENCE, acr_values=["mfa"])
    verifier = TokenGuardVerifier(guard)
    server = MCPServer("t", token_verifier=verifier, auth=verifier.auth_settings(MCP_URL))
    weak = auth.issue_jwt(audience=AUDIENCE, claims={"acr": "pwd"})
    headers = {**HEADERS, "Authorization": f"Bearer {weak}"}
    with TestClient(verifier.protect(server.streamable_http_app())) as client:
        refused = client.post("/mcp", json=INITIALIZE, headers=headers)
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="mfa"' in challenge
    # Without protect(), the SDK answers what it cannot express with a plain 400: never a
    # 401 (which would make the client discard a token that may be fine) nor a 500.
    bare = MCPServer("t", token_verifier=verifier, auth=verifier.auth_settings(MCP_URL))
    with TestClient(bare.streamable_http_app()) as client:
        assert client.post("/mcp", json=INITIALIZE, headers=headers).status_code == 400
    other = TokenGuardVerifier(guard)
    with pytest.raises(RuntimeError, match="does not authenticate"):
        other.protect(bare.streamable_http_app())
    guard.close()


def test_a_503_carries_one_retry_after_the_guards_own(base: str, auth: AuthServer) -> None:
    good = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE)
    # A kid nobody published, on a token issued just now: 503 while no refresh is allowed,
    # with the guard's own Retry-After, once (not the configured 5 beside it).
    unknown = auth.issue_jwt(
        scopes=["orders:read"], audience=AUDIENCE, header={"kid": "not-published-yet"}
    )
    assert _post(base, good).status_code == 200
    answers = [_post(base, unknown) for _ in range(3)]
    unavailable = [a for a in answers if a.status_code == 503]
    assert unavailable, [a.status_code for a in answers]
    for answer in unavailable:
        assert answer.headers.get_list("retry-after") != ["5"]
        assert len(answer.headers.get_list("retry-after")) == 1
