"""What every framework integration answers, checked over real HTTP.

Each example app (``examples/``) serves ``GET /public``, ``GET /orders`` (scope
``orders:read``), ``DELETE /orders/42`` (scope ``orders:write`` and RFC 9470 step-up:
``acr`` ``mfa`` within 300 s) and the RFC 9728 metadata document, with realm ``orders``
and resource :data:`RESOURCE`. :func:`check_contract` runs the same requests against
any of them under a real server.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from tokenguard.testing import AuthServer

AUDIENCE = "urn:orders"
RESOURCE = "https://orders.example.com"
METADATA_URL = f"{RESOURCE}/.well-known/oauth-protected-resource"
BARE_CHALLENGE = f'Bearer realm="orders", resource_metadata="{METADATA_URL}"'


def example_env(server: AuthServer) -> dict[str, str]:
    """The environment the examples read their configuration from."""
    return {
        "TOKENGUARD_ISSUER": server.issuer,
        "TOKENGUARD_CLIENT_ID": server.client_id,
        "TOKENGUARD_CLIENT_SECRET": server.client_secret,
        "TOKENGUARD_AUDIENCE": AUDIENCE,
        "TOKENGUARD_RESOURCE": RESOURCE,
    }


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``{"error", "error_description"}`` body (FastAPI puts it under ``detail``)."""
    data = response.json()
    assert isinstance(data, dict)
    detail = data.get("detail")
    if set(data) == {"detail"} and isinstance(detail, dict):
        return detail
    return data


def _refused(
    response: httpx.Response, status: int, error: str | None, *extra: str
) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="orders"'), challenge
    assert challenge.endswith(f'resource_metadata="{METADATA_URL}"'), challenge
    for part in extra:
        assert part in challenge, (part, challenge)
    body = error_of(response)
    if error is None:
        assert "error=" not in challenge
        assert "error" not in body
    else:
        assert f'error="{error}"' in challenge
        assert body["error"] == error
        assert body["error_description"]
    return body


def check_contract(base: str, server: AuthServer, log_records: list[logging.LogRecord]) -> None:
    """Run every case against the app at ``base``."""
    issued: list[str] = []

    def jwt(scopes: tuple[str, ...] = ("orders:read",), **kwargs: Any) -> str:
        token = server.issue_jwt(scopes=scopes, audience=kwargs.pop("audience", AUDIENCE), **kwargs)
        issued.append(token)
        return token

    def opaque(scopes: tuple[str, ...] = ("orders:read",)) -> str:
        token = server.issue_opaque(scopes=scopes, audience=AUDIENCE)
        issued.append(token)
        return token

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    responses: list[httpx.Response] = []
    with httpx.Client(base_url=base, timeout=20) as http:

        def get(path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
            response = http.request(method, path, **kwargs)
            responses.append(response)
            return response

        assert get("/public").json() == {"public": True}

        # RFC 9728 metadata.
        metadata = get("/.well-known/oauth-protected-resource")
        assert metadata.status_code == 200
        assert metadata.headers["content-type"].startswith("application/json")
        document = metadata.json()
        assert document["resource"] == RESOURCE
        assert document["authorization_servers"] == [server.issuer]

        # No credentials: the bare challenge (RFC 6750 §3.1), for another scheme too.
        assert _refused(get("/orders"), 401, None)["error_description"]
        assert get("/orders", headers={"Authorization": "Basic dTpw"}).status_code == 401

        # Valid tokens, both paths.
        ok = get("/orders", headers=bearer(jwt(subject="alice")))
        assert ok.status_code == 200, ok.text
        assert ok.json()["subject"] == "alice"
        assert get("/orders", headers=bearer(opaque())).status_code == 200

        # Invalid tokens.
        _refused(get("/orders", headers=bearer(jwt(lifetime=-600))), 401, "invalid_token")
        _refused(get("/orders", headers=bearer(jwt(audience="urn:other"))), 401, "invalid_token")
        _refused(get("/orders", headers=bearer("not-a-known-token")), 401, "invalid_token")
        _refused(
            get("/orders", headers=bearer(jwt(scopes=("profile",)))),
            403,
            "insufficient_scope",
            'scope="orders:read"',
        )

        # RFC 9470 step-up on DELETE /orders/42.
        write = ("orders:read", "orders:write")
        _refused(
            get("/orders/42", "DELETE", headers=bearer(jwt(write, claims={"acr": "pwd"}))),
            401,
            "insufficient_user_authentication",
            'acr_values="mfa"',
            'max_age="300"',
        )
        stale = {"acr": "mfa", "auth_time": int(time.time()) - 3600}
        _refused(
            get("/orders/42", "DELETE", headers=bearer(jwt(write, claims=stale))),
            401,
            "insufficient_user_authentication",
        )
        fresh = {"acr": "mfa", "auth_time": int(time.time()) - 10}
        done = get("/orders/42", "DELETE", headers=bearer(jwt(write, claims=fresh, subject="bo")))
        assert done.status_code == 200, done.text
        assert done.json()["cancelled"] == 42

        # Malformed requests: 400 invalid_request.
        token = jwt()
        twice = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
        _refused(get("/orders", headers=twice), 400, "invalid_request")
        _refused(get("/orders", headers={"Authorization": "Bearer a b"}), 400, "invalid_request")
        _refused(get("/orders", headers={"Authorization": "Bearer"}), 400, "invalid_request")
        _refused(get(f"/orders?access_token={token}"), 400, "invalid_request")

        # The authorization server is down: 503 with Retry-After, never 401 or 500.
        unknown = opaque()
        server.go_down()
        try:
            down = get("/orders", headers=bearer(unknown))
        finally:
            server.come_up()
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == "5"
        assert error_of(down)["error"] == "temporarily_unavailable"

    # Never a token in a response or a log line.
    for response in responses:
        text = response.text + str(response.headers)
        for token in issued:
            assert token not in text
    # The test's own HTTP client logs the URLs it requests (the query-string case): only
    # the server side counts.
    logged = "\n".join(
        record.getMessage()
        for record in log_records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    for token in issued:
        assert token not in logged
