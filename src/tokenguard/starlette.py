"""Starlette: an authentication backend, a route decorator and the RFC 9728 route.

Install with ``pip install tokenguard[starlette]``::

    from starlette.applications import Starlette
    from tokenguard.starlette import TokenGuardBackend, require_token

    backend = TokenGuardBackend(guard, "orders")

    @require_token(["orders:read"])
    async def orders(request):
        return JSONResponse({"subject": request.user.identity})

    app = Starlette(routes=[Route("/orders", orders)], middleware=[backend.middleware()])

A request without an ``Authorization`` header is anonymous (public routes stay public;
:func:`require_token` answers it with the bare 401 challenge); a bad token is answered
at once with its status and challenge, never treated as anonymous. ``request.auth.scopes``
are the token's scopes (so Starlette's own ``@requires`` works), ``request.auth.token``
is the :class:`~tokenguard.TokenInfo`, ``request.user.identity`` the subject (or the
client id of a token without one).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .config import Policy
from .edge import Protection, Reply, RequestView, route_requirements
from .errors import MissingToken, TokenGuardError
from .guard import TokenGuard
from .models import TokenInfo

__all__ = [
    "TokenGuardAuthError",
    "TokenGuardBackend",
    "TokenGuardCredentials",
    "TokenGuardUser",
    "read_request",
    "reply_response",
    "require_token",
    "tls_client_certificate",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Where the backend leaves its :class:`Protection` in the ASGI scope, for the decorator.
SCOPE_KEY = "tokenguard.protection"


def read_request(conn: HTTPConnection) -> RequestView:
    """Read an ASGI request (Starlette or FastAPI) into plain values, with the client
    certificate of the ASGI TLS extension when the server provides it."""
    scope = conn.scope
    headers = conn.headers
    return RequestView(
        method=scope.get("method", "GET"),
        headers=headers.getlist,
        query=scope.get("query_string", b"").decode("latin-1"),
        url=lambda: str(conn.url),
        client_certificate=tls_client_certificate(scope),
    )


def tls_client_certificate(scope: Mapping[str, Any]) -> str | None:
    """The client certificate (PEM) of the ASGI TLS extension: the first entry of
    ``scope["extensions"]["tls"]["client_cert_chain"]``; None when the server does not
    provide the extension or the client sent no certificate."""
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    chain = tls.get("client_cert_chain") if isinstance(tls, Mapping) else None
    if not isinstance(chain, list | tuple) or not chain:
        return None
    first = chain[0]
    return first if isinstance(first, str) and first else None


def reply_response(reply: Reply) -> Response:
    """A Starlette response for an edge :class:`Reply`."""
    return Response(reply.body, reply.status, headers=reply.header_map)


class TokenGuardUser(BaseUser):
    """The user behind a validated token: no database, only what the token says."""

    def __init__(self, token: TokenInfo) -> None:
        self.token = token

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def identity(self) -> str:
        """The subject (``sub``), or the client id of a token without one."""
        return self.token.subject or self.token.client_id or ""

    @property
    def display_name(self) -> str:
        return self.token.username or self.identity

    def __repr__(self) -> str:
        return "TokenGuardUser()"  # the identity is a claim: kept out of reprs (and logs)


class TokenGuardCredentials(AuthCredentials):
    """``request.auth``: the token's scopes, and the :class:`TokenInfo` as ``token``."""

    def __init__(self, token: TokenInfo) -> None:
        super().__init__(sorted(token.scopes))
        self.token = token


class TokenGuardAuthError(AuthenticationError):
    """A refused token, carried to :meth:`TokenGuardBackend.on_error`."""

    def __init__(self, error: TokenGuardError, reply: Reply) -> None:
        super().__init__(error.description)
        self.error = error
        self.reply = reply


class TokenGuardBackend(AuthenticationBackend):
    """Validates the bearer token of every request for ``AuthenticationMiddleware``.

    Args:
        guard: the :class:`~tokenguard.TokenGuard`.
        policy: the policy name; optional when the guard has one.
        realm, resource, metadata, retry_after: see :class:`tokenguard.edge.Protection`
            (``resource`` enables RFC 9728: :meth:`metadata_route` and
            ``resource_metadata`` in challenges).
        client_certificate_header: the header a trusted TLS-terminating proxy sets to
            the client certificate (RFC 8705); off by default, when the certificate of
            the ASGI TLS extension is used if the server provides it. See
            :class:`tokenguard.edge.Protection`.

    Pass :meth:`on_error` to the middleware (or use :meth:`middleware`), so a refused
    token gets its status and challenge rather than Starlette's plain 400.
    """

    def __init__(
        self,
        guard: TokenGuard,
        policy: str | Policy | None = None,
        *,
        realm: str | None = None,
        resource: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        retry_after: int = 5,
        client_certificate_header: str | None = None,
    ) -> None:
        self.protection = Protection(
            guard,
            policy,
            realm=realm,
            resource=resource,
            metadata=metadata,
            retry_after=retry_after,
            client_certificate_header=client_certificate_header,
        )

    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[TokenGuardCredentials, TokenGuardUser] | None:
        protection = self.protection
        conn.scope[SCOPE_KEY] = protection
        try:
            info = await protection.avalidate(read_request(conn))
        except MissingToken:
            return None  # anonymous: a public route stays public
        except TokenGuardError as error:
            raise TokenGuardAuthError(error, protection.reply(error)) from None
        return TokenGuardCredentials(info), TokenGuardUser(info)

    @staticmethod
    def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """``AuthenticationMiddleware``'s ``on_error``: the refused token's response."""
        if isinstance(exc, TokenGuardAuthError):
            return reply_response(exc.reply)
        return PlainTextResponse(str(exc), status_code=400)

    def middleware(self) -> Middleware:
        """``Middleware(AuthenticationMiddleware, backend=self, on_error=self.on_error)``."""
        return Middleware(AuthenticationMiddleware, backend=self, on_error=self.on_error)

    def metadata_route(self) -> Route:
        """The route serving the RFC 9728 metadata document (needs ``resource``)."""
        protection = self.protection
        reply = protection.metadata_reply()
        assert protection.metadata_path is not None

        async def metadata(request: Request) -> Response:
            return reply_response(reply)

        return Route(protection.metadata_path, metadata, methods=["GET"])


def require_token(
    scopes: str | Iterable[str] = (),
    *,
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
) -> Callable[[Callable[_P, Any]], Callable[_P, Any]]:
    """Protect a Starlette endpoint (sync or async, function or method with a ``request``
    parameter): anonymous → 401 with the bare challenge; missing scopes → 403
    ``insufficient_scope``; step-up not met → 401 ``insufficient_user_authentication``.

    The token itself was validated by :class:`TokenGuardBackend`, which must be installed.
    """

    def decorate(endpoint: Callable[_P, Any]) -> Callable[_P, Any]:
        names = list(inspect.signature(endpoint).parameters)
        if "request" not in names:
            raise TypeError(f"{endpoint!r} has no 'request' parameter")
        index = names.index("request")
        route_requirements(scopes, acr_values, max_age)  # fail at import, not per request
        derived: dict[Protection, Protection] = {}

        def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Response | None:
            request = kwargs["request"] if "request" in kwargs else args[index]
            base = request.scope.get(SCOPE_KEY)
            if not isinstance(base, Protection):
                raise RuntimeError("require_token needs TokenGuardBackend's middleware")
            # One derived protection per backend: built once, then reused.
            protection = derived.get(base)
            if protection is None:
                protection = derived[base] = base.derive(
                    scopes=scopes, acr_values=acr_values, max_age=max_age
                )
            auth = request.scope.get("auth")
            try:
                if not isinstance(auth, TokenGuardCredentials):
                    raise MissingToken()
                protection.authorize(auth.token)
            except TokenGuardError as error:
                return reply_response(protection.reply(error))
            return None

        if inspect.iscoroutinefunction(endpoint):
            async_endpoint: Callable[_P, Awaitable[Any]] = endpoint

            @functools.wraps(endpoint)
            async def async_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                refused = check(args, kwargs)
                if refused is not None:
                    return refused
                return await async_endpoint(*args, **kwargs)

            return async_wrapper

        @functools.wraps(endpoint)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            refused = check(args, kwargs)
            if refused is not None:
                return refused
            return endpoint(*args, **kwargs)

        return wrapper

    return decorate
