"""Django REST framework: an authentication class and a scope permission.

Also importable from :mod:`tokenguard.django` (``tokenguard.django.TokenGuardAuthentication``,
``tokenguard.django.HasScopes``). The guard is the one :func:`tokenguard.django.get_guard`
builds from ``settings.TOKENGUARD``; DRF views are synchronous, so validation is
:meth:`TokenGuard.validate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .django import TokenUser, _policy_name, _protection, _read
from .edge import Protection, Reply
from .errors import MissingToken, TokenGuardError
from .models import TokenInfo

__all__ = ["HasScopes", "TokenGuardAPIException", "TokenGuardAuthentication"]


class TokenGuardAPIException(APIException):
    """A refused token as DRF renders it: the error's status, its challenge
    (``auth_header``), ``Retry-After`` (``wait``) and ``{"error", "error_description"}``."""

    def __init__(self, error: TokenGuardError, reply: Reply) -> None:
        super().__init__(detail=dict(reply.content))
        self.status_code = reply.status
        self.error = error
        headers = reply.header_map
        self.auth_header = headers.get("WWW-Authenticate")
        self.wait = int(headers["Retry-After"]) if "Retry-After" in headers else None


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
    ``tokenguard_max_age`` add RFC 9470 step-up. No ``Authorization`` header: not
    authenticated here (DRF asks the next class, or the permission decides); a bad token:
    refused with its status and challenge.
    """

    def authenticate(self, request: Request) -> tuple[TokenUser, TokenInfo] | None:
        protection = _view_protection(request)
        try:
            info = protection.validate(_read(protection, request._request))
        except MissingToken:
            return None
        except TokenGuardError as error:
            raise TokenGuardAPIException(error, protection.reply(error)) from None
        return TokenUser(info), info

    def authenticate_header(self, request: Request) -> str:
        """The bare challenge for a request without credentials (RFC 6750 §3.1)."""
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
            raise TokenGuardAPIException(error, protection.reply(error)) from None
        return True
