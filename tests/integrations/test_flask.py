"""Flask: the example under waitress, and the decorator through Flask's test client."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType

import pytest
from flask import Flask

from tokenguard.flask import current_token, metadata_blueprint, require_token
from tokenguard.testing import AuthServer, guard_for

from .conftest import load_example
from .contract import AUDIENCE, RESOURCE, check_contract
from .servers import waitress_server


@pytest.fixture(scope="module")
def example(env: dict[str, str]) -> Iterator[ModuleType]:
    module = load_example("flask_app")
    yield module
    module.guard.close()


def test_example_under_waitress(
    example: ModuleType, auth: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with waitress_server(example.app) as base:
        check_contract(base, auth, caplog.records)


def test_async_views_form_tokens_and_current_token(auth: AuthServer) -> None:
    guard = guard_for(auth, name="orders", audience=AUDIENCE)
    app = Flask(__name__)
    app.register_blueprint(metadata_blueprint(guard, resource=RESOURCE, scopes=["orders:read"]))

    @app.get("/async")
    @require_token(guard, scopes="orders:read")
    async def async_view() -> dict[str, str | None]:
        return {"subject": current_token.subject}

    @app.post("/form")
    @require_token(guard, allow_form_token=True)
    def form_view() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/unprotected")
    def unprotected() -> dict[str, str | None]:
        return {"subject": current_token.subject}

    client = app.test_client()
    token = auth.issue_jwt(scopes=["orders:read"], audience=AUDIENCE, subject="erin")
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/async", headers=bearer).json == {"subject": "erin"}
    refused = client.get("/async")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer, DPoP algs=")
    assert refused.json == {"error_description": "An access token is required"}
    assert client.post("/form", data={"access_token": token}).json == {"ok": True}
    assert client.post("/form", data={"access_token": "a b"}).status_code == 400
    assert client.post("/form", data={"access_token": token}, headers=bearer).status_code == 400
    metadata = client.get("/.well-known/oauth-protected-resource").json
    assert metadata["scopes_supported"] == ["orders:read"]
    app.testing = True
    with pytest.raises(RuntimeError, match="require_token"):
        client.get("/unprotected")
    guard.close()
