"""A real gateway (``tokenguard gateway``, uvicorn) in front of the embedded authorization
server, a small upstream that echoes what it receives, and a real nginx with
``auth_request`` rendered from ``examples/gateway/nginx.conf``: all on ephemeral
loopback ports, all stopped at the end of the session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer

from .processes import die_with_parent, free_port, stop, wait_for_port

__all__ = ["free_port", "stop", "wait_for_port"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_NGINX = ROOT / "examples" / "gateway" / "nginx.conf"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: The gateway's identifier as a recipient of security events (its /events receiver).
EVENTS_AUDIENCE = "urn:tokenguard:test-gateway"


def gateway_toml(server: AuthServer, *, extra: str = "") -> str:
    """The test configuration: a hybrid and a high-assurance policy, varied routes."""
    return f"""
[[issuers]]
issuer = "{server.issuer}"
allow_insecure_http = true

[issuers.client_auth]
method = "client_secret_basic"
client_id = "{server.client_id}"
client_secret_env = "TG_TEST_SECRET"

[[policies]]
name = "orders"
audience = "{DEFAULT_AUDIENCE}"
required_scopes = ["orders:read"]

[[policies]]
name = "live"
audience = "{DEFAULT_AUDIENCE}"
mode = "high_assurance"

[[routes]]
path = "/public/**"
public = true

[[routes]]
path = "/orders/**"
methods = ["GET", "HEAD"]
policy = "orders"

[[routes]]
name = "orders-write"
path = "/orders/**"
methods = ["POST", "PUT", "DELETE"]
policy = "orders"
scopes = ["orders:write"]

[[routes]]
path = "/live/**"
policy = "live"

[[routes]]
path = "/admin/*"
host = "admin.example.com"
policy = "orders"
scopes = ["admin"]
{extra}"""


def events_toml(server: AuthServer) -> str:
    """A security-event receiver at /events (one worker, or a fleet, can serve it)."""
    return f"""
[[gateway.events]]
issuer = "{server.issuer}"
audience = "{EVENTS_AUDIENCE}"
"""


class Echo(BaseHTTPRequestHandler):
    """The upstream: answers every request with what it received, as JSON."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def gw_server() -> Iterator[AuthServer]:
    with AuthServer(token_lifetime=600) as server:
        yield server


@dataclass
class Gateway:
    """A running ``tokenguard gateway`` process."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def tokenguard_cli() -> list[str]:
    script = Path(sys.executable).with_name("tokenguard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tokenguard.cli"]


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(scope="session", autouse=True)
def _reap_servers() -> Iterator[None]:
    """Whatever a test started and did not stop (a test that timed out half-way) is
    stopped at the end of the session at the latest."""
    yield
    for process in _STARTED:
        stop(process)


def start_gateway(config: Path, log: Path, *args: str) -> Gateway:
    env = {**os.environ}
    out = log.open("wb")
    process = subprocess.Popen(
        [*tokenguard_cli(), "gateway", "--config", str(config), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=out,
        env=env,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the death signal
    )
    _STARTED.append(process)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if "http://" not in line:
            raise RuntimeError(f"gateway did not start: {line!r} {log.read_text()}")
        # "http://HOST:PORT": 127.0.0.1 unless --host said otherwise; reached on loopback.
        port = int(line.split("http://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
        # The rest of stdout is the access log: keep reading it into a file.
        access = log.with_suffix(".access")

        def pump() -> None:
            assert process.stdout is not None
            with access.open("wb") as sink:
                for chunk in iter(process.stdout.readline, b""):
                    sink.write(chunk)
                    sink.flush()

        threading.Thread(target=pump, daemon=True).start()
        wait_for_port(port, process, "gateway")
    except BaseException:
        stop(process)
        raise
    return Gateway(f"http://127.0.0.1:{port}", port, process, access)


@pytest.fixture(scope="session")
def gateway(gw_server: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    os.environ["TG_TEST_SECRET"] = gw_server.client_secret
    tmp = tmp_path_factory.mktemp("gateway")
    config = tmp / "gateway.toml"
    config.write_text(gateway_toml(gw_server, extra=events_toml(gw_server)))
    running = start_gateway(config, tmp / "gateway.log")
    yield running
    stop(running.process)


def nginx_binary() -> str | None:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    return found


def start_nginx(
    tmp: Path, gateway_port: int, upstream_port: int
) -> tuple[subprocess.Popen[bytes], int]:
    binary = nginx_binary()
    if binary is None:
        if IN_CI:
            pytest.fail("nginx is not installed (tests/gateway/setup.sh installs it)")
        pytest.skip("nginx is not installed (run tests/gateway/setup.sh)")
    for _ in range(5):
        port = free_port()
        conf = (
            EXAMPLE_NGINX.read_text()
            .replace("127.0.0.1:8181", f"127.0.0.1:{gateway_port}")
            .replace("127.0.0.1:8080", f"127.0.0.1:{upstream_port}")
            .replace("listen 127.0.0.1:8000", f"listen 127.0.0.1:{port}")
        )
        (tmp / "tmp").mkdir(exist_ok=True)
        (tmp / "nginx.conf").write_text(conf)
        log = (tmp / "nginx.log").open("ab")
        process = subprocess.Popen(
            [binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the death signal
        )
        _STARTED.append(process)
        try:
            wait_for_port(port, process, "nginx")
            return process, port
        except RuntimeError:
            stop(process)  # most likely the port was taken in between: try another
    raise RuntimeError(f"nginx did not start: {(tmp / 'nginx.log').read_text()}")


@pytest.fixture(scope="session")
def nginx(
    gateway: Gateway, upstream: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    process, port = start_nginx(tmp_path_factory.mktemp("nginx"), gateway.port, upstream)
    yield f"http://127.0.0.1:{port}"
    stop(process)


@pytest.fixture(scope="session")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http
