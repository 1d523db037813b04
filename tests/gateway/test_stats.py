"""The guard's counters through the real gateway: ``/metrics`` (one worker and several),
``/stats`` (loopback or a stats token) and ``tokenguard stats``."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tokenguard import GuardStats
from tokenguard.gateway import create_app
from tokenguard.testing import AuthServer

from .conftest import Gateway, gateway_toml, start_gateway, stop, tokenguard_cli

STATS_TOKEN = "stats-token-0123456789abcdef"


def decide(client: httpx.Client, url: str, token: str | None, path: str = "/orders/1") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(f"{url}/envoy{path}", headers=headers).status_code


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_stats_and_metrics_count_the_decisions(
    gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    before = GuardStats.model_validate(client.get(f"{gateway.url}/stats").json())
    token = gw_server.issue_jwt(scopes=["orders:read"])
    assert decide(client, gateway.url, token) == 200
    assert decide(client, gateway.url, token) == 200  # the verified-token cache
    assert decide(client, gateway.url, gw_server.issue_jwt(scopes=["other"])) == 403
    assert decide(client, gateway.url, None) == 401
    response = client.get(f"{gateway.url}/stats")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    after = GuardStats.model_validate(response.json())

    def change(result: str, path: str | None = None) -> int:
        def count(stats: GuardStats) -> int:
            return sum(
                v.count
                for v in stats.validations
                if v.policy == "orders" and v.result == result and path in (None, v.path)
            )

        return count(after) - count(before)

    assert change("success", "jwt") == 1
    assert change("success", "cache") == 1
    assert change("forbidden", "jwt") == 1
    # No token: the gateway refuses it before asking the guard (tokenguard.edge reads
    # the header), so the guard counts nothing; the gateway's decisions count the 401.
    assert change("missing") == 0
    assert after.caches.verified.hits - before.caches.verified.hits == 1

    text = client.get(f"{gateway.url}/metrics").text
    assert "# TYPE tokenguard_validations_total counter" in text
    cached = metric(
        text, "tokenguard_validations_total", policy="orders", result="success", path="cache"
    )
    assert cached == sum(
        v.count
        for v in after.validations
        if (v.policy, v.result, v.path) == ("orders", "success", "cache")
    )
    assert metric(
        text,
        "tokenguard_validations_total",
        result="forbidden",
        error_type="tokenguard.InsufficientScope",
    ) >= 1  # fmt: skip
    hits = metric(text, "tokenguard_cache_lookups_total", cache="verified", result="hit")
    assert hits >= after.caches.verified.hits
    assert metric(text, "tokenguard_jwks_refreshes_total", result="success") >= 1
    assert token not in text
    assert "tokenguard_fleet_circuit" in text


def test_the_cli_shows_a_running_gateways_stats(
    gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    assert decide(client, gateway.url, gw_server.issue_jwt(scopes=["orders:read"])) == 200
    shown = subprocess.run(
        [*tokenguard_cli(), "stats", "--url", gateway.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"validations: \d+ \(\d+ passed\)", shown.stdout)
    assert re.search(r"\d+  orders  success  via jwt", shown.stdout)
    assert f"issuer {gw_server.issuer}" in shown.stdout
    assert "verified" in shown.stdout
    as_json = subprocess.run(
        [*tokenguard_cli(), "stats", "--url", gateway.url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    stats = GuardStats.model_validate(json.loads(as_json.stdout))
    assert stats.total(policy="orders", result="success") >= 1


def test_the_cli_says_when_nothing_answers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    shown = subprocess.run(
        [*tokenguard_cli(), "stats", "--url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 3
    assert shown.stderr.startswith("error: no answer from http://127.0.0.1:")
    bad = subprocess.run(
        [*tokenguard_cli(), "stats", "--url", "127.0.0.1:8181"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "http://" in bad.stderr


@pytest.fixture
def guarded(gw_server: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TG_TEST_SECRET", gw_server.client_secret)
    monkeypatch.setenv("TG_STATS_TOKEN", STATS_TOKEN)
    config = tmp_path / "gateway.toml"
    config.write_text(
        gateway_toml(gw_server, extra='[gateway]\nstats_token_env = "TG_STATS_TOKEN"\n')
    )
    running = start_gateway(config, tmp_path / "gateway.log", "--host", "0.0.0.0")
    yield running
    stop(running.process)


def test_a_stats_token_is_required_when_configured(
    guarded: Gateway, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = guarded.url
    assert client.get(f"{url}/stats").status_code == 403  # loopback is not enough then
    assert client.get(f"{url}/stats", headers={"Authorization": "Bearer nope"}).status_code == 403
    good = client.get(f"{url}/stats", headers={"Authorization": f"bearer {STATS_TOKEN}"})
    assert good.status_code == 200
    GuardStats.model_validate(good.json())
    refused = subprocess.run(
        [*tokenguard_cli(), "stats", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 3
    assert "--token-env" in refused.stderr
    shown = subprocess.run(
        [*tokenguard_cli(), "stats", "--url", url, "--token-env", "TG_STATS_TOKEN"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert STATS_TOKEN not in shown.stdout + shown.stderr


def _other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_without_a_token_only_loopback_reads_stats(
    gw_server: AuthServer, tmp_path: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", gw_server.client_secret)
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(gw_server))
    app = create_app(config)

    async def ask(client_address: tuple[str, int] | None) -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "GET", "path": "/stats", "headers": []}
        if client_address is not None:
            scope["client"] = client_address
        await app(scope, receive, send)
        return int(sent[0]["status"])

    assert asyncio.run(ask(("127.0.0.1", 5000))) == 200
    assert asyncio.run(ask(("::1", 5000))) == 200
    assert asyncio.run(ask(("::ffff:127.0.0.1", 5000))) == 200
    assert asyncio.run(ask(("203.0.113.9", 5000))) == 403
    assert asyncio.run(ask(None)) == 403  # a Unix socket: no address to judge

    other = _other_address()
    if other is None:
        pytest.skip("this machine has no address other than loopback")
    running = start_gateway(config, tmp_path / "gateway.log", "--host", "0.0.0.0")
    try:
        assert client.get(f"http://{other}:{running.port}/stats").status_code == 403
        assert client.get(f"http://127.0.0.1:{running.port}/stats").status_code == 200
    finally:
        stop(running.process)


def test_several_workers_add_up_the_guards_counters(
    gw_server: AuthServer, tmp_path: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", gw_server.client_secret)
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(gw_server))
    running = start_gateway(config, tmp_path / "gateway.log", "--workers", "2")
    try:
        tokens = [gw_server.issue_jwt(scopes=["orders:read"]) for _ in range(20)]
        for token in tokens:
            assert decide(client, running.url, token) == 200
        # Each worker adds its counts at most a second after its last sync, on its next
        # decision (a public route still counts as one) or when it answers a scrape.
        deadline = time.monotonic() + 20
        while True:
            time.sleep(1.1)
            for _ in range(8):
                decide(client, running.url, None, "/public/x")
            text = client.get(f"{running.url}/metrics").text
            total = metric(text, "tokenguard_validations_total", policy="orders")
            if total == 20 or time.monotonic() > deadline:
                break
        assert total == 20
    finally:
        stop(running.process)


def test_upstream_requests_are_timed_with_the_guards_own_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuthServer() as server:
        monkeypatch.setenv("TG_TEST_SECRET", server.client_secret)
        config = tmp_path / "gateway.toml"
        config.write_text(gateway_toml(server, extra="[settings]\nhttp_timeout = 1\n"))
        app = create_app(config)

        async def decide_opaque(token: str) -> int:
            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            headers = [(b"authorization", f"Bearer {token}".encode())]
            scope = {"type": "http", "method": "GET", "path": "/envoy/orders/1",
                     "raw_path": b"/envoy/orders/1", "query_string": b"", "headers": headers,
                     "client": ("127.0.0.1", 5000)}  # fmt: skip
            await app(scope, receive, send)
            return int(sent[0]["status"])

        async def run() -> tuple[int, int]:
            ok = await decide_opaque(server.issue_opaque(scopes=["orders:read"]))
            server.go_down()
            down = await decide_opaque(server.issue_opaque(scopes=["orders:read"]))
            await app.aclose()
            return ok, down

        assert asyncio.run(run()) == (200, 503)
        assert app.guard._sync_shell is None  # the async shell and its own client only
        text = app.metrics.expose().decode()
        # Metadata, then introspection: two answered requests, then one with no answer.
        host = 'host="127.0.0.1"'
        assert f'tokenguard_gateway_upstream_seconds_count{{{host},outcome="2xx"}} 2.0' in text
        assert f'tokenguard_gateway_upstream_seconds_count{{{host},outcome="error"}} 1.0' in text
        # The server went away under a kept-alive connection, or refused a new one.
        assert re.search(
            r'tokenguard_gateway_upstream_errors_total\{host="127\.0\.0\.1",'
            r'reason="connection (failed|lost)"\} 1\.0',
            text,
        )
