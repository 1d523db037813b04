"""RFC 7662 token introspection: the request, the response, and what a response proves.
No I/O.

A response is reduced to an :class:`IntrospectionRecord`: what the authorization server
said about the token, never a policy's verdict. The record is cached under a digest of
the token, and every use of it, cached or not, is checked against the asking policy
(:func:`check_record`), so an answer fetched for one audience can never pass another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..client_auth import ClientAuth
from ..errors import (
    InactiveToken,
    InvalidClaims,
    MalformedToken,
    TokenGuardError,
    UnsupportedToken,
    UntrustedIssuer,
    ValidationUnavailable,
)
from .binding import BindingRules, check_binding
from .claims import Claims, check_audience, check_times, read_claims
from .exchange import HttpOutcome, HttpRequest, HttpResponse
from .jose import parse_json_object

__all__ = [
    "IntrospectionRecord",
    "answer_failure",
    "build_request",
    "check_record",
    "read_document",
    "read_response",
]

log = logging.getLogger("tokenguard.introspection")

_JSON_TYPES = frozenset({"application/json"})
#: RFC 9701 §4: the media type of a signed introspection answer.
SIGNED_MEDIA_TYPE = "application/token-introspection+jwt"
# token_type values that denote an access token usable as a bearer token.
_BEARER_TYPES = frozenset(
    {"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"}
)


@dataclass(frozen=True, slots=True)
class IntrospectionRecord:
    """What the authorization server said about one token, and when."""

    active: bool
    claims: Claims | None
    fetched_at: float


def build_request(
    endpoint: str,
    token: str,
    client_auth: ClientAuth,
    *,
    issuer: str,
    max_bytes: int,
    signed: bool = False,
) -> HttpRequest:
    """The introspection POST (RFC 7662 §2.1) with the client's credentials added; with
    ``signed``, asking for a signed JWT answer (RFC 9701 §4)."""
    form = {"token": token, "token_type_hint": "access_token"}
    headers = {"Accept": SIGNED_MEDIA_TYPE if signed else "application/json"}
    client_auth.apply(form, headers, audience=issuer)
    return HttpRequest(
        "POST",
        endpoint,
        max_bytes=max_bytes,
        headers=headers,
        form=form,
        tls_identity=client_auth.tls_identity,
    )


def read_response(
    outcome: HttpOutcome, now: float, *, keep: frozenset[str] | None = None
) -> IntrospectionRecord | TokenGuardError:
    """Reduce an introspection response to a record, or to the error it amounts to.

    Anything but a 200 JSON object means the server could not answer: 503, never
    cached. A JSON object whose ``active`` is not the JSON boolean ``true`` means
    inactive (RFC 7662 §2.2); ``"true"``, ``1`` or a missing ``active`` are not true.
    An active answer with ill-typed members is refused as invalid claims. Only the
    members named in ``keep`` are kept (``claims.minimise``; None keeps all).
    """
    failure = answer_failure(outcome)
    if failure is not None:
        return failure
    assert isinstance(outcome, HttpResponse)
    media = outcome.media_type
    if media not in _JSON_TYPES and not media.endswith("+json"):
        log.warning("introspection answered a non-JSON content type")
        return ValidationUnavailable("The authorization server answered nonsense")
    try:
        document = parse_json_object(outcome.body, "introspection response")
    except MalformedToken:
        log.warning("introspection answered something that is not a JSON object")
        return ValidationUnavailable("The authorization server answered nonsense")
    return read_document(document, now, keep=keep)


def answer_failure(outcome: HttpOutcome) -> TokenGuardError | None:
    """The error an introspection response that is not a 200 amounts to (503), or None."""
    if not isinstance(outcome, HttpResponse):
        log.warning("introspection failed: %s", outcome.reason)
        return ValidationUnavailable("The authorization server could not be reached")
    if outcome.status != 200:
        if outcome.status in (401, 403):
            log.error("introspection refused our client credentials (HTTP %d)", outcome.status)
        else:
            log.warning("introspection answered HTTP %d", outcome.status)
        return ValidationUnavailable("The authorization server could not answer")
    return None


def read_document(
    document: dict[str, Any], now: float, *, keep: frozenset[str] | None = None
) -> IntrospectionRecord | TokenGuardError:
    """What an introspection answer (a JSON object) says about the token; only the
    members named in ``keep`` are kept (None keeps all)."""
    if document.get("active") is not True:
        return IntrospectionRecord(active=False, claims=None, fetched_at=now)
    # Some servers serialise a member they do not have as null; in a response (unlike a
    # token) that means "absent". Everything present must still have its type.
    document = {
        name: value
        for name, value in document.items()
        if value is not None and (keep is None or name in keep)
    }
    try:
        claims = read_claims(document)
    except InvalidClaims as error:
        return error
    return IntrospectionRecord(active=True, claims=claims, fetched_at=now)


def check_record(
    record: IntrospectionRecord,
    *,
    issuer: str,
    audience: str,
    leeway: float,
    require_audience: bool,
    binding: BindingRules,
    now: float,
    audience_claim: str = "aud",
) -> Claims:
    """Check what the server said against one policy; return the claims if they pass.

    The server's ``active`` is necessary, not sufficient: ``iss``, ``aud``, ``exp``,
    ``nbf`` and ``token_type`` are checked when present, as for a JWT. A ``DPoP`` token
    type (RFC 9449 §6.2) must come with the ``cnf.jkt`` the proof is then checked against.
    """
    claims = record.claims
    if not record.active or claims is None:
        raise InactiveToken()
    if claims.issuer is not None and claims.issuer != issuer:
        raise UntrustedIssuer()
    check_times(claims, now, leeway, require_exp=False, require_iat=False)
    check_audience(claims, audience, required=require_audience, claim=audience_claim)
    token_type = claims.token_type
    kind = None if token_type is None else token_type.lower()
    if kind is not None and kind not in _BEARER_TYPES:
        bound = claims.cnf is not None and "jkt" in claims.cnf
        if kind != "dpop" or not (bound or binding.legacy):
            raise UnsupportedToken("The token is not a bearer access token")
    check_binding(claims, binding)
    return claims
