"""Interop harness: django-oauth-toolkit (DOT, from PyPI) as a real authorization server.

The session-scoped :func:`dot_server` fixture configures Django in this process
(:mod:`.settings`: a SQLite file in a temporary folder, DOT with the scopes
``orders:read orders:write introspection``), runs the migrations, registers two
confidential applications and serves Django's WSGI application with a threaded
``wsgiref`` server on 127.0.0.1 (ephemeral port) in a background thread:

- ``app-client``: the client_credentials client whose tokens are validated;
- ``rs-client``: the resource server, which authenticates to DOT's ``IntrospectTokenView``
  (with its id and secret, or with a bearer token it obtained with the ``introspection``
  scope); ``rs-client:special`` has an id and secret that need RFC 6749 §2.3.1 encoding.

DOT is mounted under ``/o/``, so the issuer is ``http://127.0.0.1:<port>/o``; that is also
the ``issuer`` of its RFC 8414 metadata. Its introspection answers carry no ``iss``.

Like the rest of ``tests/interop`` these tests are skipped only with
``TOKENGUARD_SKIP_INTEROP=1``; the parent ``conftest.py`` marks them ``interop``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from ..conftest import SKIP_ENV, ServerHelpers, UnexpectedAnswer, interop_skipped
from .settings import ACCESS_TOKEN_TTL, django_settings

HTTP_TIMEOUT = 10.0
SCOPES = "orders:read orders:write"

APP_CLIENT_ID = "app-client"
RS_CLIENT_ID = "rs-client"
# Id and secret that only work when form-urlencoded inside a Basic header (RFC 6749 §2.3.1).
RS_SPECIAL_CLIENT_ID = "rs-client:special"

# RFC 8707 resource indicators (DOT requires absolute URIs with a host; .test is reserved).
RESOURCE_ORDERS = "https://orders.tokenguard.test/api"
RESOURCE_BILLING = "https://billing.tokenguard.test/api"


class RequestLog:
    """Every request the DOT server received, as (method, path), in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[str, str]] = []

    def wrap(self, app: Any) -> Any:
        def logged(environ: dict[str, Any], start_response: Any) -> Any:
            with self._lock:
                self._entries.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
            return app(environ, start_response)

        return logged

    def mark(self) -> int:
        with self._lock:
            return len(self._entries)

    def since(self, mark: int) -> list[tuple[str, str]]:
        with self._lock:
            return self._entries[mark:]


@dataclass
class DotServer(ServerHelpers):
    """A running django-oauth-toolkit server and helpers to talk to it."""

    base_url: str
    app_client_id: str
    app_client_secret: str
    rs_client_id: str
    rs_client_secret: str
    rs_special_client_id: str
    rs_special_client_secret: str
    http: httpx.Client = field(repr=False)
    requests: RequestLog = field(default_factory=RequestLog, repr=False)

    scopes: str = SCOPES
    access_token_ttl: int = ACCESS_TOKEN_TTL
    resource_orders: str = RESOURCE_ORDERS
    resource_billing: str = RESOURCE_BILLING

    # -- URLs -------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer identifier: DOT's RFC 8414 ``issuer`` for its ``/o/`` mount."""
        return f"{self.base_url}/o"

    @property
    def metadata_url(self) -> str:
        """RFC 8414 §3.1: the well-known segment goes between the host and the path."""
        return f"{self.base_url}/.well-known/oauth-authorization-server/o"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token/"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/revoke_token/"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/introspect/"

    def metadata(self) -> dict[str, Any]:
        return self.get_json(self.metadata_url, "metadata")

    # -- token endpoint ---------------------------------------------------------------------

    def token_request(
        self,
        scope: str | None = SCOPES,
        resource: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Raw client_credentials request, as app-client unless ``headers`` say otherwise."""
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        if resource is not None:
            form["resource"] = resource
        return self.http.post(
            self.token_endpoint, data=form, headers=self.app_auth() if headers is None else headers
        )

    def client_credentials_token(
        self, scope: str | None = SCOPES, resource: str | None = None
    ) -> str:
        """An (opaque) access token for app-client."""
        response = self.token_request(scope=scope, resource=resource)
        if response.status_code != 200:
            raise UnexpectedAnswer("token request", response)
        return str(response.json()["access_token"])

    def rs_introspection_token(self, scope: str = "introspection") -> str:
        """A token of rs-client itself, for bearer authentication to the introspection view."""
        response = self.token_request(scope=scope, headers=self.rs_auth())
        if response.status_code != 200:
            raise UnexpectedAnswer("token request (rs-client)", response)
        return str(response.json()["access_token"])

    # -- introspection / revocation ----------------------------------------------------------

    def introspection_request(
        self, token: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Raw RFC 7662 request, authenticated as rs-client unless ``headers`` say otherwise."""
        return self.http.post(
            self.introspection_endpoint,
            data={"token": token},
            headers=self.rs_auth() if headers is None else headers,
        )

    def introspect(self, token: str) -> dict[str, Any]:
        response = self.introspection_request(token)
        if response.status_code != 200:
            raise UnexpectedAnswer("introspection", response)
        data: dict[str, Any] = response.json()
        return data

    def revoke(self, token: str) -> None:
        """RFC 7009 revocation as app-client (DOT lets only the owning client revoke)."""
        response = self.http.post(
            self.revocation_endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            headers=self.app_auth(),
        )
        if response.status_code != 200:
            raise UnexpectedAnswer("revocation", response)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on the test output


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _set_up_django(tmp: Any) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        raise RuntimeError("Django is already configured in this process; the DOT fixture owns it")
    settings.configure(**django_settings(tmp / "dot.sqlite3"))
    django.setup()

    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _register_applications(secrets_by_id: dict[str, str]) -> None:
    from oauth2_provider.models import get_application_model

    application = get_application_model()
    for client_id, secret in secrets_by_id.items():
        # DOT hashes the secret on save; the plaintext stays with the fixture.
        application.objects.create(
            name=client_id,
            client_id=client_id,
            client_secret=secret,
            client_type=application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=application.GRANT_CLIENT_CREDENTIALS,
        )


@pytest.fixture(scope="session")
def dot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotServer]:
    """django-oauth-toolkit served on ``http://127.0.0.1:<port>`` for the whole session."""
    if interop_skipped():
        pytest.skip(f"{SKIP_ENV}=1")

    import secrets

    _set_up_django(tmp_path_factory.mktemp("dot"))
    credentials = {
        APP_CLIENT_ID: secrets.token_urlsafe(24),
        RS_CLIENT_ID: secrets.token_urlsafe(24),
        # Characters that must be form-urlencoded in a Basic header (space, +, %, :, /, &, =, ?).
        RS_SPECIAL_CLIENT_ID: "p+s/w:o%r d&=?" + secrets.token_urlsafe(8),
    }
    _register_applications(credentials)

    from django.core.wsgi import get_wsgi_application
    from django.db import connections

    requests = RequestLog()
    httpd = make_server(
        "127.0.0.1",
        0,
        requests.wrap(get_wsgi_application()),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="dot-server", daemon=True
    )
    thread.start()
    server = DotServer(
        base_url=f"http://127.0.0.1:{httpd.server_port}",
        app_client_id=APP_CLIENT_ID,
        app_client_secret=credentials[APP_CLIENT_ID],
        rs_client_id=RS_CLIENT_ID,
        rs_client_secret=credentials[RS_CLIENT_ID],
        rs_special_client_id=RS_SPECIAL_CLIENT_ID,
        rs_special_client_secret=credentials[RS_SPECIAL_CLIENT_ID],
        http=httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False),  # loopback: no proxies
        requests=requests,
    )
    try:
        yield server
    finally:
        server.http.close()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        connections.close_all()
