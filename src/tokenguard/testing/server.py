"""``AuthServer``: a real OAuth 2.0 authorization server on a loopback port, for tests."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

from tokenguard.testing.clients import DEFAULT_AUDIENCE, Client, ClientRegistry, TokenFormat
from tokenguard.testing.endpoints import ENDPOINTS, OAuthApp, Routes
from tokenguard.testing.keys import SUPPORTED_ALGORITHMS, KeyRing
from tokenguard.testing.switches import Switchboard
from tokenguard.testing.tokens import TokenFactory, TokenStore
from tokenguard.testing.transport import HOST, HTTPListener, HTTPRequest, HTTPResponse

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_SIGNING_ALGORITHMS", "AuthServer"]

log = logging.getLogger("tokenguard.testing")

#: The ``client_id`` of the client every server starts with.
DEFAULT_CLIENT_ID: Final = "tokenguard-test-client"
#: The algorithms the server has a signing key for from the start.
DEFAULT_SIGNING_ALGORITHMS: Final = ("RS256", "PS256", "ES256", "EdDSA")


@dataclass(frozen=True)
class _Runtime:
    """What exists once the server is started (the issuer depends on the port)."""

    port: int
    routes: Routes
    keyring: KeyRing
    factory: TokenFactory
    app: OAuthApp


def _check_endpoint(endpoint: str) -> None:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; use one of {ENDPOINTS}")


class AuthServer:
    """An in-process OAuth 2.0 authorization server on ``127.0.0.1`` (ephemeral port).

    It serves RFC 8414 metadata, OpenID discovery, a JWKS, a token endpoint (client
    credentials), RFC 7662 introspection and RFC 7009 revocation, and lets tests mint tokens
    directly, rotate keys and inject failures. All methods are thread-safe.

    Use it as a context manager (sync or async)::

        with AuthServer() as server:
            token = server.issue_jwt(scopes=["orders:read"])

    Args:
        issuer_path: appended to ``http://127.0.0.1:PORT`` to form the issuer (for example
            ``"/tenant-a"``); the endpoints live under it and the RFC 8414 metadata at
            ``/.well-known/oauth-authorization-server/tenant-a``.
        jwks_max_age: the ``max-age`` of the JWKS ``Cache-Control`` header.
        token_lifetime: default lifetime in seconds of the tokens issued.
        signing_algorithms: the algorithms to have a signing key for from the start.
        port: the loopback port to listen on (default 0: a free one).
    """

    def __init__(
        self,
        *,
        issuer_path: str = "",
        jwks_max_age: int = 300,
        token_lifetime: int = 300,
        signing_algorithms: Iterable[str] = DEFAULT_SIGNING_ALGORITHMS,
        port: int = 0,
    ) -> None:
        parts = urlsplit(issuer_path)
        if issuer_path and (not issuer_path.startswith("/") or parts.query or parts.fragment):
            raise ValueError("issuer_path must start with '/' and have no query or fragment")
        if not 0 <= port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if jwks_max_age < 0 or token_lifetime < 0:
            raise ValueError("jwks_max_age and token_lifetime must not be negative")
        self._signing_algorithms = tuple(signing_algorithms)
        if unsupported := set(self._signing_algorithms) - set(SUPPORTED_ALGORITHMS):
            raise ValueError(f"unsupported signing algorithms: {sorted(unsupported)}")
        self._issuer_path = issuer_path
        self._port = port
        self._jwks_max_age = jwks_max_age
        self._token_lifetime = token_lifetime
        self._lock = threading.RLock()
        self._clients = ClientRegistry()
        self._default_client = self._clients.add(DEFAULT_CLIENT_ID)
        self._store = TokenStore()
        self._switches = Switchboard()
        self._listener = HTTPListener(self._dispatch)
        self._introspection_bearer_token = secrets.token_urlsafe(32)
        self._runtime: _Runtime | None = None
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Generate the signing keys, bind the port and start serving. Returns ``self``."""
        with self._lock:
            if self._runtime is not None:
                raise RuntimeError("AuthServer was already started (it starts only once)")
            keyring = KeyRing(self._signing_algorithms)
            port = self._listener.bind(self._port)
            routes = Routes(f"http://{HOST}:{port}{self._issuer_path}")
            factory = TokenFactory(
                issuer=routes.issuer,
                keyring=keyring,
                store=self._store,
                default_client_id=self._default_client.client_id,
                default_lifetime=self._token_lifetime,
            )
            app = OAuthApp(
                routes=routes,
                keyring=keyring,
                clients=self._clients,
                store=self._store,
                factory=factory,
                jwks_max_age=self._jwks_max_age,
                introspection_bearer_token=self._introspection_bearer_token,
                on_client_auth=self._switches.record_client_auth,
            )
            self._runtime = _Runtime(port, routes, keyring, factory, app)
            self._listener.serve()
        log.debug("AuthServer %s started", routes.issuer)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, for good. Safe to call more than once."""
        with self._lock:
            self._stopped = self._runtime is not None
            self.go_down()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def _started(self) -> _Runtime:
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError(
                "AuthServer is not started; call start() or use it as a context manager"
            )
        return runtime

    # -- addresses and credentials ------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (stays the same across :meth:`go_down`/:meth:`come_up`)."""
        return self._started.port

    @property
    def issuer(self) -> str:
        """The issuer identifier: ``http://127.0.0.1:PORT`` + ``issuer_path``."""
        return self._started.routes.issuer

    @property
    def metadata_url(self) -> str:
        """The RFC 8414 metadata URL."""
        return self._started.routes.url("metadata")

    @property
    def openid_configuration_url(self) -> str:
        """The OpenID Connect discovery URL (``{issuer}/.well-known/openid-configuration``)."""
        return self._started.routes.url("openid_configuration")

    @property
    def jwks_uri(self) -> str:
        """The JWK Set URL."""
        return self._started.routes.url("jwks")

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL."""
        return self._started.routes.url("token")

    @property
    def introspection_endpoint(self) -> str:
        """The RFC 7662 introspection endpoint URL."""
        return self._started.routes.url("introspection")

    @property
    def revocation_endpoint(self) -> str:
        """The RFC 7009 revocation endpoint URL."""
        return self._started.routes.url("revocation")

    @property
    def client_id(self) -> str:
        """The ``client_id`` of the pre-registered confidential client."""
        return self._default_client.client_id

    @property
    def client_secret(self) -> str:
        """The secret of the pre-registered client (``client_secret_basic``/``_post``)."""
        assert self._default_client.client_secret is not None
        return self._default_client.client_secret

    @property
    def introspection_bearer_token(self) -> str:
        """A credential the introspection endpoint accepts as ``Authorization: Bearer``."""
        return self._introspection_bearer_token

    def add_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        scopes: Iterable[str] | None = None,
        token_format: TokenFormat = "jwt",  # noqa: S107
        audience: str | Sequence[str] | None = DEFAULT_AUDIENCE,
    ) -> Client:
        """Register a client; it may use the token, introspection and revocation endpoints.

        Args:
            client_id: the client identifier (must be new).
            client_secret: its secret; generated when neither it nor ``jwks`` is given.
            jwks: a public JWK Set; the client may then authenticate with
                ``private_key_jwt`` (assertion ``aud``: the issuer or the endpoint URL).
            scopes: the scopes it may ask for, all granted when it asks for none;
                ``None`` allows any scope and grants none by default.
            token_format: what the token endpoint issues it unless the request says
                ``token_format=jwt|opaque``.
            audience: the ``aud`` of its tokens unless the request has ``resource``
                (RFC 8707) or ``audience`` parameters.

        Returns:
            The registered client (with its ``client_secret``).
        """
        return self._clients.add(
            client_id,
            client_secret,
            jwks=jwks,
            scopes=scopes,
            token_format=token_format,
            audience=audience,
        )

    # -- tokens -------------------------------------------------------------------------

    def issue_jwt(
        self,
        *,
        subject: str = "user-1",
        scopes: Iterable[str] = (),
        audience: str | Sequence[str] | None = DEFAULT_AUDIENCE,
        lifetime: int | None = None,
        alg: str | None = None,
        kid: str | None = None,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        typ: str | None = "at+jwt",
        client_id: str | None = None,
        issued_at: float | None = None,
        not_before: float | None = None,
    ) -> str:
        """Mint an RFC 9068 JWT access token without an HTTP round trip.

        The token carries ``iss, sub, aud, exp, iat, jti, client_id`` and ``scope`` (when
        there are scopes), is known to introspection and can be revoked.

        Args:
            subject: the ``sub`` claim.
            scopes: the scopes (``scope`` claim, space-separated); a string is taken as is.
            audience: the ``aud`` claim (a list stays a list); ``None`` leaves it out.
            lifetime: seconds from ``issued_at`` to ``exp`` (default: ``token_lifetime``;
                negative values give an expired token).
            alg: the signing algorithm (default ``RS256``, or the alg of ``kid``), or
                ``"none"`` for an unsigned token.
            kid: sign with this published key (e.g. one kept by :meth:`rotate_keys`).
            claims: claims to add or override; a value of ``None`` removes the claim.
            header: JOSE header parameters to add or override (``None`` removes); the
                signature is still made with the selected key, so ``{"alg": "HS256"}``
                yields a token whose header lies about its algorithm.
            typ: the ``typ`` header; ``None`` leaves it out.
            client_id: the ``client_id`` claim (default: the pre-registered client).
            issued_at: the ``iat`` (default: now, from ``time.time()``).
            not_before: an ``nbf`` claim, if given.
        """
        return self._started.factory.jwt(
            subject=subject,
            scopes=scopes,
            audience=audience,
            lifetime=lifetime,
            alg=alg,
            kid=kid,
            claims=claims,
            header=header,
            typ=typ,
            client_id=client_id,
            issued_at=issued_at,
            not_before=not_before,
        )

    def issue_opaque(
        self,
        *,
        subject: str = "user-1",
        scopes: Iterable[str] = (),
        audience: str | Sequence[str] | None = DEFAULT_AUDIENCE,
        lifetime: int | None = None,
        client_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Mint an opaque (random, 256-bit) token that only introspection can resolve.

        ``subject``, ``scopes``, ``audience``, ``lifetime`` and ``client_id`` are as
        for :meth:`issue_jwt`.

        Args:
            extra: members to add to or override in its introspection response (e.g.
                ``{"username": "alice"}``); ``None`` values remove members.
        """
        return self._started.factory.opaque(
            subject=subject,
            scopes=scopes,
            audience=audience,
            lifetime=lifetime,
            client_id=client_id,
            extra=extra,
        )

    def revoke(self, token: str) -> bool:
        """Revoke a token issued by this server; return whether it knew the token."""
        return self._store.revoke(token)

    # -- keys ---------------------------------------------------------------------------

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWK Set currently published."""
        return self._started.keyring.jwks()

    def rotate_keys(self, alg: str = "RS256", *, keep_old: bool = True) -> str:
        """Publish a new ``alg`` key and sign new ``alg`` tokens with it.

        Args:
            alg: the algorithm of the new key.
            keep_old: keep publishing the previous ``alg`` keys; if false they disappear
                from the JWKS (keys of other algorithms stay).

        Returns:
            The ``kid`` of the new key.
        """
        return self._started.keyring.rotate(alg, keep_old=keep_old).kid

    def retire_old_keys(self, alg: str = "RS256") -> None:
        """Stop publishing the older ``alg`` keys, keeping the one that signs: the last
        step of a rotation (publish a new key, sign with it, retire the old one)."""
        self._started.keyring.retire(alg)

    # -- switches -----------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        """Whether the server accepts connections."""
        return self._listener.running

    def go_down(self) -> None:
        """Close the listening socket and every open connection: connecting is refused."""
        with self._lock:
            self._switches.interrupt()
            self._listener.close()

    def come_up(self) -> None:
        """Listen again, on the same port, after :meth:`go_down` (not after :meth:`stop`)."""
        with self._lock:
            port = self._started.port
            if self._stopped:
                raise RuntimeError("AuthServer was stopped")
            if not self._listener.running:
                self._listener.bind(port)
                self._listener.serve()

    def set_delay(self, seconds: float, endpoint: str | None = None) -> None:
        """Answer requests to ``endpoint`` (default: every endpoint) after ``seconds``.

        A delay of 0 removes it. Delays are cut short by :meth:`go_down`, :meth:`stop` and
        :meth:`reset`.
        """
        if endpoint is not None:
            _check_endpoint(endpoint)
        self._switches.set_delay(seconds, endpoint)

    def set_failure(
        self,
        endpoint: str,
        status: int = 500,
        body: bytes | str | Mapping[str, Any] | list[Any] = "Internal Server Error",
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Force the answer of ``endpoint``, whatever the request.

        Args:
            endpoint: one of ``"metadata"``, ``"openid_configuration"``, ``"jwks"``,
                ``"token"``, ``"introspection"``, ``"revocation"``.
            status: the HTTP status (200-599; e.g. 302 with a ``Location`` header).
            body: bytes are sent as is, a string UTF-8 encoded, a dict or list as JSON.
            content_type: the ``Content-Type`` (default: by type of ``body``:
                ``application/octet-stream``, ``text/plain; charset=utf-8`` or
                ``application/json``).
            headers: extra response headers.
            times: only the next ``times`` requests (default: until cleared).
        """
        _check_endpoint(endpoint)
        if not 200 <= status <= 599:
            raise ValueError("status must be between 200 and 599")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        if isinstance(body, bytes):
            data, default_type = body, "application/octet-stream"
        elif isinstance(body, str):
            data, default_type = body.encode(), "text/plain; charset=utf-8"
        else:
            data, default_type = json.dumps(body).encode(), "application/json"
        response_headers = (
            ("Content-Type", content_type or default_type),
            *(headers or {}).items(),
        )
        self._switches.set_failure(endpoint, HTTPResponse(status, response_headers, data), times)

    def clear_failures(self) -> None:
        """Remove every forced answer."""
        self._switches.clear_failures()

    def request_count(self, endpoint: str) -> int:
        """How many requests reached ``endpoint`` (forced failures included)."""
        _check_endpoint(endpoint)
        return self._switches.count(endpoint)

    def client_auth_count(self, endpoint: str, method: str) -> int:
        """How many requests to ``endpoint`` authenticated a client with ``method``
        (``"client_secret_basic"``, ``"client_secret_post"``, ``"private_key_jwt"`` or
        ``"bearer"``): proves which method a resource server really uses."""
        _check_endpoint(endpoint)
        return self._switches.client_auth_count(endpoint, method)

    def reset_counts(self) -> None:
        """Zero the request counters (and the client authentication counters)."""
        self._switches.reset_counts()

    def reset(self) -> None:
        """Undo every switch: failures, delays, counters, and come up if down.

        Keys, clients and issued tokens are kept.
        """
        with self._lock:
            self._switches.reset()
            if not self._stopped:
                self.come_up()

    # -- HTTP ---------------------------------------------------------------------------

    def _dispatch(self, request: HTTPRequest) -> HTTPResponse:
        runtime = self._started
        endpoint = runtime.routes.endpoint_for(request.path)
        if endpoint is None:
            return HTTPResponse(
                HTTPStatus.NOT_FOUND,
                (("Content-Type", "application/json"),),
                b'{"error":"not_found"}',
            )
        self._switches.record(endpoint)
        if request.rejection is not None:
            response = HTTPResponse(request.rejection, (), b"")
        else:
            self._switches.delay(endpoint)
            response = self._switches.take_failure(endpoint) or runtime.app.handle(
                endpoint, request
            )
        log.debug("%s %s -> %d", request.method, endpoint, response.status)
        return response
