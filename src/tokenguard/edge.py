"""What every framework adapter shares, written once and free of any framework.

An adapter reads its framework's request into a :class:`RequestView` (plain values),
hands it to a :class:`Protection`, and writes back either the :class:`TokenInfo` or the
:class:`Reply` it gets for an error. Everything in between is here:

* reading the access token by the RFC 6750 rules: one ``Authorization: Bearer`` header,
  read by RFC 9110 §11.4 (:func:`tokenguard.bearer.parse_authorization`: two headers,
  one value holding two credentials, or a malformed one are ``400 invalid_request``); a
  token in the query string is refused (§2.3); a form-body token (§2.2) only when the
  adapter opts in;
* validating it (:meth:`TokenGuard.validate` or ``avalidate``) and checking what the
  route requires on top of the policy: scopes, RFC 9470 step-up;
* the error response: the error's status, its ``WWW-Authenticate`` challenge (with
  ``resource_metadata``, RFC 9728 §5.1), a small JSON body (``error``,
  ``error_description``), one ``Retry-After`` on 503 (the guard's own when it knows).
  A request without credentials gets the bare challenge without an error code (RFC 6750
  §3.1); every challenge offers the schemes the policy accepts. Never the token, never a
  claim;
* the RFC 9728 protected resource metadata document and where it is served;
* sender-constrained tokens: ``Authorization: DPoP <token>`` with its ``DPoP`` header,
  method and URL (RFC 9449 §7.1), and the client certificate an adapter or the gateway
  found (RFC 8705), handed to the guard (:meth:`Protection.credentials`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from .bearer import is_token68, parse_authorization
from .config import SCOPE_TOKEN, Policy
from .core.dpop import DPoPProof
from .core.mtls import ClientCertificate, forwarded_certificate
from .errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    MissingToken,
    TokenGuardError,
    ValidationUnavailable,
)
from .guard import TokenGuard
from .models import TokenInfo

__all__ = [
    "METADATA_PATH",
    "Credentials",
    "Protection",
    "Reply",
    "RequestView",
    "metadata_location",
    "route_requirements",
]

log = logging.getLogger("tokenguard.edge")

#: RFC 9728 §3: the well-known path, inserted between the host and the resource's path.
METADATA_PATH: Final = "/.well-known/oauth-protected-resource"

_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# RFC 6750 §2.2: never GET; only methods whose request body has defined semantics.
_FORM_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON: Final = "application/json"
_SCHEMES = frozenset({"Bearer", "DPoP"})
_REALM = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_SERVER_ERROR_DESCRIPTION = "The access token could not be checked"
# RFC 9110 §5.1 field-name (a token).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _no_headers(name: str) -> Sequence[str]:
    return ()


@dataclass(frozen=True, slots=True)
class RequestView:
    """One HTTP request as plain values, read by an adapter; nothing framework-specific.

    Attributes:
        method: the HTTP method, upper case.
        headers: every value of a header, by lower-case name (``headers("authorization")``);
            a header sent twice gives two values where the server keeps them apart.
        query: the raw query string (without ``?``).
        url: builds the absolute request URL when a rule needs it (never on the hot path).
        form_tokens: the ``access_token`` values of a form body, read by the adapter only
            when :meth:`Protection.wants_form` said so.
        client_certificate: the client certificate of the request's TLS connection, as
            the server reports it (PEM or DER); None when there is none. A proxy header
            is read by :class:`Protection` (``client_certificate_header``), not here.
    """

    method: str = "GET"
    headers: Callable[[str], Sequence[str]] = _no_headers
    query: str = ""
    url: Callable[[], str] | None = None
    form_tokens: tuple[str, ...] = ()
    client_certificate: ClientCertificate | None = None

    def with_form(self, tokens: Iterable[str]) -> RequestView:
        """This view with the ``access_token`` values read from a form body."""
        return replace(self, form_tokens=tuple(tokens))


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presents, for :meth:`TokenGuard.validate`: the access token, the
    DPoP context (None for a bearer request without a ``DPoP`` header) and the client
    certificate."""

    token: str = field(repr=False)
    dpop: DPoPProof | None = None
    client_certificate: ClientCertificate | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Reply:
    """A response for the adapter to write: status, headers and a JSON body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content: Mapping[str, Any]

    @property
    def header_map(self) -> dict[str, str]:
        """The headers as a dict (header names are unique here)."""
        return dict(self.headers)


def metadata_location(resource: str) -> tuple[str, str]:
    """The RFC 9728 metadata ``(path, url)`` of a resource identifier (§3.1): the
    well-known path goes between the host and the resource's own path.

    The resource must be an ``https`` URL (``http`` only on a loopback host, for
    development) without query or fragment; anything else raises ConfigurationError.
    """
    try:
        parts = urlsplit(resource)
        hostname = parts.hostname
    except ValueError:
        raise ConfigurationError("resource must be an absolute https URL") from None
    if parts.scheme not in ("https", "http") or not hostname or parts.query or parts.fragment:
        raise ConfigurationError("resource must be an https URL without query or fragment")
    if parts.scheme == "http" and not _loopback(hostname):
        raise ConfigurationError("resource must use https (http only on a loopback host)")
    suffix = parts.path.rstrip("/")
    path = METADATA_PATH + suffix
    return path, f"{parts.scheme}://{parts.netloc}{path}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_policy(guard: TokenGuard, policy: str | Policy | None) -> Policy:
    policies = guard.config.policies
    if policy is None:
        if len(policies) != 1:
            raise ConfigurationError("several policies are configured: name one")
        return policies[0]
    name = policy.name if isinstance(policy, Policy) else policy
    for candidate in policies:
        if candidate.name == name and (not isinstance(policy, Policy) or candidate == policy):
            return candidate
    raise ConfigurationError("unknown policy")


def _scope_list(scopes: str | Iterable[str]) -> tuple[str, ...]:
    items = (scopes,) if isinstance(scopes, str) else tuple(scopes)
    # RFC 6749 §3.3 scope-token: what the challenge's scope parameter can carry as is.
    if any(not isinstance(s, str) or not SCOPE_TOKEN.fullmatch(s) for s in items):
        raise ConfigurationError(
            "scopes must be non-empty strings of visible ASCII without spaces, quotes "
            "or backslashes (RFC 6749 §3.3)"
        )
    return items


def route_requirements(
    scopes: str | Iterable[str] = (),
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...] | None, int | None]:
    """Check a route's requirements when it is declared (so a mistake fails at start-up,
    not on a request); return them normalised. Raises ConfigurationError."""
    values = None if acr_values is None else tuple(acr_values)
    try:
        # The core's own check of the values, run on a token without acr or auth_time
        # (so valid values fail with InsufficientUserAuthentication, bad ones ValueError).
        TokenInfo().require_authentication(values, max_age)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    except TokenGuardError:
        pass
    return _scope_list(scopes), values, max_age


class Protection:
    """The rules an adapter applies to one protected route (or a group of them).

    Args:
        guard: the :class:`TokenGuard` that validates tokens.
        policy: the policy name (or :class:`Policy`); optional when the guard has one.
        scopes: scopes this route requires on top of the policy's ``required_scopes``.
        acr_values, max_age: RFC 9470 step-up this route requires on top of the policy's.
        realm: the ``realm`` of the challenges (none by default).
        resource: this resource server's RFC 9728 resource identifier (an https URL).
            When set, challenges carry ``resource_metadata`` and :meth:`metadata_reply`
            serves the document at :attr:`metadata_path`.
        metadata: more members for the metadata document (``resource_name``,
            ``resource_documentation``, ``scopes_supported``...).
        allow_form_token: accept the token as an ``access_token`` form parameter
            (RFC 6750 §2.2); off by default.
        retry_after: the ``Retry-After`` seconds sent with a 503.
        client_certificate_header: the header a TLS-terminating proxy you trust sets to
            the client certificate of the connection (RFC 8705 behind a proxy); read by
            :func:`tokenguard.core.mtls.forwarded_certificate` (RFC 9440 ``Client-Cert``,
            nginx, Traefik, Envoy forms). Off by default: a header is never trusted
            unless the deployment names it, as any client can send it. When set, it
            alone gives the certificate (the connection's own TLS peer is the proxy);
            sent twice, or unreadable, there is none. The proxy must overwrite it on
            every request.
    """

    def __init__(
        self,
        guard: TokenGuard,
        policy: str | Policy | None = None,
        *,
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
        self.guard = guard
        self.policy = _resolve_policy(guard, policy)
        self.policy_name = self.policy.name
        self.scopes, self.acr_values, self.max_age = route_requirements(scopes, acr_values, max_age)
        self._all_scopes = frozenset(self.policy.required_scopes) | frozenset(self.scopes)
        self._step_up = self.acr_values is not None or self.max_age is not None
        if realm is not None and (not isinstance(realm, str) or not _REALM.fullmatch(realm)):
            # Sent as a quoted-string in every challenge: never altered on the way.
            raise ConfigurationError("realm must be printable ASCII without quotes or backslashes")
        self.realm = realm
        self.resource = resource
        self.allow_form_token = allow_form_token
        if type(retry_after) is not int or retry_after < 0:
            raise ConfigurationError("retry_after must be a whole number of seconds")
        self.retry_after = retry_after
        if client_certificate_header is not None and (
            not isinstance(client_certificate_header, str)
            or not _FIELD_NAME.fullmatch(client_certificate_header)
        ):
            raise ConfigurationError("client_certificate_header must be a header name")
        self.client_certificate_header = client_certificate_header
        self._certificate_header = (
            None if client_certificate_header is None else client_certificate_header.lower()
        )
        self._metadata_extra = dict(metadata or {})
        self.metadata_path: str | None = None
        self.metadata_url: str | None = None
        self._metadata_body = b""
        if resource is not None:
            self.metadata_path, self.metadata_url = metadata_location(resource)
            self._metadata_body = self._metadata_document()
        elif metadata:
            raise ConfigurationError("metadata needs the resource identifier (resource=...)")

    def derive(
        self,
        *,
        scopes: str | Iterable[str] = (),
        acr_values: Iterable[str] | None = None,
        max_age: int | None = None,
    ) -> Protection:
        """A copy for one route that requires more: ``scopes`` are added; ``acr_values``
        and ``max_age``, when given, replace this protection's."""
        return Protection(
            self.guard,
            self.policy,
            scopes=(*self.scopes, *_scope_list(scopes)),
            acr_values=self.acr_values if acr_values is None else acr_values,
            max_age=self.max_age if max_age is None else max_age,
            realm=self.realm,
            resource=self.resource,
            metadata=self._metadata_extra,
            allow_form_token=self.allow_form_token,
            retry_after=self.retry_after,
            client_certificate_header=self.client_certificate_header,
        )

    # -- reading the token --------------------------------------------------------------

    def wants_form(self, request: RequestView) -> bool:
        """Whether the adapter should read the form body's ``access_token`` values: only
        on opt-in, for a method with a body, with the form media type (RFC 6750 §2.2)."""
        if not self.allow_form_token or request.method not in _FORM_METHODS:
            return False
        types = request.headers("content-type")
        return len(types) == 1 and types[0].split(";", 1)[0].strip().lower() == _FORM_MEDIA_TYPE

    def credentials(self, request: RequestView) -> tuple[str, str]:
        """``("Bearer" | "DPoP", token)``: the access token of ``request`` and the scheme
        it came with, by the RFC 6750 rules (RFC 9449 §7.1 for ``DPoP``).

        Raises :class:`MissingToken` when there is none (an empty header, or another
        scheme such as Basic, counts as none) and :class:`InvalidRequest` for two
        ``Authorization`` headers, a malformed one or one holding two credentials (say
        ``Bearer`` and ``DPoP``), a token in the query string, or more than one method.
        """
        query = request.query
        if query and ("access_token" in query or "%" in query) and _query_has_token(query):
            raise InvalidRequest("Access tokens are not accepted in the query string")
        values = request.headers("authorization")
        if len(values) > 1:
            raise InvalidRequest("The request carries more than one Authorization header")
        forms = request.form_tokens
        if len(forms) > 1:
            raise InvalidRequest("The request carries more than one access_token parameter")
        credentials = parse_authorization(values[0]) if values else None
        if credentials is not None and credentials[0] not in _SCHEMES:
            credentials = None  # another scheme: not ours
        if forms:
            if credentials is not None:
                raise InvalidRequest("The request carries the access token more than once")
            if not is_token68(forms[0]):  # the same b64token rule as the header's
                raise InvalidRequest("The access_token parameter must be exactly one token")
            return "Bearer", forms[0]
        if credentials is None:
            raise MissingToken()
        return credentials

    def token(self, request: RequestView) -> str:
        """The bearer token of ``request`` (see :meth:`credentials`); a ``DPoP``
        credential counts as none here."""
        scheme, token = self.credentials(request)
        if scheme != "Bearer":
            raise MissingToken()
        return token

    def read(self, request: RequestView) -> Credentials:
        """Everything ``request`` presents for the guard: the access token
        (:meth:`credentials`), the DPoP context and the client certificate.

        With the ``DPoP`` scheme (RFC 9449 §7.1), its ``DPoP`` header values (one
        expected: two are handed on and refused by the guard), method and URL go with the
        token. A ``Bearer`` request with a stray ``DPoP`` header hands it on under the
        ``Bearer`` scheme (the guard ignores it for a bearer token and refuses a
        DPoP-bound token sent as bearer; the URL is not built). A bearer request without
        one gives no DPoP context (the guard's fast path). The client certificate is
        the one of the configured ``client_certificate_header`` (exactly one such header,
        readable), else the one the adapter read from the TLS layer. Raises like
        :meth:`credentials`.
        """
        scheme, token = self.credentials(request)
        proofs = request.headers("dpop")
        dpop = None
        if scheme == "DPoP" or proofs:
            proof: str | tuple[str, ...] | None = None
            if len(proofs) == 1:
                proof = proofs[0]
            elif proofs:
                proof = tuple(proofs)  # refused: exactly one DPoP header (RFC 9449 §4.3)
            url = request.url() if scheme == "DPoP" and request.url is not None else ""
            dpop = DPoPProof(proof, request.method, url, scheme)
        certificate = request.client_certificate
        if self._certificate_header is not None:
            values = request.headers(self._certificate_header)
            certificate = forwarded_certificate(values[0]) if len(values) == 1 else None
        return Credentials(token, dpop, certificate)

    # -- validating ---------------------------------------------------------------------

    def authorize(self, info: TokenInfo, scopes: Iterable[str] = ()) -> TokenInfo:
        """Check what this route requires beyond the policy (which the guard checked):
        its scopes and ``scopes`` (403 naming every scope needed), then its step-up."""
        needed = self._all_scopes
        if scopes:
            needed = needed.union(scopes)
        if not needed <= info.scopes:
            raise InsufficientScope(needed)
        if self._step_up:
            info.require_authentication(self.acr_values, self.max_age)
        return info

    def validate(self, request: RequestView, scopes: Iterable[str] = ()) -> TokenInfo:
        """Read, validate (sync) and authorize: the whole check of a sync adapter."""
        found = self.read(request)
        info = self.guard.validate(
            found.token,
            self.policy_name,
            dpop=found.dpop,
            client_certificate=found.client_certificate,
        )
        return self.authorize(info, scopes)

    async def avalidate(self, request: RequestView, scopes: Iterable[str] = ()) -> TokenInfo:
        """Read, validate (async, never blocking the loop) and authorize."""
        found = self.read(request)
        info = await self.guard.avalidate(
            found.token,
            self.policy_name,
            dpop=found.dpop,
            client_certificate=found.client_certificate,
        )
        return self.authorize(info, scopes)

    # -- writing the answer -------------------------------------------------------------

    def challenge(self, error: TokenGuardError) -> str:
        """The ``WWW-Authenticate`` value for ``error`` (realm, resource_metadata), with
        the schemes the policy accepts (``Bearer`` and/or ``DPoP``, RFC 9449 §7.1), also
        for an error raised before the guard saw the request (no token, a bad header)."""
        if error.challenge is None:
            self.guard.challenge(error, self.policy_name)
        return error.www_authenticate(self.realm, resource_metadata=self.metadata_url)

    def reply(self, error: TokenGuardError) -> Reply:
        """The response for ``error``: never a token or a claim in it, nor in the log."""
        status = error.status_code
        description = error.description
        if status >= 500:
            if isinstance(error, ValidationUnavailable):
                log.warning("access token check unavailable: %s", description)
            else:
                log.error("access token check failed: %s: %s", type(error).__name__, description)
                description = _SERVER_ERROR_DESCRIPTION
        else:
            log.debug("request refused: %s (%d)", type(error).__name__, status)
        content: dict[str, Any] = {}
        if error.error is not None:
            content["error"] = error.error
        content["error_description"] = description
        headers = [("WWW-Authenticate", self.challenge(error)), ("Cache-Control", "no-store")]
        # What else the error asks for (a DPoP-Nonce, RFC 9449 §9); the challenge is ours.
        # Retry-After once: the error's own (the guard knows when to ask again) or, on
        # a 503 without one, the configured default.
        retry_after: str | None = str(self.retry_after) if status == 503 else None
        for name, value in error.headers(self.realm).items():
            lower = name.lower()
            if lower == "retry-after":
                retry_after = value
            elif lower != "www-authenticate":
                headers.append((name, value))
        if retry_after is not None:
            headers.append(("Retry-After", retry_after))
        body = json.dumps(content, separators=(",", ":")).encode()
        headers.append(("Content-Type", _JSON))
        return Reply(status, tuple(headers), body, content)

    # -- RFC 9728 -------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 protected resource metadata document (a fresh dict)."""
        if not self._metadata_body:
            raise ConfigurationError("no resource identifier is configured (resource=...)")
        document: dict[str, Any] = json.loads(self._metadata_body)
        return document

    def metadata_reply(self) -> Reply:
        """The metadata document as a response (public, cacheable, readable cross-origin)."""
        document = self.metadata()
        headers = (
            ("Content-Type", _JSON),
            ("Cache-Control", "public, max-age=3600"),
            ("Access-Control-Allow-Origin", "*"),
        )
        return Reply(200, headers, self._metadata_body, document)

    def _metadata_document(self) -> bytes:
        issuers = self.policy.issuers or [i.issuer for i in self.guard.config.issuers]
        document: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": list(issuers),
        }
        if self._all_scopes:
            document["scopes_supported"] = sorted(self._all_scopes)
        document["bearer_methods_supported"] = (
            ["header", "body"] if self.allow_form_token else ["header"]
        )
        extra = self._metadata_extra
        if extra.get("resource", self.resource) != self.resource:
            raise ConfigurationError("metadata 'resource' must be the resource identifier")
        document.update(extra)
        try:
            return json.dumps(document, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            raise ConfigurationError("metadata must be JSON-serialisable") from None

    def __repr__(self) -> str:
        return f"Protection(policy={self.policy_name!r}, scopes={sorted(self._all_scopes)!r})"


def _query_has_token(query: str) -> bool:
    try:
        return any(
            name == "access_token"
            for name, _ in parse_qsl(query, keep_blank_values=True, max_num_fields=1000)
        )
    except ValueError:
        return True  # too many fields to look through: refuse rather than miss one
