"""MCP servers: a ``TokenVerifier`` for the official MCP Python SDK (``mcp``).

Install with ``pip install tokenguard[mcp]``::

    from mcp.server.mcpserver import MCPServer   # mcp 2.x (FastMCP in 1.x)
    from tokenguard.mcp import TokenGuardVerifier

    verifier = TokenGuardVerifier(guard, "mcp")
    server = MCPServer(
        "orders",
        token_verifier=verifier,
        auth=verifier.auth_settings("https://mcp.example.com/mcp", required_scopes=["mcp"]),
    )
    app = verifier.protect(server.streamable_http_app())   # serve with uvicorn

Every MCP request is validated by tokenguard (async, never blocking the loop); the SDK's
``AccessToken`` is filled from the :class:`~tokenguard.TokenInfo`. An invalid token gets
the SDK's own 401 with its RFC 9728 challenge, missing ``AuthSettings.required_scopes``
its own 403. What the SDK cannot express (tokenguard's 503 when the authorization server
is unreachable, RFC 9470 step-up, the policy's own scopes) :meth:`TokenGuardVerifier.protect`
answers with the right status, challenge and ``Retry-After``; without it the SDK answers
those with a plain 400, never a 401 that would make a client throw its token away.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from starlette.applications import Starlette
from starlette.authentication import AuthenticationError
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import Response

from .config import Policy
from .edge import Protection
from .errors import InvalidToken, MissingToken, TokenGuardError
from .guard import TokenGuard
from .models import TokenInfo
from .starlette import TokenGuardAuthError, TokenGuardBackend

__all__ = ["TokenGuardVerifier"]


class TokenGuardVerifier:
    """The MCP SDK's ``TokenVerifier`` protocol, implemented with a tokenguard guard.

    Args:
        guard: the :class:`~tokenguard.TokenGuard`.
        policy: the policy name; optional when the guard has one.
        resource: the MCP server's URL (its RFC 9728 resource identifier); set by
            :meth:`auth_settings` too. Challenges written by :meth:`protect` then carry
            ``resource_metadata``, as the SDK's own do.
        retry_after: the ``Retry-After`` seconds sent with a 503.
    """

    def __init__(
        self,
        guard: TokenGuard,
        policy: str | Policy | None = None,
        *,
        resource: str | None = None,
        retry_after: int = 5,
    ) -> None:
        self.guard = guard
        self._policy = policy
        self._retry_after = retry_after
        self.protection = Protection(guard, policy, resource=resource, retry_after=retry_after)

    async def verify_token(self, token: str) -> AccessToken | None:
        """An ``AccessToken`` for a valid token; ``None`` for an invalid one (the SDK
        answers 401). Any other refusal (503, step-up, the policy's scopes) is raised for
        :meth:`protect`'s handler, so it is never reported as a bad token."""
        protection = self.protection
        try:
            info = await self.guard.avalidate(token, protection.policy_name)
        except (InvalidToken, MissingToken):
            return None
        except TokenGuardError as error:
            raise TokenGuardAuthError(error, protection.reply(error)) from None
        return self.access_token(token, info)

    def access_token(self, token: str, info: TokenInfo) -> AccessToken:
        """The SDK's ``AccessToken`` for a validated token: client id, subject, scopes,
        expiry, the resource (the policy's audience, which the token carries) and the
        claims (``iss`` among them, which the SDK uses to tell principals apart)."""
        expires = info.claims.get("exp")
        return AccessToken(
            token=token,
            client_id=info.client_id or info.subject or "",
            scopes=sorted(info.scopes),
            expires_at=None if expires is None else int(expires),
            resource=self.protection.policy.audience,
            subject=info.subject,
            claims={"iss": info.issuer, **info.model_dump(include={"claims"})["claims"]},
        )

    def auth_settings(
        self,
        resource_server_url: str,
        *,
        required_scopes: Iterable[str] | None = None,
        **settings: Any,
    ) -> AuthSettings:
        """``AuthSettings`` for this server as a resource server: the policy's issuer as
        ``issuer_url``, ``resource_server_url`` (the RFC 9728 resource, also used in
        :meth:`protect`'s challenges) and the scopes the SDK itself requires.

        ``validate_token_resource`` defaults to False: tokenguard has checked the
        audience already.
        """
        policy = self.protection.policy
        issuers = policy.issuers or [i.issuer for i in self.guard.config.issuers]
        settings.setdefault("issuer_url", issuers[0])
        settings.setdefault("validate_token_resource", False)
        if resource_server_url != self.protection.resource:
            self.protection = Protection(
                self.guard,
                self._policy,
                resource=resource_server_url,
                retry_after=self._retry_after,
            )
        return AuthSettings(
            resource_server_url=resource_server_url,
            required_scopes=None if required_scopes is None else list(required_scopes),
            **settings,
        )

    def on_error(self, conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """``AuthenticationMiddleware``'s ``on_error`` for the SDK's app."""
        return TokenGuardBackend.on_error(conn, exc)

    def protect(self, app: Starlette) -> Starlette:
        """Make the SDK's app (``server.streamable_http_app()``) answer what its bearer
        middleware cannot (503 with ``Retry-After``, RFC 9470 step-up, the policy's own
        scopes) with tokenguard's status and challenge. Call before serving."""
        if app.middleware_stack is not None:
            raise RuntimeError("protect() must be called before the app serves requests")
        found = False
        for index, entry in enumerate(app.user_middleware):
            backend = entry.kwargs.get("backend")
            cls: object = entry.cls
            if cls is AuthenticationMiddleware and isinstance(backend, BearerAuthBackend):
                if backend.token_verifier is not self:
                    continue
                app.user_middleware[index] = Middleware(
                    AuthenticationMiddleware, backend=backend, on_error=self.on_error
                )
                found = True
        if not found:
            raise RuntimeError("the app does not authenticate with this TokenGuardVerifier")
        return app
