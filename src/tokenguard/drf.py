"""Django REST framework: an authentication class and a scope permission.

Also importable from :mod:`tokenguard.django` (``tokenguard.django.TokenGuardAuthentication``,
``tokenguard.django.HasScopes``). The guard is the one :func:`tokenguard.django.get_guard`
builds from ``settings.TOKENGUARD``; DRF views are synchronous, so validation is
:meth:`TokenGuard.validate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import (
    APIException,
    AuthenticationFailed,
    NotAuthenticated,
    PermissionDenied,
)
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .django import TokenUser, _policy_name, _protection, _read
from .edge import Protection, Reply
from .errors import MissingToken, TokenGuardError
from .models import TokenInfo

if TYPE_CHECKING:
    from rest_framework.response import Response

__all__ = [
    "HasScopes",
    "TokenGuardAPIException",
    "TokenGuardAuthentication",
    "TokenGuardAuthenticationFailed",
    "TokenGuardNotAuthenticated",
    "TokenGuardPermissionDenied",
    "exception_handler",
]

# Where authenticate() leaves the challenge of a refused token for authenticate_header().
_CHALLENGE = "_tokenguard_challenge"


class TokenGuardAPIException(APIException):
    """A refused token as DRF renders it: the error's status, ``{"error",
    "error_description"}``, and the DRF attributes its exception handler turns into
    headers: ``auth_header`` (``WWW-Authenticate``) and ``wait`` (``Retry-After``, on a
    503). ``headers`` holds every header of the refusal (``Cache-Control``,
    ``DPoP-Nonce``...), which :func:`exception_handler` adds too.

    A 401 is raised as :class:`TokenGuardAuthenticationFailed` or
    :class:`TokenGuardNotAuthenticated` and a 403 as :class:`TokenGuardPermissionDenied`,
    so DRF (and an application's own exception handler) treats them as it treats its own.
    """

    def __init__(self, error: TokenGuardError, reply: Reply) -> None:
        super().__init__(detail=dict(reply.content))
        self.status_code = reply.status
        self.error = error
        self.reply = reply
        self.headers: dict[str, str] = {
            name: value for name, value in reply.headers if name != "Content-Type"
        }
        self.auth_header: str | None = self.headers.get("WWW-Authenticate")
        retry_after = self.headers.get("Retry-After")
        self.wait: int | None = int(retry_after) if retry_after is not None else None


class TokenGuardAuthenticationFailed(TokenGuardAPIException, AuthenticationFailed):
    """A token that was refused with a 401 (``invalid_token``, step-up...). DRF sets
    its ``WWW-Authenticate`` from the first authentication class's
    ``authenticate_header``, which for :class:`TokenGuardAuthentication` is this error's
    challenge."""


class TokenGuardNotAuthenticated(TokenGuardAPIException, NotAuthenticated):
    """No access token where one is required: 401 with the bare challenge (RFC 6750 §3.1)."""


class TokenGuardPermissionDenied(TokenGuardAPIException, PermissionDenied):
    """A valid token without the scopes the view requires: 403 ``insufficient_scope``."""


def _refusal(request: Request, protection: Protection, error: TokenGuardError) -> Exception:
    """The DRF exception for ``error``; its challenge is left on the request, where
    :meth:`TokenGuardAuthentication.authenticate_header` finds it when DRF asks for the
    ``WWW-Authenticate`` of a 401."""
    reply = protection.reply(error)
    setattr(request._request, _CHALLENGE, reply.header_map["WWW-Authenticate"])
    if isinstance(error, MissingToken):
        return TokenGuardNotAuthenticated(error, reply)
    if reply.status == 401:
        return TokenGuardAuthenticationFailed(error, reply)
    if reply.status == 403:
        return TokenGuardPermissionDenied(error, reply)
    return TokenGuardAPIException(error, reply)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, and for a refused token every header of the refusal:
    ``Retry-After`` exactly as tokenguard sent it (DRF's own skips a zero ``wait``),
    ``Cache-Control: no-store`` and a ``DPoP-Nonce`` when one is asked for. Set
    ``REST_FRAMEWORK["EXCEPTION_HANDLER"] = "tokenguard.drf.exception_handler"``."""
    # Imported here: rest_framework.views imports the authentication classes' modules.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, TokenGuardAPIException):
        for name, value in exc.headers.items():
            if name.lower() != "www-authenticate":  # DRF's choice (authenticate_header)
                response[name] = value
    return response


def _view_protection(request: Request, scopes: Iterable[str] = ()) -> Protection:
    view = (getattr(request, "parser_context", None) or {}).get("view")
    return _protection(
        _policy_name(getattr(view, "tokenguard_policy", None)),
        scopes,
        getattr(view, "tokenguard_acr_values", None),
        getattr(view, "tokenguard_max_age", None),
    )


class TokenGuardAuthentication(BaseAuthentication):
    """DRF authentication: ``request.auth`` is the :class:`~tokenguard.TokenInfo`,
    ``request.user`` a :class:`~tokenguard.django.TokenUser`.

    The view's ``tokenguard_policy`` picks the policy and ``tokenguard_acr_values`` /
    ``tokenguard_max_age`` add RFC 9470 step-up. No ``Authorization`` header (or another
    scheme): not authenticated here (DRF asks the next class, or the permission decides);
    a bad token: refused with its status and challenge. List this class first in
    ``DEFAULT_AUTHENTICATION_CLASSES``: DRF takes the ``WWW-Authenticate`` of a 401 from
    the first class (and answers 403 when that class has none).
    """

    def authenticate(self, request: Request) -> tuple[TokenUser, TokenInfo] | None:
        protection = _view_protection(request)
        try:
            info = protection.validate(_read(protection, request._request))
        except MissingToken:
            return None
        except TokenGuardError as error:
            raise _refusal(request, protection, error) from None
        return TokenUser(info), info

    def authenticate_header(self, request: Request) -> str:
        """The ``WWW-Authenticate`` of a 401: the refused token's challenge, or the bare
        one for a request without credentials (RFC 6750 §3.1)."""
        challenge = getattr(request._request, _CHALLENGE, None)
        if isinstance(challenge, str):
            return challenge
        return _view_protection(request).challenge(MissingToken())


class HasScopes(BasePermission):
    """DRF permission: the token must carry the view's ``required_scopes``.

    Without a validated token: 401 with the bare challenge; missing scopes: 403
    ``insufficient_scope`` naming every scope needed.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        protection = _view_protection(request, getattr(view, "required_scopes", ()))
        info = request.auth
        try:
            if not isinstance(info, TokenInfo):
                raise MissingToken()
            protection.authorize(info)
        except TokenGuardError as error:
            raise _refusal(request, protection, error) from None
        return True
