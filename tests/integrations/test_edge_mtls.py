"""Certificate-bound tokens (RFC 8705) through the adapters: the client certificate from
the header a trusted TLS-terminating proxy sets (``client_certificate_header``, off by
default) or from the ASGI TLS extension; then FastAPI under uvicorn and Flask under
waitress end to end with a certificate-bound token of the embedded authorization server."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tokenguard import ConfigurationError, InvalidTokenBinding, TokenGuard
from tokenguard.edge import Protection, RequestView
from tokenguard.testing import AuthServer, guard_for

from ..security import forge
from .servers import uvicorn_server, waitress_server

HEADER = "X-Client-Cert"


def _certificate(name: str) -> x509.Certificate:
    return forge.self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), name)


@pytest.fixture(scope="module")
def mine() -> x509.Certificate:
    return _certificate("client.example")


@pytest.fixture(scope="module")
def theirs() -> x509.Certificate:
    return _certificate("victim.example")


def _thumbprint(certificate: x509.Certificate) -> str:
    return forge.b64url(hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest())


def _bound_token(auth: AuthServer, certificate: x509.Certificate) -> str:
    cnf = {"x5t#S256": _thumbprint(certificate)}
    return auth.issue_jwt(scopes=["orders:read"], claims={"cnf": cnf})


def _nginx(certificate: x509.Certificate) -> str:
    return quote(certificate.public_bytes(Encoding.PEM).decode(), safe="")


def _rfc9440(certificate: x509.Certificate) -> str:
    return f":{base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()}:"


def view(headers: dict[str, Sequence[str]], **more: Any) -> RequestView:
    return RequestView(headers=lambda name: tuple(headers.get(name, ())), **more)


@pytest.fixture
def guard(auth: AuthServer) -> Iterator[TokenGuard]:
    with guard_for(auth) as guard:
        yield guard


# -- tokenguard.edge ----------------------------------------------------------------------


def test_protection_reads_the_named_header_only(
    guard: TokenGuard, auth: AuthServer, mine: x509.Certificate, theirs: x509.Certificate
) -> None:
    token = _bound_token(auth, mine)
    auth_header = {"authorization": [f"Bearer {token}"]}
    named = Protection(guard, client_certificate_header=HEADER)
    for value in (_nginx(mine), _rfc9440(mine)):
        info = named.validate(view({**auth_header, "x-client-cert": [value]}))
        assert info.cnf == {"x5t#S256": _thumbprint(mine)}
    refused = [
        {"x-client-cert": [_nginx(theirs)]},  # another certificate
        {},  # none
        {"x-client-cert": ["junk"]},  # unreadable: as none
        {"x-client-cert": [_nginx(mine), _nginx(mine)]},  # twice: ambiguous, even if equal
        {"x-client-cert": [_nginx(theirs), _nginx(mine)]},
    ]
    for extra in refused:
        with pytest.raises(InvalidTokenBinding) as error:
            named.validate(view({**auth_header, **extra}))
        assert error.value.status_code == 401
    # Off by default: the header is any client's to send, so it is never read.
    with pytest.raises(InvalidTokenBinding):
        Protection(guard).validate(view({**auth_header, "x-client-cert": [_nginx(mine)]}))
    # The named header decides: the adapter's TLS peer (the proxy) does not count.
    with pytest.raises(InvalidTokenBinding):
        named.validate(view(auth_header, client_certificate=mine.public_bytes(Encoding.PEM)))
    # Derived protections (one route's scopes) keep the setting.
    derived = named.derive(scopes=["orders:read"])
    assert derived.client_certificate_header == HEADER
    assert derived.validate(view({**auth_header, "x-client-cert": [_rfc9440(mine)]}))


@pytest.mark.parametrize("name", ["", "X Client Cert", "X-Client-Cert:", "é", 7])
def test_client_certificate_header_must_be_a_header_name(guard: TokenGuard, name: Any) -> None:
    with pytest.raises(ConfigurationError, match="header name"):
        Protection(guard, client_certificate_header=name)


def test_asgi_tls_extension(
    guard: TokenGuard, auth: AuthServer, mine: x509.Certificate, theirs: x509.Certificate
) -> None:
    """Starlette and FastAPI take the first certificate of the ASGI TLS extension's
    ``client_cert_chain`` (PEM) when the server provides it and no header is named."""
    from starlette.requests import HTTPConnection

    from tokenguard.starlette import read_request, tls_client_certificate

    token = _bound_token(auth, mine)
    pem = mine.public_bytes(Encoding.PEM).decode()
    chain = [pem, theirs.public_bytes(Encoding.PEM).decode()]

    def scope(extensions: Any, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/orders",
            "query_string": b"",
            "headers": [(b"authorization", f"Bearer {token}".encode()), *headers],
            "extensions": extensions,
        }

    tls = {"tls": {"server_cert": None, "client_cert_chain": chain, "tls_version": 0x0304}}
    assert tls_client_certificate(scope(tls)) == pem
    for absent in (None, {}, {"tls": None}, {"tls": {"client_cert_chain": []}}, {"tls": "x"}):
        assert tls_client_certificate(scope(absent)) is None
    assert tls_client_certificate({"type": "http"}) is None

    protection = Protection(guard)
    request = read_request(HTTPConnection(scope(tls)))
    assert protection.validate(request).cnf == {"x5t#S256": _thumbprint(mine)}
    reversed_chain = {"tls": {"client_cert_chain": chain[::-1]}}
    with pytest.raises(InvalidTokenBinding):
        protection.validate(read_request(HTTPConnection(scope(reversed_chain))))
    with pytest.raises(InvalidTokenBinding):
        protection.validate(read_request(HTTPConnection(scope({}))))
    # A named header replaces the extension (the TLS peer is then the proxy).
    named = Protection(guard, client_certificate_header=HEADER)
    with pytest.raises(InvalidTokenBinding):
        named.validate(read_request(HTTPConnection(scope(tls))))
    header = (b"x-client-cert", _nginx(mine).encode())
    assert named.validate(read_request(HTTPConnection(scope({}, header))))


# -- real frameworks ------------------------------------------------------------------------


def _round_trip(
    serve: Callable[[str | None], AbstractContextManager[str]],
    auth: AuthServer,
    mine: x509.Certificate,
    theirs: x509.Certificate,
) -> None:
    """With the header named: the right certificate → 200, another one, none, or the
    header sent twice → 401; with the option off the header is ignored → 401."""
    token = _bound_token(auth, mine)
    bearer = {"Authorization": f"Bearer {token}"}
    with serve(HEADER) as url, httpx.Client() as client:
        for value in (_nginx(mine), _rfc9440(mine)):
            ok = client.get(url, headers={**bearer, HEADER: value})
            assert ok.status_code == 200, ok.text
            assert ok.json() == {"x5t": _thumbprint(mine)}
        other = client.get(url, headers={**bearer, HEADER: _nginx(theirs)})
        assert other.status_code == 401
        assert 'error="invalid_token"' in other.headers["www-authenticate"]
        assert client.get(url, headers=bearer).status_code == 401
        twice = httpx.Headers([*bearer.items(), (HEADER, _rfc9440(mine)), (HEADER, _rfc9440(mine))])
        assert client.get(url, headers=twice).status_code == 401
        # An unbound token passes whatever the header says.
        plain = auth.issue_jwt(scopes=["orders:read"])
        unbound = client.get(url, headers={"Authorization": f"Bearer {plain}", HEADER: "junk"})
        assert unbound.status_code == 200
    with serve(None) as url, httpx.Client() as client:
        ignored = client.get(url, headers={**bearer, HEADER: _nginx(mine)})
        assert ignored.status_code == 401


def test_fastapi_under_uvicorn(
    auth: AuthServer, mine: x509.Certificate, theirs: x509.Certificate
) -> None:
    from contextlib import contextmanager

    from fastapi import FastAPI, Security

    from tokenguard.fastapi import TokenGuardBearer

    @contextmanager
    def serve(header: str | None) -> Iterator[str]:
        with guard_for(auth) as guard:
            bearer = TokenGuardBearer(guard, client_certificate_header=header)
            app = FastAPI()

            async def orders(
                info: Any = Security(bearer, scopes=["orders:read"]),  # noqa: B008
            ) -> dict[str, Any]:
                return {"x5t": (info.cnf or {}).get("x5t#S256")}

            app.add_api_route("/orders", orders, methods=["GET"])
            with uvicorn_server(app) as base:
                yield base + "/orders"

    _round_trip(serve, auth, mine, theirs)


def test_starlette_backend_under_uvicorn(
    auth: AuthServer, mine: x509.Certificate, theirs: x509.Certificate
) -> None:
    from contextlib import contextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tokenguard.starlette import TokenGuardBackend, require_token

    @require_token(["orders:read"])
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"x5t": (request.auth.token.cnf or {}).get("x5t#S256")})

    @contextmanager
    def serve(header: str | None) -> Iterator[str]:
        with guard_for(auth) as guard:
            backend = TokenGuardBackend(guard, client_certificate_header=header)
            app = Starlette(routes=[Route("/orders", orders)], middleware=[backend.middleware()])
            with uvicorn_server(app) as base:
                yield base + "/orders"

    _round_trip(serve, auth, mine, theirs)


def test_flask_under_waitress(
    auth: AuthServer, mine: x509.Certificate, theirs: x509.Certificate
) -> None:
    from contextlib import contextmanager

    from flask import Flask

    from tokenguard.flask import current_token, require_token

    @contextmanager
    def serve(header: str | None) -> Iterator[str]:
        with guard_for(auth) as guard:
            app = Flask("mtls")

            @app.get("/orders")
            @require_token(guard, scopes=["orders:read"], client_certificate_header=header)
            def orders() -> dict[str, Any]:
                return {"x5t": (current_token.cnf or {}).get("x5t#S256")}

            with waitress_server(app) as base:
                yield base + "/orders"

    _round_trip(serve, auth, mine, theirs)
