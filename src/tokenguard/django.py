"""Django and Django REST framework: the guard from ``settings.TOKENGUARD``, a DRF
authentication class and permission, and a decorator for plain Django views.

Install with ``pip install tokenguard[django]``. In ``settings.py``::

    TOKENGUARD = {  # what TokenGuard.from_config takes: a mapping, or a TOML file path
        "issuers": [{"issuer": "https://as.example.com"}],
        "policies": [{"name": "orders", "audience": "urn:orders"}],
    }
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["tokenguard.django.TokenGuardAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["tokenguard.django.HasScopes"],
    }

A DRF view picks its policy with ``tokenguard_policy`` and its scopes with
``required_scopes`` (RFC 9470 step-up with ``tokenguard_acr_values`` /
``tokenguard_max_age``); ``request.auth`` is the :class:`~tokenguard.TokenInfo` and
``request.user`` a :class:`TokenUser` built from the token: no database, no row is ever
created from a claim. Plain Django views use :func:`token_required`, sync or async.

Optional settings: ``TOKENGUARD_REALM`` (the challenges' realm), ``TOKENGUARD_RESOURCE``
(the RFC 9728 resource identifier: challenges carry ``resource_metadata`` and
:func:`metadata_urls` serves the document), ``TOKENGUARD_RESOURCE_METADATA`` (more
members for it), ``TOKENGUARD_ALLOW_FORM_TOKEN`` (an ``access_token`` POST parameter),
``TOKENGUARD_RETRY_AFTER`` (the ``Retry-After`` seconds of a 503 when the guard does not
know better; 5 by default), ``TOKENGUARD_CLIENT_CERTIFICATE_HEADER`` (the header a
trusted TLS-terminating proxy sets to the client certificate, for RFC 8705
certificate-bound tokens; none by default, see :class:`tokenguard.edge.Protection`).
With DRF, ``REST_FRAMEWORK["EXCEPTION_HANDLER"] =
"tokenguard.drf.exception_handler"`` also sends a refusal's other headers
(``Cache-Control: no-store``, ``DPoP-Nonce``).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from .config import Policy
from .edge import Protection, Reply, RequestView, metadata_location, route_requirements
from .errors import ConfigurationError, TokenGuardError
from .guard import TokenGuard
from .models import TokenInfo

if TYPE_CHECKING:
    from .drf import HasScopes, TokenGuardAPIException, TokenGuardAuthentication

__all__ = [
    "HasScopes",
    "TokenGuardAPIException",
    "TokenGuardAuthentication",
    "TokenUser",
    "get_guard",
    "metadata_urls",
    "read_request",
    "token_required",
]


class _State:
    """The guard built from the settings and the protections built from it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.guard: TokenGuard | None = None
        self.protections: dict[tuple[Any, ...], Protection] = {}


_state = _State()


def get_guard() -> TokenGuard:
    """The process-wide guard, built once from ``settings.TOKENGUARD``."""
    guard = _state.guard
    if guard is None:
        with _state.lock:
            guard = _state.guard
            if guard is None:
                source = getattr(settings, "TOKENGUARD", None)
                if source is None:
                    raise ConfigurationError("settings.TOKENGUARD is not set")
                guard = _state.guard = TokenGuard.from_config(source)
    return guard


def _reset(*, setting: str, **kwargs: Any) -> None:
    # override_settings (tests) and other setting changes: rebuild on next use.
    if setting.startswith("TOKENGUARD"):
        with _state.lock:
            old, _state.guard = _state.guard, None
            _state.protections.clear()
        if old is not None:
            old.close()


setting_changed.connect(_reset, dispatch_uid="tokenguard.django.reset")


def _protection(
    policy: str | None,
    scopes: str | Iterable[str] = (),
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
) -> Protection:
    """The protection for a view's requirements: built (and checked) once per distinct
    set, then a dict lookup."""
    key = (
        policy,
        (scopes,) if isinstance(scopes, str) else tuple(scopes),
        None if acr_values is None else tuple(acr_values),
        max_age,
    )
    protection = _state.protections.get(key)
    if protection is None:
        guard = get_guard()
        with _state.lock:
            protection = _state.protections.get(key)
            if protection is None:
                protection = _state.protections[key] = Protection(
                    guard,
                    policy,
                    scopes=key[1],
                    acr_values=key[2],
                    max_age=max_age,
                    realm=getattr(settings, "TOKENGUARD_REALM", None),
                    resource=getattr(settings, "TOKENGUARD_RESOURCE", None),
                    metadata=getattr(settings, "TOKENGUARD_RESOURCE_METADATA", None),
                    allow_form_token=getattr(settings, "TOKENGUARD_ALLOW_FORM_TOKEN", False),
                    retry_after=getattr(settings, "TOKENGUARD_RETRY_AFTER", 5),
                    client_certificate_header=getattr(
                        settings, "TOKENGUARD_CLIENT_CERTIFICATE_HEADER", None
                    ),
                )
    return protection


def _policy_name(policy: str | Policy | None) -> str | None:
    return policy.name if isinstance(policy, Policy) else policy


def read_request(request: HttpRequest) -> RequestView:
    """Read a Django request into plain values (the ``Authorization`` header as the
    server gave it: WSGI and ASGI servers join repeated headers into one value)."""
    meta = request.META

    def headers(name: str) -> tuple[str, ...]:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = meta.get(key)
        return () if value is None else (value,)

    return RequestView(
        method=request.method or "GET",
        headers=headers,
        query=meta.get("QUERY_STRING", ""),
        url=request.build_absolute_uri,
    )


def _read(protection: Protection, request: HttpRequest) -> RequestView:
    view = read_request(request)
    if request.method == "POST" and protection.wants_form(view):
        view = view.with_form(request.POST.getlist("access_token"))
    return view


def reply_response(reply: Reply) -> HttpResponse:
    """A Django response for an edge :class:`Reply`."""
    response = HttpResponse(reply.body, status=reply.status, content_type="application/json")
    for name, value in reply.headers:
        if name != "Content-Type":
            response[name] = value
    return response


class TokenUser:
    """``request.user`` for a validated token: what the token says, never a database row.

    ``username`` (and ``pk``/``id``) are the subject, or the client id of a token without
    one; the user has no permissions and no groups: authorise with scopes.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, token: TokenInfo) -> None:
        self.token = token
        self.username = token.subject or token.client_id or ""

    @property
    def pk(self) -> str:
        return self.username

    id = pk

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perm_list: Iterable[str], obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def get_all_permissions(self, obj: object = None) -> set[str]:
        return set()

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("a TokenUser comes from an access token and is never stored")

    delete = save

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return "TokenUser()"  # the username is a claim: kept out of reprs (and so of logs)


def _attach(request: HttpRequest, info: TokenInfo) -> None:
    request.user = TokenUser(info)
    request.auth = info


def token_required(
    policy: str | Policy | None = None,
    scopes: str | Iterable[str] = (),
    *,
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Protect a plain Django view (sync or ``async def``): the token must pass ``policy``
    and carry ``scopes`` (and meet the RFC 9470 step-up, when given). Inside the view,
    ``request.auth`` is the :class:`~tokenguard.TokenInfo` and ``request.user`` a
    :class:`TokenUser`. Async views validate with :meth:`TokenGuard.avalidate`.

    A guard that cannot be built from the settings is a configuration error, raised
    (Django's 500) rather than answered as a token problem.
    """
    name = _policy_name(policy)
    needs = route_requirements(scopes, acr_values, max_age)  # fail at import time

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                protection = _protection(name, *needs)
                try:
                    info = await protection.avalidate(_read(protection, request))
                except TokenGuardError as error:
                    return reply_response(protection.reply(error))
                _attach(request, info)
                return await view(request, *args, **kwargs)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            protection = _protection(name, *needs)
            try:
                info = protection.validate(_read(protection, request))
            except TokenGuardError as error:
                return reply_response(protection.reply(error))
            _attach(request, info)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def metadata_urls(policy: str | Policy | None = None) -> list[URLPattern]:
    """URL patterns serving the RFC 9728 metadata of ``settings.TOKENGUARD_RESOURCE``
    (add them to ``urlpatterns``); ``policy`` gives its issuers and scopes."""
    resource = getattr(settings, "TOKENGUARD_RESOURCE", None)
    if resource is None:
        raise ConfigurationError("settings.TOKENGUARD_RESOURCE is not set")
    route, _ = metadata_location(resource)
    name = _policy_name(policy)

    def protected_resource_metadata(request: HttpRequest) -> HttpResponse:
        return reply_response(_protection(name).metadata_reply())

    return [path(route.lstrip("/"), protected_resource_metadata)]


_DRF_NAMES = frozenset({"HasScopes", "TokenGuardAPIException", "TokenGuardAuthentication"})


def __getattr__(name: str) -> Any:
    # The DRF classes live in tokenguard.drf, imported only when asked for, so plain
    # Django works without Django REST framework installed.
    if name in _DRF_NAMES:
        from . import drf

        return getattr(drf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
