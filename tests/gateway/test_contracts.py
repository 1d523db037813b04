"""The Traefik ForwardAuth and Envoy ext_authz contracts, spoken to the real gateway
process as those proxies speak them; operations endpoints; the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tokenguard import ConfigurationError
from tokenguard.gateway import create_app
from tokenguard.testing import AuthServer, guard_for

from .conftest import Gateway, gateway_toml, start_gateway, stop, tokenguard_cli


def test_traefik_reads_the_forwarded_method_not_its_own(
    gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    reader = gw_server.issue_jwt(subject="bob", scopes=["orders:read"])
    forwarded = {
        "X-Forwarded-Method": "POST",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
        "X-Forwarded-Uri": "/orders/7?x=1",
        "Authorization": f"Bearer {reader}",
    }
    # Traefik calls with GET unless told to preserve the method: the route is POST's.
    denied = client.get(f"{gateway.url}/traefik", headers=forwarded)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    allowed = client.get(
        f"{gateway.url}/traefik", headers={**forwarded, "X-Forwarded-Method": "GET"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["x-auth-subject"] == "bob"
    # Statuses other than 401/403 reach Traefik as they are (it passes them on).
    missing = client.get(
        f"{gateway.url}/traefik",
        headers={**forwarded, "X-Forwarded-Method": "GET", "Authorization": "Bearer a b"},
    )
    assert missing.status_code == 400
    assert "x-tokenguard-status" not in missing.headers


def test_traefik_without_forwarded_headers_is_a_misconfiguration(
    gateway: Gateway, client: httpx.Client
) -> None:
    response = client.get(f"{gateway.url}/traefik", headers={"X-Forwarded-Uri": "/orders/1"})
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"


def test_envoy_takes_the_original_path_after_its_prefix(
    gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    token = gw_server.issue_jwt(scopes=["orders:read", "orders:write"], subject="carol")
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Forwarded-Proto": "https",
        "DPoP": "proof-is-read-not-used-yet",
    }
    allowed = client.post(f"{gateway.url}/envoy/orders/9?a=b", headers=headers)
    assert allowed.status_code == 200
    assert allowed.headers["x-auth-subject"] == "carol"
    # Envoy passes the gateway's status and challenge to the client: 401 stays 401.
    denied = client.post(f"{gateway.url}/envoy/orders/9", headers={"X-Forwarded-Proto": "https"})
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Bearer, DPoP algs=")
    unmatched = client.get(f"{gateway.url}/envoy/nothing/here", headers=headers)
    assert unmatched.status_code == 403
    # The bare prefix is the root path: no route for it here.
    assert client.get(f"{gateway.url}/envoy", headers=headers).status_code == 403
    public = client.get(f"{gateway.url}/envoy/public/x")
    assert public.status_code == 200
    assert public.headers["x-auth-subject"] == ""


def test_repeated_authorization_is_refused(
    gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    token = gw_server.issue_jwt(scopes=["orders:read"])
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer other")]
    response = client.get(f"{gateway.url}/envoy/orders/1", headers=headers)
    assert response.status_code == 400


def test_operations_endpoints(
    gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    assert client.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = client.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "issuers": {gw_server.issuer: True}}
    token = gw_server.issue_jwt(scopes=["orders:read"])
    client.get(f"{gateway.url}/envoy/orders/1", headers={"Authorization": f"Bearer {token}"})
    client.get(f"{gateway.url}/envoy/orders/1", headers={"Authorization": f"Bearer {token}"})
    metrics = client.get(f"{gateway.url}/metrics").text
    assert 'tokenguard_gateway_decisions_total{result="allow",route="/orders/**",status="200"}' in (
        metrics
    )
    assert 'tokenguard_gateway_token_answers_total{cache="hit"}' in metrics
    assert "tokenguard_gateway_decision_seconds_bucket" in metrics
    assert "tokenguard_gateway_upstream_seconds_count" in metrics
    assert client.get(f"{gateway.url}/nope").status_code == 404


def test_readyz_reports_an_unreachable_issuer(
    tmp_path: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuthServer() as server:
        monkeypatch.setenv("TG_TEST_SECRET", server.client_secret)
        config = tmp_path / "gateway.toml"
        # No back-off between JWKS attempts, so readiness follows the server at once.
        config.write_text(gateway_toml(server, extra="[settings]\njwks_refresh_cooldown = 0\n"))
        server.go_down()
        running = start_gateway(config, tmp_path / "gateway.log", "--workers", "2")
        try:
            response = client.get(f"{running.url}/readyz")
            assert response.status_code == 503
            assert response.json() == {"ready": False, "issuers": {server.issuer: False}}
            server.come_up()
            assert client.get(f"{running.url}/readyz").status_code == 200
            # Two workers: /metrics adds up what each one counted.
            for _ in range(4):
                client.get(f"{running.url}/envoy/public/x")
            text = client.get(f"{running.url}/metrics").text
            assert 'route="/public/**",status="200"} 4.0' in text
        finally:
            stop(running.process)


def test_cli_check_and_refusal(
    tmp_path: Path, gw_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", gw_server.client_secret)
    good = tmp_path / "good.toml"
    good.write_text(gateway_toml(gw_server))
    checked = subprocess.run(
        [*tokenguard_cli(), "gateway", "--config", str(good), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "valid (5 routes, 2 policies, 1 issuers)" in checked.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(gateway_toml(gw_server).replace('policy = "live"', 'policy = "dead"'))
    refused = subprocess.run(
        [*tokenguard_cli(), "gateway", "--config", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "routes[3].policy: no policy of this name is configured" in refused.stderr
    assert "line " in refused.stderr


@pytest.mark.parametrize("contract", ["/nginx", "/traefik"])
def test_header_based_contracts_need_method_and_uri(
    gateway: Gateway, client: httpx.Client, contract: str
) -> None:
    response = client.get(f"{gateway.url}{contract}")
    assert response.status_code == 500


def test_app_with_its_own_guard_and_warm_up(
    gw_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", gw_server.client_secret)
    mapping = tomllib.loads(gateway_toml(gw_server))
    with guard_for(gw_server, name="orders") as guard:
        with pytest.raises(ConfigurationError, match="unknown policy"):
            create_app(mapping, guard=guard)
        assert guard.warm_up() == {gw_server.issuer: True}
    app = create_app(mapping)

    async def call() -> list[dict[str, object]]:
        sent: list[dict[str, object]] = []
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/envoy/public/x",
            "raw_path": b"/envoy/public/x",
            "query_string": b"",
            "headers": [],
        }

        async def receive() -> dict[str, object]:
            return {"type": "http.request"}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        await app.aclose()
        return sent

    messages = asyncio.run(call())
    assert messages[0]["status"] == 200


def test_mounted_app_gets_its_prefix(
    gw_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", gw_server.client_secret)
    app = create_app(tomllib.loads(gateway_toml(gw_server)))
    seen: list[tuple[str, str]] = []

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["root_path"], scope["path"]))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app.mount("/events", receiver)
    for bad in ("/nginx", "/", "events", "/envoy", "/x/"):
        with pytest.raises(ValueError, match="prefix"):
            app.mount(bad, receiver)

    async def post(path: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return (await http.post(path, content=b"x")).status_code

    assert asyncio.run(post("/events/set")) == 202
    assert asyncio.run(post("/eventsx")) == 404
    assert seen == [("/events", "/events/set")]


def test_granian_serves_the_same_app(
    tmp_path: Path, client: httpx.Client, gw_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", gw_server.client_secret)
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(gw_server))
    running = start_gateway(config, tmp_path / "gateway.log", "--server", "granian")
    try:
        token = gw_server.issue_jwt(subject="dan", scopes=["orders:read"])
        allowed = client.get(
            f"{running.url}/envoy/orders/1", headers={"Authorization": f"Bearer {token}"}
        )
        assert allowed.status_code == 200
        assert allowed.headers["x-auth-subject"] == "dan"
        refused = client.get(f"{running.url}/envoy/public/%2e%2e/orders/1")
        assert refused.status_code == 401
        assert client.get(f"{running.url}/readyz").status_code == 200
    finally:
        stop(running.process)


def _certificate() -> tuple[str, str]:
    """A self-signed client certificate (PEM) and its RFC 8705 x5t#S256."""
    import base64
    import datetime
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
    thumbprint = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return cert.public_bytes(Encoding.PEM).decode(), thumbprint


def test_certificate_bound_tokens_through_each_contract(
    gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    from urllib.parse import quote

    pem, thumbprint = _certificate()
    token = gw_server.issue_jwt(scopes=["orders:read"], claims={"cnf": {"x5t#S256": thumbprint}})
    body = "".join(pem.strip().splitlines()[1:-1])  # Traefik: PEM without its delimiters
    auth = {"Authorization": f"Bearer {token}"}
    nginx = {"X-Original-Method": "GET", "X-Original-URI": "/orders/1", **auth}
    traefik = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders/1", **auth}
    cases = [
        ("/nginx", nginx, "X-Client-Cert", quote(pem, safe="")),
        ("/traefik", traefik, "X-Forwarded-Tls-Client-Cert", quote(body, safe="")),
        (
            "/envoy/orders/1",
            auth,
            "X-Forwarded-Client-Cert",
            f'Hash=abc;Cert="{quote(pem, safe="")}";Subject="CN=client"',
        ),
    ]
    for path, headers, cert_header, value in cases:
        bound = client.get(f"{gateway.url}{path}", headers={**headers, cert_header: value})
        assert bound.status_code == 200, (path, bound.text)
        unbound = client.get(f"{gateway.url}{path}", headers=headers)
        assert unbound.status_code == 401, path
