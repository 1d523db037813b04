"""The gateway's reading of forwarded requests, adversarially, under a real uvicorn: the
``Authorization`` header by the rules the framework adapters share (RFC 9110 §11.4,
RFC 6750 §2.1, RFC 9449 §7.1) and a 503 that carries one ``Retry-After``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tokenguard import ConfigurationError
from tokenguard.gateway import create_app, load_gateway_config
from tokenguard.gateway.contracts import Forwarded
from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer, guard_for

from ..integrations.servers import uvicorn_server


@pytest.fixture(scope="module")
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


@pytest.fixture(scope="module")
def base(auth: AuthServer) -> Iterator[str]:
    config = {
        "issuers": [{"issuer": auth.issuer, "allow_insecure_http": True}],
        "policies": [{"name": "orders", "audience": DEFAULT_AUDIENCE}],
        "routes": [{"path": "/orders/**", "policy": "orders"}],
    }
    with guard_for(auth, name="orders") as guard:
        app = create_app(config, guard=guard)
        with uvicorn_server(app, lifespan="off") as url:
            yield url


def _traefik(base: str, *authorization: bytes) -> httpx.Response:
    headers = [
        (b"x-forwarded-method", b"GET"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"api.example.com"),
        (b"x-forwarded-uri", b"/orders/1"),
        *((b"authorization", value) for value in authorization),
    ]
    with httpx.Client(timeout=20) as http:
        response = http.get(f"{base}/traefik", headers=headers)
    assert response.headers.get_list("content-length") == [str(len(response.content))]
    return response


def test_a_503_carries_one_retry_after(base: str, auth: AuthServer) -> None:
    good = auth.issue_jwt()
    unknown = auth.issue_jwt(header={"kid": "not-published-yet"})
    assert _traefik(base, f"Bearer {good}".encode()).status_code == 200
    answers = [_traefik(base, f"Bearer {unknown}".encode()) for _ in range(3)]
    unavailable = [a for a in answers if a.status_code == 503]
    assert unavailable, [a.status_code for a in answers]
    for answer in unavailable:
        values = answer.headers.get_list("retry-after")
        assert len(values) == 1, values
        assert values[0] != "5"  # the guard's own value, not the default


@pytest.mark.parametrize(
    "value",
    [
        b"Basic dTpw, Bearer {token}",
        b"DPoP {token}, Bearer {token}",
        b"Bearer\t{token}",
        b"Bearer {token}\xa0",
        b"Bearer: {token}",
    ],
    ids=["basic-then-bearer", "dpop-then-bearer", "tab", "nbsp", "colon"],
)
def test_malformed_authorization_is_400(base: str, auth: AuthServer, value: bytes) -> None:
    token = auth.issue_jwt().encode()
    response = _traefik(base, value.replace(b"{token}", token))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


def test_a_configuration_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes(b'[[routes]]\npath = "/caf\xe9/**"\npublic = true\n')
    with pytest.raises(ConfigurationError, match="not UTF-8") as info:
        load_gateway_config(path)
    assert str(path) in info.value.description
    assert "line 2, column 13" in info.value.description


@pytest.mark.parametrize(
    ("target", "scheme", "host", "url"),
    [
        ("/orders/1?x=1", "https", "api.example.com", "https://api.example.com/orders/1"),
        ("/orders/1", "HTTPS", "api.example.com:8443", "https://api.example.com:8443/orders/1"),
        # An absolute-form target names an origin the client chose: the DPoP htu is the
        # proxy's origin with the target's path, as the route was matched.
        (
            "https://other.example/orders/1",
            "https",
            "api.example.com",
            "https://api.example.com/orders/1",
        ),
        ("http://other.example", "https", "api.example.com", "https://api.example.com/"),
        # Forwarded values that cannot be an origin give no URL (the proof then fails).
        ("/orders/1", "javascript", "api.example.com", None),
        ("/orders/1", "https", "evil.example/x", None),
        ("/orders/1", "https", "user@api.example.com", None),
        ("/orders/1", "https", "api.example.com#", None),
        ("/orders/1", "https", "", None),
    ],
)
def test_the_url_a_dpop_proof_is_checked_against(
    target: str, scheme: str, host: str, url: str | None
) -> None:
    forwarded = Forwarded("GET", target, host, scheme, None, None, None)
    assert forwarded.url() == url
