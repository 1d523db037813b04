"""Flask: a view decorator and ``current_token``.

Install with ``pip install tokenguard[flask]``::

    from flask import Flask
    from tokenguard.flask import current_token, require_token

    app = Flask(__name__)

    @app.get("/orders")
    @require_token(guard, "orders", scopes=["orders:read"])
    def orders():
        return {"subject": current_token.subject}

Validation is synchronous (:meth:`TokenGuard.validate`), as Flask is; an ``async def``
view is awaited by Flask after the token has been checked. A refused request gets the
error's status, its ``WWW-Authenticate`` challenge (``Retry-After`` on 503) and a small
JSON body (``error``, ``error_description``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, cast

from flask import Blueprint, Response, current_app, g, request
from werkzeug.local import LocalProxy

from .config import Policy
from .edge import Protection, Reply, RequestView
from .errors import TokenGuardError
from .guard import TokenGuard
from .models import TokenInfo

__all__ = ["current_token", "metadata_blueprint", "read_request", "require_token"]

_P = ParamSpec("_P")
_G_KEY = "tokenguard_token"


def _current() -> TokenInfo:
    token = g.get(_G_KEY)
    if token is None:
        raise RuntimeError("current_token is only set inside a view protected by require_token")
    return cast(TokenInfo, token)


#: The :class:`~tokenguard.TokenInfo` of the current request (inside a protected view).
current_token: TokenInfo = LocalProxy(_current)  # type: ignore[assignment]


def read_request() -> RequestView:
    """Read Flask's current request into plain values."""
    environ = request.environ
    return RequestView(
        method=request.method,
        headers=request.headers.getlist,
        query=environ.get("QUERY_STRING", ""),
        url=lambda: request.url,
    )


def reply_response(reply: Reply) -> Response:
    """A Flask response for an edge :class:`Reply`."""
    return Response(reply.body, reply.status, headers=list(reply.headers))


def require_token(
    guard: TokenGuard,
    policy: str | Policy | None = None,
    scopes: str | Iterable[str] = (),
    *,
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
    realm: str | None = None,
    resource: str | None = None,
    allow_form_token: bool = False,
    retry_after: int = 5,
    client_certificate_header: str | None = None,
) -> Callable[[Callable[_P, Any]], Callable[_P, Any]]:
    """Protect a Flask view: the token must pass ``policy`` and carry ``scopes``
    (and meet the RFC 9470 ``acr_values`` / ``max_age`` step-up, when given).

    ``realm``, ``resource``, ``allow_form_token``, ``retry_after`` and
    ``client_certificate_header`` (the header a trusted TLS-terminating proxy sets to
    the client certificate, RFC 8705; off by default) are those of
    :class:`tokenguard.edge.Protection`; with ``functools.partial`` an application sets
    them once for all its views.
    """
    protection = Protection(
        guard,
        policy,
        scopes=scopes,
        acr_values=acr_values,
        max_age=max_age,
        realm=realm,
        resource=resource,
        allow_form_token=allow_form_token,
        retry_after=retry_after,
        client_certificate_header=client_certificate_header,
    )

    def decorate(view: Callable[_P, Any]) -> Callable[_P, Any]:
        @functools.wraps(view)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            view_request = read_request()
            try:
                if protection.wants_form(view_request):
                    view_request = view_request.with_form(request.form.getlist("access_token"))
                info = protection.validate(view_request)
            except TokenGuardError as error:
                return reply_response(protection.reply(error))
            setattr(g, _G_KEY, info)
            return current_app.ensure_sync(view)(*args, **kwargs)

        return wrapper

    return decorate


def metadata_blueprint(
    guard: TokenGuard,
    policy: str | Policy | None = None,
    *,
    resource: str,
    scopes: str | Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    name: str = "tokenguard_metadata",
) -> Blueprint:
    """A blueprint serving the RFC 9728 protected resource metadata of ``resource``;
    give the same ``resource`` to :func:`require_token` so challenges point at it."""
    protection = Protection(guard, policy, scopes=scopes, resource=resource, metadata=metadata)
    reply = protection.metadata_reply()
    assert protection.metadata_path is not None
    blueprint = Blueprint(name, __name__)

    @blueprint.get(protection.metadata_path)
    def protected_resource_metadata() -> Response:
        return reply_response(reply)

    return blueprint
