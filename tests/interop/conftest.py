"""Interop harness: a real third-party authorization server (panva's ``oidc-provider``).

The session-scoped :func:`oidc_provider` fixture starts ``node oidc_provider/server.mjs 0``
(an ephemeral port on 127.0.0.1), waits for its ``READY <issuer>`` line and yields an
:class:`OidcProviderServer` with the issuer, the client credentials and small httpx helpers
for the token, introspection and revocation endpoints.

Everything under ``tests/interop`` is marked ``interop``. The tests are meant to run everywhere
(CI included): they are skipped only when ``TOKENGUARD_SKIP_INTEROP=1``; otherwise a missing
Node.js or a server that does not start is a test error, not a skip.

``tests/interop/setup.sh`` installs the pinned npm packages (``./dev test`` runs it); the
fixture runs it too when ``node_modules`` is missing, so ``pytest tests/interop`` works alone.
"""

from __future__ import annotations

import base64
import os
import queue
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from tokenguard.testing import DPoPKey

HERE = Path(__file__).resolve().parent
SERVER_DIR = HERE / "oidc_provider"
SETUP_SCRIPT = HERE / "setup.sh"

SKIP_ENV = "TOKENGUARD_SKIP_INTEROP"
STARTUP_TIMEOUT = 20.0  # seconds until the READY line
HTTP_TIMEOUT = 10.0

# Resource indicators configured in server.mjs.
RESOURCE_JWT = "urn:tokenguard:interop:jwt"  # RFC 9068 JWT access tokens, RS256
RESOURCE_JWT_ES256 = "urn:tokenguard:interop:jwt-es256"  # RFC 9068 JWT access tokens, ES256
RESOURCE_OPAQUE = "urn:tokenguard:interop:opaque"  # opaque access tokens (introspection)
SCOPES = "orders:read orders:write"
ACCESS_TOKEN_TTL = 300  # seconds, as configured in server.mjs

APP_CLIENT_ID = "app-client"
RS_CLIENT_ID = "rs-client"
# Id and secret need RFC 6749 §2.3.1 form-urlencoding inside a Basic authorization header.
RS_SPECIAL_CLIENT_ID = "rs-client:special"


def interop_skipped() -> bool:
    return os.environ.get(SKIP_ENV) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest hook sees the whole session's items: only touch the ones under this folder.
    skip = pytest.mark.skip(reason=f"{SKIP_ENV}=1") if interop_skipped() else None
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.interop)
            if skip is not None:
                item.add_marker(skip)


def basic_auth_header(client_id: str, client_secret: str) -> str:
    """``Authorization`` value for client_secret_basic, per RFC 6749 §2.3.1.

    The id and secret are form-urlencoded *before* base64; httpx's ``auth=(id, secret)`` does
    not do that, and oidc-provider rejects unencoded ``%``/``+``/``:`` with invalid_request.
    """
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class UnexpectedAnswer(AssertionError):
    """An endpoint of an interop server answered with an unexpected status."""

    def __init__(self, what: str, response: httpx.Response) -> None:
        super().__init__(f"{what}: HTTP {response.status_code}: {response.text}")
        self.response = response


class ServerHelpers:
    """What the interop servers' fixtures share: client credentials and JSON GETs."""

    http: httpx.Client
    app_client_id: str
    app_client_secret: str
    rs_client_id: str
    rs_client_secret: str

    def get_json(self, url: str, what: str) -> dict[str, Any]:
        response = self.http.get(url)
        if response.status_code != 200:
            raise UnexpectedAnswer(what, response)
        data: dict[str, Any] = response.json()
        return data

    def app_auth(self) -> dict[str, str]:
        return {"Authorization": basic_auth_header(self.app_client_id, self.app_client_secret)}

    def rs_auth(self) -> dict[str, str]:
        return {"Authorization": basic_auth_header(self.rs_client_id, self.rs_client_secret)}


@dataclass
class OidcProviderServer(ServerHelpers):
    """A running oidc-provider instance and helpers to talk to it."""

    issuer: str
    process: ServerProcess
    app_client_id: str
    app_client_secret: str
    rs_client_id: str
    rs_client_secret: str
    rs_special_client_id: str
    rs_special_client_secret: str
    http: httpx.Client = field(repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    resource_jwt: str = RESOURCE_JWT
    resource_jwt_es256: str = RESOURCE_JWT_ES256
    resource_opaque: str = RESOURCE_OPAQUE
    scopes: str = SCOPES
    access_token_ttl: int = ACCESS_TOKEN_TTL

    # -- metadata ------------------------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        return str(self.metadata["jwks_uri"])

    @property
    def token_endpoint(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def introspection_endpoint(self) -> str:
        return str(self.metadata["introspection_endpoint"])

    @property
    def revocation_endpoint(self) -> str:
        return str(self.metadata["revocation_endpoint"])

    def fetch_metadata(self) -> dict[str, Any]:
        return self.get_json(self.discovery_url, "discovery")

    def jwks(self) -> dict[str, Any]:
        return self.get_json(self.jwks_uri, "jwks")

    # -- token endpoint ---------------------------------------------------------------------

    def token_request(
        self, resource: str | None = None, scope: str | None = None, dpop: str | None = None
    ) -> httpx.Response:
        """Raw client_credentials token request as app-client (client_secret_basic), with
        a DPoP proof when ``dpop`` is given (RFC 9449 §5)."""
        form = {"grant_type": "client_credentials"}
        if resource is not None:
            form["resource"] = resource
        if scope is not None:
            form["scope"] = scope
        headers = self.app_auth()
        if dpop is not None:
            headers["DPoP"] = dpop
        return self.http.post(self.token_endpoint, data=form, headers=headers)

    def client_credentials_token_response(
        self,
        resource: str | None = RESOURCE_JWT,
        scope: str | None = SCOPES,
        dpop: str | None = None,
    ) -> dict[str, Any]:
        response = self.token_request(resource=resource, scope=scope, dpop=dpop)
        if response.status_code != 200:
            raise UnexpectedAnswer("token request", response)
        data: dict[str, Any] = response.json()
        return data

    def client_credentials_token(
        self, resource: str | None = RESOURCE_JWT, scope: str | None = SCOPES
    ) -> str:
        """An access token for app-client; JWT or opaque depending on ``resource``."""
        return str(self.client_credentials_token_response(resource, scope)["access_token"])

    def dpop_token(self, key: DPoPKey, resource: str | None = RESOURCE_JWT) -> str:
        """An access token bound to ``key`` (RFC 9449 §5: the token request carries a
        proof of ``key``); the server answers ``token_type`` ``DPoP``."""
        proof = key.proof("POST", self.token_endpoint)
        answer = self.client_credentials_token_response(resource, SCOPES, dpop=proof)
        if answer.get("token_type") != "DPoP":
            raise AssertionError(f"not a DPoP-bound token: {answer.get('token_type')!r}")
        return str(answer["access_token"])

    # -- introspection / revocation ----------------------------------------------------------

    def introspection_request(
        self,
        token: str,
        token_type_hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Raw RFC 7662 request, authenticated as rs-client unless ``headers`` say otherwise."""
        form = {"token": token}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        return self.http.post(
            self.introspection_endpoint,
            data=form,
            headers=self.rs_auth() if headers is None else headers,
        )

    def introspect(self, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
        """RFC 7662 introspection as rs-client; the response JSON."""
        response = self.introspection_request(token, token_type_hint)
        if response.status_code != 200:
            raise UnexpectedAnswer("introspection", response)
        data: dict[str, Any] = response.json()
        return data

    def revocation_request(self, token: str, token_type_hint: str | None = None) -> httpx.Response:
        form = {"token": token}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        return self.http.post(self.revocation_endpoint, data=form, headers=self.app_auth())

    def revoke(self, token: str, token_type_hint: str | None = None) -> None:
        """RFC 7009 revocation as app-client (only the owning client may revoke)."""
        response = self.revocation_request(token, token_type_hint)
        if response.status_code != 200:
            raise UnexpectedAnswer("revocation", response)

    # -- process ----------------------------------------------------------------------------

    def stderr_text(self) -> str:
        return "".join(self.process.stderr_lines)

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


class ServerProcess:
    """``node server.mjs``: the child process, its output pumps and its issuer."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.stdout_lines: queue.Queue[str | None] = queue.Queue()  # None = EOF
        self.stderr_lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, name="oidc-provider-stdout", daemon=True),
            threading.Thread(target=self._pump_stderr, name="oidc-provider-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.stdout_lines.put(line)
        self.stdout_lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr_lines.append(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait_ready(self, timeout: float) -> str:
        """Wait for ``READY <issuer>``; return the issuer or raise (and stop the process)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                line = self.stdout_lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                why = f"no READY line within {timeout:g}s"
            else:
                if line is not None:
                    seen.append(line)
                    if line.startswith("READY "):
                        return line.split(maxsplit=1)[1].strip()
                    continue
                why = f"it exited with code {self.popen.wait(timeout=5)}"
            self.stop()
            raise RuntimeError(
                f"oidc-provider interop server did not start: {why}.\n"
                f"stdout: {''.join(seen)!r}\nstderr: {''.join(self.stderr_lines)}"
            )

    def stop(self) -> None:
        """Terminate (then kill) the process, drain its pipes and close them."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


def ensure_installed() -> None:
    if (SERVER_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    bash = shutil.which("bash")
    if bash is None:
        raise RuntimeError("oidc-provider is not installed and bash is missing to run setup.sh")
    result = subprocess.run(
        [bash, str(SETUP_SCRIPT)], capture_output=True, text=True, check=False, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{SETUP_SCRIPT} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )


def start_server(
    secrets_env: dict[str, str], timeout: float = STARTUP_TIMEOUT
) -> tuple[ServerProcess, str]:
    """Start server.mjs on an ephemeral port; return (process, issuer) once it is READY."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "node is not on PATH: the interop tests need Node.js (>= 20.18) and npm; "
            f"set {SKIP_ENV}=1 to skip them deliberately"
        )
    ensure_installed()

    process = ServerProcess(
        subprocess.Popen(
            [node, "server.mjs", "0"],
            cwd=SERVER_DIR,
            env={**os.environ, **secrets_env, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
    )
    return process, process.wait_ready(timeout)


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProviderServer]:
    """A running oidc-provider (issuer ``http://127.0.0.1:<port>``) for the whole session."""
    if interop_skipped():
        pytest.skip(f"{SKIP_ENV}=1")

    app_secret = secrets.token_urlsafe(24)
    rs_secret = secrets.token_urlsafe(24)
    # Characters that must be form-urlencoded in a Basic header (space, +, %, :, /, &, =, ?).
    rs_special_secret = "p+s/w:o%r d&=?" + secrets.token_urlsafe(8)
    process, issuer = start_server(
        {
            "TOKENGUARD_INTEROP_APP_SECRET": app_secret,
            "TOKENGUARD_INTEROP_RS_SECRET": rs_secret,
            "TOKENGUARD_INTEROP_RS_SPECIAL_SECRET": rs_special_secret,
        }
    )
    server = OidcProviderServer(
        issuer=issuer,
        process=process,
        app_client_id=APP_CLIENT_ID,
        app_client_secret=app_secret,
        rs_client_id=RS_CLIENT_ID,
        rs_client_secret=rs_secret,
        rs_special_client_id=RS_SPECIAL_CLIENT_ID,
        rs_special_client_secret=rs_special_secret,
        http=httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False),  # loopback: no proxies
    )
    try:
        server.metadata = server.fetch_metadata()
        yield server
    finally:
        server.stop()
