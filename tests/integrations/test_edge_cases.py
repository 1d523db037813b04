"""Adversarial requests at every adapter, under real servers (uvicorn for FastAPI and
Starlette, waitress for Flask): how the ``Authorization`` header is read (RFC 9110
§11.4, RFC 6750 §2.1, RFC 9449 §7.1) and what a refusal looks like on the wire
(one ``Retry-After`` on a 503, a body that matches its ``Content-Length``).

No `from __future__ import annotations` here: FastAPI resolves the Annotated parameters
of the routes defined inside the tests from their real objects.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Security
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenguard import TokenGuard, TokenInfo
from tokenguard.fastapi import TokenGuardBearer
from tokenguard.flask import require_token as flask_require_token
from tokenguard.starlette import TokenGuardBackend
from tokenguard.starlette import require_token as starlette_require_token
from tokenguard.testing import AuthServer, guard_for

from .contract import AUDIENCE
from .servers import uvicorn_server, waitress_server

#: Distinct from every Retry-After the guard computes itself (at most the refresh cooldown).
DEFAULT_RETRY_AFTER = 37


def fastapi_app(guard: TokenGuard) -> Any:
    auth = TokenGuardBearer(guard, realm="edge", retry_after=DEFAULT_RETRY_AFTER)
    app = FastAPI()

    @app.get("/orders")
    async def orders(info: Annotated[TokenInfo, Security(auth)]) -> dict[str, Any]:
        return {"subject": info.subject}

    return app


def starlette_app(guard: TokenGuard) -> Any:
    backend = TokenGuardBackend(guard, realm="edge", retry_after=DEFAULT_RETRY_AFTER)

    @starlette_require_token()
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"subject": request.auth.token.subject})

    return Starlette(routes=[Route("/orders", orders)], middleware=[backend.middleware()])


def flask_app(guard: TokenGuard) -> Any:
    app = Flask(__name__)

    @app.get("/orders")
    @flask_require_token(guard, realm="edge", retry_after=DEFAULT_RETRY_AFTER)
    def orders() -> dict[str, Any]:
        from tokenguard.flask import current_token

        return {"subject": current_token.subject}

    return app


ADAPTERS: dict[
    str, tuple[Callable[[TokenGuard], Any], Callable[..., AbstractContextManager[str]]]
] = {
    "fastapi": (fastapi_app, uvicorn_server),
    "starlette": (starlette_app, uvicorn_server),
    "flask": (flask_app, waitress_server),
}


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def served(request: pytest.FixtureRequest, auth: AuthServer) -> Iterator[str]:
    build, serve = ADAPTERS[request.param]
    with guard_for(auth, name="orders", audience=AUDIENCE) as guard, serve(build(guard)) as base:
        yield base


def _send(base: str, headers: list[tuple[bytes, bytes]]) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=20) as http:
        response = http.get("/orders", headers=headers)
    # Whatever the framework, the body is the one the Content-Length announces.
    assert response.headers.get_list("content-length") == [str(len(response.content))]
    return response


def _error(response: httpx.Response) -> Any:
    data = response.json()
    return data["detail"] if set(data) == {"detail"} else data  # FastAPI's envelope


def test_a_503_carries_one_retry_after_the_guards_own(served: str, auth: AuthServer) -> None:
    good = auth.issue_jwt(audience=AUDIENCE)
    # Signed by the server's key but naming a kid nobody published, issued just now: the
    # key may have been published after our fetch, and no refresh is allowed this soon
    # (unannounced-rotation rule), so 503 with the guard's own Retry-After.
    unknown = auth.issue_jwt(audience=AUDIENCE, header={"kid": "not-published-yet"})
    assert _send(served, [(b"authorization", f"Bearer {good}".encode())]).status_code == 200
    answers = [_send(served, [(b"authorization", f"Bearer {unknown}".encode())]) for _ in range(3)]
    unavailable = [a for a in answers if a.status_code == 503]
    assert unavailable, [a.status_code for a in answers]
    for answer in unavailable:
        values = answer.headers.get_list("retry-after")
        assert len(values) == 1, values
        assert values[0].isdigit()
        assert values[0] != str(DEFAULT_RETRY_AFTER)  # the guard knew better
        assert _error(answer)["error"] == "temporarily_unavailable"


@pytest.mark.parametrize(
    "value",
    [
        b"Basic dTpw, Bearer {token}",  # two credentials: never read as the first
        b"Bearer {token}, Basic dTpw",
        b"Bearer {token}, DPoP {token}",  # Bearer and DPoP both
        b"Bearer\t{token}",  # the scheme is followed by spaces, not a tab
        b"Bearer: {token}",
        b"Bearer {token}\xa0",  # a no-break space is not the field's whitespace
        b"Bearer \xa0{token}",
        b",,,",
    ],
    ids=[
        "basic-then-bearer",
        "bearer-then-basic",
        "bearer-and-dpop",
        "tab",
        "colon",
        "nbsp-after",
        "nbsp-before",
        "commas",
    ],
)
def test_malformed_authorization_is_400(served: str, auth: AuthServer, value: bytes) -> None:
    token = auth.issue_jwt(audience=AUDIENCE).encode()
    response = _send(served, [(b"authorization", value.replace(b"{token}", token))])
    assert response.status_code == 400, response.text
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert _error(response)["error"] == "invalid_request"
    assert token.decode() not in response.text + str(response.headers)


def test_two_headers_of_different_schemes_are_400(served: str, auth: AuthServer) -> None:
    # uvicorn keeps the two headers apart; waitress joins them with a comma.
    token = auth.issue_jwt(audience=AUDIENCE)
    for first, second in (("Basic dTpw", f"Bearer {token}"), (f"Bearer {token}", f"DPoP {token}")):
        headers = [(b"authorization", first.encode()), (b"authorization", second.encode())]
        response = _send(served, headers)
        assert response.status_code == 400, (first, second, response.text)
        assert _error(response)["error"] == "invalid_request"


def test_a_request_without_a_token_is_offered_every_scheme_the_policy_accepts(
    served: str,
) -> None:
    # The default policy accepts DPoP-bound tokens too (RFC 9449 §7.1): the bare
    # challenge offers both schemes, with the DPoP algorithms, and no error code.
    for headers in ([], [(b"authorization", b"Basic dTpw")]):
        response = _send(served, headers)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="edge", DPoP realm="edge", algs="'), challenge
        assert "error=" not in challenge


def test_fastapi_large_form_with_a_header_token_reaches_the_route(auth: AuthServer) -> None:
    # A route that accepts form tokens still takes a large form sent with the token in
    # the header: the form is the route's (before, 400 "too large to carry a token").
    from fastapi import Request as FastAPIRequest

    with guard_for(auth, name="orders", audience=AUDIENCE) as guard:
        dep = TokenGuardBearer(guard, allow_form_token=True)
        app = FastAPI()

        @app.post("/upload")
        async def upload(
            request: FastAPIRequest, info: Annotated[TokenInfo, Security(dep)]
        ) -> dict[str, int]:
            form = await request.form(max_part_size=1024 * 1024)
            return {"length": len(str(form["note"]))}

        token = auth.issue_jwt(audience=AUDIENCE)
        with uvicorn_server(app) as base, httpx.Client(base_url=base, timeout=20) as http:
            note = "x" * 200_000
            sent = http.post(
                "/upload", data={"note": note}, headers={"Authorization": f"Bearer {token}"}
            )
            refused = http.post("/upload", data={"note": note})  # no token anywhere
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"length": len(note)}
    assert refused.status_code == 400  # too large to look through for a token
