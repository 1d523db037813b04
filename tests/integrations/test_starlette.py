"""Starlette: the example under uvicorn, and the backend through Starlette's test client."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthenticationError, requires
from starlette.endpoints import HTTPEndpoint
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tokenguard.starlette import TokenGuardBackend, TokenGuardUser, require_token
from tokenguard.testing import AuthServer, guard_for

from .conftest import load_example
from .contract import AUDIENCE, check_contract
from .servers import uvicorn_server


@pytest.fixture(scope="module")
def example(env: dict[str, str]) -> Iterator[ModuleType]:
    module = load_example("starlette_app")
    yield module
    module.guard.close()


def test_example_under_uvicorn(
    example: ModuleType, auth: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with uvicorn_server(example.app) as base:
        check_contract(base, auth, caplog.records)


@pytest.fixture
def client(auth: AuthServer) -> Iterator[TestClient]:
    guard = guard_for(auth, name="orders", audience=AUDIENCE)
    backend = TokenGuardBackend(guard)

    async def public(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse({"authenticated": user.is_authenticated})

    @requires("orders:read")  # Starlette's own decorator reads request.auth.scopes
    async def starlette_style(request: Request) -> JSONResponse:
        user: TokenGuardUser = request.user
        assert repr(user) == "TokenGuardUser()"  # no claim in a repr
        return JSONResponse(
            {
                "identity": user.identity,
                "display": user.display_name,
                "token_subject": request.auth.token.subject,
            }
        )

    @require_token(["orders:read"])
    def sync_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"sync": True})

    class Orders(HTTPEndpoint):
        @require_token("orders:write")
        async def post(self, request: Request) -> JSONResponse:
            return JSONResponse({"method": True})

    app = Starlette(
        routes=[
            Route("/public", public),
            Route("/starlette", starlette_style),
            Route("/sync", sync_endpoint),
            Route("/endpoint", Orders),
        ],
        middleware=[backend.middleware()],
    )
    with TestClient(app) as test_client, guard:
        yield test_client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_and_authenticated(client: TestClient, auth: AuthServer) -> None:
    assert client.get("/public").json() == {"authenticated": False}
    token = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE, subject="dan")
    assert client.get("/public", headers=_bearer(token)).json() == {"authenticated": True}
    assert client.get("/starlette", headers=_bearer(token)).json() == {
        "identity": "dan",
        "display": "dan",
        "token_subject": "dan",
    }
    # Without a subject, the identity is the client id.
    no_sub = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE, claims={"sub": None})
    # (an at+jwt without sub is refused by the RFC 9068 profile; an opaque one is not)
    assert client.get("/starlette", headers=_bearer(no_sub)).status_code == 401
    opaque = auth.issue_opaque(scopes=["orders:read"], audience=AUDIENCE, extra={"sub": None})
    assert client.get("/starlette", headers=_bearer(opaque)).json()["identity"] == auth.client_id


def test_bad_token_is_never_anonymous(client: TestClient) -> None:
    refused = client.get("/public", headers=_bearer("forged.token.value"))
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


def test_decorator_on_sync_functions_and_methods(client: TestClient, auth: AuthServer) -> None:
    reader = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE)
    assert client.get("/sync", headers=_bearer(reader)).json() == {"sync": True}
    assert client.get("/sync").status_code == 401
    refused = client.post("/endpoint", headers=_bearer(reader))
    assert refused.status_code == 403
    assert 'scope="orders:write"' in refused.headers["www-authenticate"]
    writer = auth.issue_jwt(scopes=["orders:write"], audience=AUDIENCE)
    assert client.post("/endpoint", headers=_bearer(writer)).json() == {"method": True}


def test_decorator_needs_the_backend_and_a_request() -> None:
    @require_token()
    async def lonely(request: Request) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/", lonely)])
    with pytest.raises(RuntimeError, match="TokenGuardBackend"):
        TestClient(app).get("/")
    with pytest.raises(TypeError):
        require_token()(lambda: None)


def test_other_authentication_errors_stay_plain() -> None:
    response = TokenGuardBackend.on_error(
        HTTPConnection({"type": "http", "headers": []}), AuthenticationError("nope")
    )
    assert response.status_code == 400


def test_metadata_route_needs_a_resource(auth: AuthServer) -> None:
    from tokenguard import ConfigurationError

    with guard_for(auth) as guard, pytest.raises(ConfigurationError):
        TokenGuardBackend(guard).metadata_route()
