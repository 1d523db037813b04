"""FastAPI: a security dependency that gives the validated :class:`~tokenguard.TokenInfo`.

Install with ``pip install tokenguard[fastapi]``::

    from typing import Annotated
    from fastapi import FastAPI, Security
    from tokenguard import TokenInfo
    from tokenguard.fastapi import TokenGuardBearer

    auth = TokenGuardBearer(guard, "orders")
    app = FastAPI()

    @app.get("/orders")
    async def orders(info: Annotated[TokenInfo, Security(auth, scopes=["orders:read"])]):
        return {"subject": info.subject}

Scopes declared with ``Security(...)`` on the route and its sub-dependencies are merged
by FastAPI (``SecurityScopes``) and required on top of the policy's; the scheme and the
scopes appear in the OpenAPI document, so ``/docs`` shows the lock. Validation is async
(:meth:`TokenGuard.avalidate`) and never blocks the event loop.

A refused request is answered by FastAPI's ``HTTPException`` handler with the error's
status, its ``WWW-Authenticate`` challenge (``Retry-After`` on 503) and, as FastAPI does
for every error, the body under ``detail``: ``{"detail": {"error": ..., "error_description":
...}}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlows as OAuthFlowsModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection
from starlette.responses import Response

from .config import Policy
from .edge import Protection, Reply
from .errors import InvalidRequest, MissingToken, TokenGuardError
from .guard import TokenGuard
from .models import TokenInfo
from .starlette import read_request, reply_response

__all__ = ["TokenGuardBearer", "TokenGuardHTTPException"]

# RFC 6750 §2.2 bodies are small; a larger one is not read for a token.
_MAX_FORM_BYTES = 64 * 1024


class TokenGuardHTTPException(HTTPException):
    """The ``HTTPException`` a refused request raises; ``error`` is the tokenguard error
    and ``reply`` the edge reply (for an application's own exception handler)."""

    def __init__(self, error: TokenGuardError, reply: Reply) -> None:
        headers = {name: value for name, value in reply.headers if name != "Content-Type"}
        super().__init__(reply.status, detail=dict(reply.content), headers=headers)
        self.error = error
        self.reply = reply


class TokenGuardBearer(SecurityBase):
    """A FastAPI security dependency validating ``Authorization: Bearer`` tokens.

    Args:
        guard: the :class:`~tokenguard.TokenGuard`.
        policy: the policy name; optional when the guard has one.
        scheme_name: the name of the security scheme in OpenAPI (default: the class name).
        description: its OpenAPI description.
        flows: OAuth 2.0 flows (an ``OAuthFlows`` model or a mapping, e.g.
            ``{"clientCredentials": {"tokenUrl": ..., "scopes": {...}}}``): the scheme is
            then published as OAuth2, so ``/docs`` can obtain tokens; else as HTTP
            ``bearer`` (``DPoP`` when the policy has ``dpop="required"``). OpenAPI lists
            the scopes declared with ``Security(..., scopes=...)``; declare a route's
            scopes there rather than in ``scopes`` below, so its document shows them.
        bearer_format: the ``bearerFormat`` hint of the HTTP bearer scheme.
        auto_error: when False, a request without credentials gives ``None`` instead of
            401 (optional authentication); a bad token is still refused.
        scopes, acr_values, max_age: required by every route using this instance, on
            top of the policy (RFC 9470 step-up for the last two).
        realm, resource, metadata, allow_form_token, retry_after: see
            :class:`tokenguard.edge.Protection`.
        client_certificate_header: the header a trusted TLS-terminating proxy sets to
            the client certificate (RFC 8705); off by default, when the certificate of
            the ASGI TLS extension is used if the server provides it. See
            :class:`tokenguard.edge.Protection`.
    """

    def __init__(
        self,
        guard: TokenGuard,
        policy: str | Policy | None = None,
        *,
        scheme_name: str | None = None,
        description: str | None = None,
        flows: OAuthFlowsModel | Mapping[str, Any] | None = None,
        bearer_format: str | None = None,
        auto_error: bool = True,
        scopes: str | Iterable[str] = (),
        acr_values: Iterable[str] | None = None,
        max_age: int | None = None,
        realm: str | None = None,
        resource: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        allow_form_token: bool = False,
        retry_after: int = 5,
        client_certificate_header: str | None = None,
    ) -> None:
        self.protection = Protection(
            guard,
            policy,
            scopes=scopes,
            acr_values=acr_values,
            max_age=max_age,
            realm=realm,
            resource=resource,
            metadata=metadata,
            allow_form_token=allow_form_token,
            retry_after=retry_after,
            client_certificate_header=client_certificate_header,
        )
        self.model: HTTPBaseModel | OAuth2Model
        if flows is None and self.protection.policy.dpop == "required":
            # Every token must be DPoP-bound (RFC 9449 §7.1): the HTTP scheme is DPoP.
            self.model = HTTPBaseModel(scheme="DPoP", description=description)
        elif flows is None:
            self.model = HTTPBearerModel(bearerFormat=bearer_format, description=description)
        else:
            if not isinstance(flows, OAuthFlowsModel):
                flows = OAuthFlowsModel.model_validate(dict(flows))
            self.model = OAuth2Model(flows=flows, description=description)
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    async def __call__(self, request: HTTPConnection, security_scopes: SecurityScopes) -> TokenInfo:
        protection = self.protection
        try:
            view = read_request(request)  # HTTPConnection: HTTP routes and WebSockets alike
            if isinstance(request, Request) and protection.wants_form(view):
                view = view.with_form(await _form_tokens(request))
            return await protection.avalidate(view, security_scopes.scopes)
        except MissingToken as error:
            if not self.auto_error:
                return None  # type: ignore[return-value]  # documented: optional auth
            raise TokenGuardHTTPException(error, protection.reply(error)) from None
        except TokenGuardError as error:
            raise TokenGuardHTTPException(error, protection.reply(error)) from None

    def metadata_router(self) -> APIRouter:
        """A router serving the RFC 9728 metadata document (needs ``resource``); it is
        left out of the OpenAPI schema."""
        protection = self.protection
        reply = protection.metadata_reply()
        assert protection.metadata_path is not None
        router = APIRouter()

        async def protected_resource_metadata() -> Response:
            return reply_response(reply)

        router.add_api_route(
            protection.metadata_path,
            protected_resource_metadata,
            methods=["GET"],
            include_in_schema=False,
        )
        return router


async def _form_tokens(request: Request) -> list[str]:
    """The ``access_token`` values of an urlencoded body, read at most once and bounded;
    what was read stays on the request (Starlette's own caches) for the route."""
    form = getattr(request, "_form", None)
    if form is not None:  # FastAPI parsed it already for the route's Form parameters
        return [value for value in form.getlist("access_token") if isinstance(value, str)]
    body: bytes | None = getattr(request, "_body", None)
    if body is None:
        length = request.headers.get("content-length")
        small = length is not None and length.isdigit() and int(length) <= _MAX_FORM_BYTES
        if not small and "authorization" in request.headers:
            # The token comes in the header: a large (or unsized) form is the route's,
            # left unread here rather than refused.
            return []
        if length is not None and not small:
            raise InvalidRequest("The form body is too large to carry an access token")
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > _MAX_FORM_BYTES:
                raise InvalidRequest("The form body is too large to carry an access token")
        body = request._body = bytes(chunks)  # Starlette's cache: the route reads it again
    try:
        fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=1000)
    except ValueError:
        raise InvalidRequest("The form body is malformed") from None
    return [value for name, value in fields if name == "access_token"]
