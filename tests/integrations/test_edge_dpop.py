"""Sender-constrained tokens through tokenguard.edge (RFC 9449 §7.1, RFC 8705): the
``DPoP`` scheme, its proof, method and URL, and the client certificate, read once for
every adapter and the gateway; then FastAPI under uvicorn and Flask under waitress with
DPoP-bound tokens end to end."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest

from tokenguard import (
    InvalidDPoPProof,
    InvalidRequest,
    InvalidTokenBinding,
    MissingToken,
    TokenGuard,
)
from tokenguard.edge import Protection, RequestView
from tokenguard.testing import AuthServer, DPoPKey, guard_for

from ..conftest import Driver
from .servers import uvicorn_server, waitress_server

URL = "https://api.example/orders"


def view(
    headers: dict[str, Sequence[str]],
    *,
    method: str = "GET",
    query: str = "",
    url: Callable[[], str] | None = lambda: URL + "?page=2",
    **more: Any,
) -> RequestView:
    return RequestView(
        method=method,
        headers=lambda name: tuple(headers.get(name, ())),
        query=query,
        url=url,
        **more,
    )


def never() -> str:
    raise AssertionError("the URL is read only for a DPoP request")


@pytest.fixture
def guard(auth: AuthServer) -> Iterator[TokenGuard]:
    with guard_for(auth) as guard:
        yield guard


def test_dpop_scheme_read_with_its_proof_method_and_url(guard: TokenGuard) -> None:
    found = Protection(guard).read(
        view({"authorization": ["DPoP abc.def-ghi"], "dpop": ["p.r.oof"]}, method="DELETE")
    )
    assert found.token == "abc.def-ghi"
    assert found.dpop is not None
    assert (found.dpop.proof, found.dpop.method, found.dpop.scheme) == ("p.r.oof", "DELETE", "DPoP")
    assert found.dpop.url == URL + "?page=2"  # the guard ignores the query (RFC 9449 §4.3)
    for scheme in ("dpop", "DPOP"):
        again = Protection(guard).read(view({"authorization": [f"{scheme} tok"]}))
        assert again.dpop is not None
        assert again.dpop.scheme == "DPoP"
        assert again.dpop.proof is None  # refused by the guard: the DPoP scheme needs a proof


def test_bearer_requests_read_as_before(guard: TokenGuard) -> None:
    protection = Protection(guard)
    plain = protection.read(view({"authorization": ["Bearer tok"]}, url=never))
    assert (plain.token, plain.dpop, plain.client_certificate) == ("tok", None, None)
    # A stray DPoP header goes along with the Bearer scheme (the guard ignores it for a
    # bearer token and refuses a DPoP-bound token sent as bearer); the URL is not built.
    stray = protection.read(view({"authorization": ["Bearer tok"], "dpop": ["x"]}, url=never))
    assert stray.dpop is not None
    assert (stray.dpop.scheme, stray.dpop.url) == ("Bearer", "")


@pytest.mark.parametrize(
    ("headers", "query", "error"),
    [
        ({"authorization": ["DPoP a", "DPoP b"]}, "", InvalidRequest),
        ({"authorization": ["DPoP a b"]}, "", InvalidRequest),
        ({"authorization": ["DPoP"]}, "", InvalidRequest),
        ({"authorization": ["DPoP a"]}, "access_token=b", InvalidRequest),
        ({"authorization": ["Basic dXNlcjpwYXNz"]}, "", MissingToken),
        ({}, "", MissingToken),
    ],
)
def test_malformed_credentials(
    guard: TokenGuard, headers: dict[str, Sequence[str]], query: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        Protection(guard).read(view(headers, query=query))


def test_dpop_scheme_and_a_form_token(guard: TokenGuard) -> None:
    request = view({"authorization": ["DPoP a"]}, method="POST").with_form(["b"])
    with pytest.raises(InvalidRequest, match="more than once"):
        Protection(guard, allow_form_token=True).read(request)


def test_two_dpop_headers_reach_the_guard_and_are_refused(
    guard: TokenGuard, auth: AuthServer
) -> None:
    key = DPoPKey()
    token = auth.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
    proofs = [key.proof("GET", URL, access_token=token) for _ in range(2)]
    request = view({"authorization": [f"DPoP {token}"], "dpop": proofs})
    with pytest.raises(InvalidDPoPProof, match="exactly one DPoP header") as refused:
        Protection(guard).validate(request)
    assert refused.value.status_code == 401


def test_protection_validates_dpop_and_certificate_bound_tokens(
    guard: TokenGuard, auth: AuthServer, check: Driver
) -> None:
    """Through both shells: a bound token with its proof passes; a replay, a proof for
    another method, the bound token sent as Bearer are refused with their exact errors;
    a certificate-bound token passes with the view's certificate and only with it."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    from ..security import forge

    protection = Protection(guard, realm="orders")

    def run(request: RequestView) -> Any:
        if check.kind == "sync":
            return protection.validate(request)
        assert check.loop is not None
        return check.loop.run_until_complete(protection.avalidate(request))

    check.guards.append(guard)
    key = DPoPKey()
    token = auth.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
    proof = key.proof("GET", URL, access_token=token)
    request = view({"authorization": [f"DPoP {token}"], "dpop": [proof]})
    assert run(request).cnf == key.cnf
    with pytest.raises(InvalidDPoPProof, match="already used") as replay:
        run(request)
    reply = protection.reply(replay.value)
    assert reply.status == 401
    assert 'DPoP realm="orders", error="invalid_dpop_proof"' in reply.header_map["WWW-Authenticate"]
    other = view(
        {"authorization": [f"DPoP {token}"], "dpop": [key.proof("GET", URL, access_token=token)]},
        method="POST",
    )
    with pytest.raises(InvalidDPoPProof, match="another HTTP method"):
        run(other)
    downgraded = view({"authorization": [f"Bearer {token}"]})
    with pytest.raises(InvalidTokenBinding) as binding:
        run(downgraded)
    assert binding.value.status_code == 401

    certificate = forge.self_signed_certificate(ec.generate_private_key(ec.SECP256R1()))
    der = certificate.public_bytes(Encoding.DER)
    x5t = forge.b64url(hashlib.sha256(der).digest())
    bound = auth.issue_jwt(scopes=["orders:read"], claims={"cnf": {"x5t#S256": x5t}})
    headers = {"authorization": [f"Bearer {bound}"]}
    assert run(view(headers, client_certificate=der)).cnf == {"x5t#S256": x5t}
    with pytest.raises(InvalidTokenBinding):
        run(view(headers))


# -- real frameworks ------------------------------------------------------------------------


def _content(response: httpx.Response) -> Any:
    body = response.json()
    return body.get("detail", body)  # FastAPI's HTTPException puts it under "detail"


def _dpop_round_trip(base: str, path: str, auth: AuthServer) -> None:
    """A DPoP-bound token with a proof for this server's own URL passes; the same proof
    again, and the token as Bearer, are refused with the DPoP challenge."""
    key = DPoPKey()
    token = auth.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
    url = base + path
    proof = key.proof("GET", url, access_token=token)
    with httpx.Client() as client:
        ok = client.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        assert ok.status_code == 200, ok.text
        replay = client.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        assert replay.status_code == 401
        assert 'error="invalid_dpop_proof"' in replay.headers["www-authenticate"]
        assert _content(replay)["error"] == "invalid_dpop_proof"
        bearer = client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 401
        assert _content(bearer)["error"] == "invalid_token"
        fresh = key.proof("GET", url, access_token=token)
        again = client.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": fresh})
        assert again.status_code == 200, again.text


def test_fastapi_under_uvicorn(auth: AuthServer) -> None:
    from fastapi import FastAPI, Security

    from tokenguard.fastapi import TokenGuardBearer

    with guard_for(auth) as guard:
        bearer = TokenGuardBearer(guard, realm="orders")
        app = FastAPI()

        async def orders(
            info: Any = Security(bearer, scopes=["orders:read"]),  # noqa: B008
        ) -> dict[str, Any]:
            return {"jkt": info.cnf["jkt"]}

        app.add_api_route("/orders", orders, methods=["GET"])
        with uvicorn_server(app) as base:
            _dpop_round_trip(base, "/orders", auth)


def test_flask_under_waitress(auth: AuthServer) -> None:
    from flask import Flask

    from tokenguard.flask import require_token

    with guard_for(auth) as guard:
        app = Flask("dpop")

        @app.get("/orders")
        @require_token(guard, scopes=["orders:read"])
        def orders() -> dict[str, Any]:
            return {"ok": True}

        with waitress_server(app) as base:
            _dpop_round_trip(base, "/orders", auth)
