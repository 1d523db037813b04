"""FastAPI: the example under uvicorn, and the dependency through FastAPI's test client.

No `from __future__ import annotations` here: FastAPI resolves the Annotated parameters
of the routes defined inside the tests from their real objects.
"""

import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Form, Security
from fastapi.testclient import TestClient

from tokenguard import TokenInfo
from tokenguard.fastapi import TokenGuardBearer
from tokenguard.testing import AuthServer, guard_for

from .conftest import load_example
from .contract import AUDIENCE, check_contract
from .servers import uvicorn_server


@pytest.fixture(scope="module")
def example(env: dict[str, str]) -> Iterator[ModuleType]:
    module = load_example("fastapi_app")
    yield module
    module.guard.close()


def test_example_under_uvicorn(
    example: ModuleType, auth: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with uvicorn_server(example.app) as base:
        check_contract(base, auth, caplog.records)


def test_openapi_lists_the_scheme_and_scopes(example: ModuleType) -> None:
    schema = TestClient(example.app).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["TokenGuardBearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert schema["paths"]["/orders"]["get"]["security"] == [{"TokenGuardBearer": ["orders:read"]}]
    assert "security" not in schema["paths"]["/public"]["get"]
    assert "/.well-known/oauth-protected-resource" not in schema["paths"]


@pytest.fixture
def guard(auth: AuthServer) -> Iterator[Any]:
    with guard_for(auth, name="orders", audience=AUDIENCE) as guard:
        yield guard


def test_scopes_merge_across_dependencies(guard: Any, auth: AuthServer) -> None:
    auth_dep = TokenGuardBearer(
        guard,
        scopes=["base"],
        flows={
            "clientCredentials": {"tokenUrl": auth.token_endpoint, "scopes": {"a": "A", "b": "B"}}
        },
    )

    async def reader(info: Annotated[TokenInfo, Security(auth_dep, scopes=["a"])]) -> TokenInfo:
        return info

    app = FastAPI(dependencies=[Security(auth_dep, scopes=["app"])])

    @app.get("/x")
    async def route(info: Annotated[TokenInfo, Security(reader, scopes=["b"])]) -> dict[str, Any]:
        return {"scopes": sorted(info.scopes)}

    client = TestClient(app)
    everything = auth.issue_jwt(scopes=["base", "app", "a", "b"], audience=AUDIENCE)
    assert client.get("/x", headers={"Authorization": f"Bearer {everything}"}).status_code == 200
    partial = auth.issue_jwt(scopes=["base", "app", "a"], audience=AUDIENCE)
    refused = client.get("/x", headers={"Authorization": f"Bearer {partial}"})
    assert refused.status_code == 403
    assert 'scope="a b base"' in refused.headers["www-authenticate"]
    assert refused.json() == {
        "detail": {
            "error": "insufficient_scope",
            "error_description": "The access token lacks the required scope",
        }
    }
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["TokenGuardBearer"]["type"] == "oauth2"
    security = schema["paths"]["/x"]["get"]["security"]
    assert sorted(security[0]["TokenGuardBearer"]) == ["a", "app", "b"]


def test_optional_authentication(guard: Any, auth: AuthServer) -> None:
    optional = TokenGuardBearer(guard, auto_error=False)
    app = FastAPI()

    @app.get("/maybe")
    async def maybe(info: Annotated[TokenInfo | None, Security(optional)]) -> dict[str, Any]:
        return {"subject": info.subject if info else None}

    client = TestClient(app)
    assert client.get("/maybe").json() == {"subject": None}
    token = auth.issue_jwt(subject="carol", audience=AUDIENCE)
    assert client.get("/maybe", headers={"Authorization": f"Bearer {token}"}).json() == {
        "subject": "carol"
    }
    # A bad token is refused even when credentials are optional.
    assert client.get("/maybe", headers={"Authorization": "Bearer x.y"}).status_code == 401


def test_form_token_only_on_opt_in(guard: Any, auth: AuthServer) -> None:
    closed = TokenGuardBearer(guard)
    open_ = TokenGuardBearer(guard, allow_form_token=True)
    app = FastAPI()

    @app.post("/closed")
    async def closed_route(info: Annotated[TokenInfo, Security(closed)]) -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/open")
    async def open_route(info: Annotated[TokenInfo, Security(open_)]) -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/open-form")
    async def open_form(
        info: Annotated[TokenInfo, Security(open_)], note: Annotated[str, Form()]
    ) -> dict[str, str]:
        return {"note": note}

    client = TestClient(app)
    token = auth.issue_jwt(audience=AUDIENCE)
    form = {"access_token": token, "note": "hi"}
    assert client.post("/closed", data=form).status_code == 401
    assert client.post("/open", data=form).json() == {"ok": "yes"}
    assert client.post("/open-form", data=form).json() == {"note": "hi"}
    both = client.post("/open", data=form, headers={"Authorization": f"Bearer {token}"})
    assert both.status_code == 400
    # Only an urlencoded body, never a GET query.
    assert client.post("/open", json=form).status_code == 401
    big = client.post("/open", data={"access_token": token, "pad": "x" * 70000})
    assert big.status_code == 400


def test_starlette_backend_on_a_fastapi_app(guard: Any, auth: AuthServer) -> None:
    # The lighter option docs/integrations.md offers: no dependency, the same rules.
    from fastapi import Request
    from starlette.middleware.authentication import AuthenticationMiddleware

    from tokenguard.starlette import TokenGuardBackend

    backend = TokenGuardBackend(guard)
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=backend, on_error=backend.on_error)

    @app.get("/who")
    async def who(request: Request) -> dict[str, Any]:
        return {"subject": request.auth.token.subject}

    client = TestClient(app)
    token = auth.issue_jwt(subject="kim", audience=AUDIENCE)
    assert client.get("/who", headers={"Authorization": f"Bearer {token}"}).json() == {
        "subject": "kim"
    }
    refused = client.get("/who", headers={"Authorization": "Bearer x.y"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


def test_openapi_scheme_is_dpop_when_the_policy_requires_it(auth: AuthServer) -> None:
    from tokenguard import Policy, TokenGuard

    issuer = {"issuer": auth.issuer, "allow_insecure_http": True}
    policy = Policy(name="orders", audience=AUDIENCE, dpop="required")
    with TokenGuard(issuers=[issuer], policies=[policy]) as guard:
        dpop_only = TokenGuardBearer(guard)
        app = FastAPI()

        @app.get("/x")
        async def route(info: Annotated[TokenInfo, Security(dpop_only)]) -> dict[str, str]:
            return {}

        schema = TestClient(app).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["TokenGuardBearer"] == {
        "type": "http",
        "scheme": "DPoP",
    }
