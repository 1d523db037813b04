"""Signed introspection answers (RFC 9701). No I/O.

An issuer configured with ``signed_introspection=True`` is asked for
``application/token-introspection+jwt`` and must answer with it: a compact JWS of type
``token-introspection+jwt`` whose ``iss`` is the issuer, whose ``aud`` names our client id,
whose ``iat`` is fresh, and whose ``token_introspection`` member is the RFC 7662 answer,
then read by the usual rules. :func:`read_signed_response` does every check that needs
no key; the flow then verifies the signature with the issuer's keys (fetched as for its
tokens) before the answer counts, and only then is it cached.

Any failure is the server's, not the token's: 503, never cached. A plain JSON answer
where a signed one is required is such a failure (a downgrade).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import TokenGuardError, ValidationUnavailable
from .exchange import HttpOutcome, HttpResponse
from .introspection import SIGNED_MEDIA_TYPE, answer_failure
from .jose import JWS, parse_jws

__all__ = ["SignedAnswer", "read_signed_response"]

log = logging.getLogger("tokenguard.introspection")

_TYPES = frozenset({"token-introspection+jwt", SIGNED_MEDIA_TYPE})


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    """A signed answer whose claims passed; its signature is still to be verified."""

    jws: JWS
    document: dict[str, Any]


def _number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _refused(why: str) -> ValidationUnavailable:
    log.warning("signed introspection answer refused: %s", why)
    return ValidationUnavailable("The authorization server's signed answer is not acceptable")


def read_signed_response(
    outcome: HttpOutcome,
    *,
    issuer: str,
    client_id: str,
    algorithms: frozenset[str],
    max_age: float,
    now: float,
) -> SignedAnswer | TokenGuardError:
    """Check a signed introspection answer (RFC 9701 §5) as far as it can be without a
    key. ``max_age`` bounds how far ``iat`` may lie from ``now``."""
    failure = answer_failure(outcome)
    if failure is not None:
        return failure
    assert isinstance(outcome, HttpResponse)
    if outcome.media_type != SIGNED_MEDIA_TYPE:
        return _refused(f"content type {outcome.media_type or 'none'!r}, not a signed answer")
    try:
        text = outcome.body.decode("ascii").strip()
        if text.count(".") != 2:
            return _refused("not a compact JWS (an encrypted answer is not supported)")
        jws = parse_jws(text, algorithms)
    except (UnicodeDecodeError, TokenGuardError):
        return _refused("not a valid JWS with an allowed algorithm")
    if jws.typ is None or jws.typ.lower() not in _TYPES:
        return _refused("typ is not token-introspection+jwt")
    claims = jws.claims
    if claims.get("iss") != issuer:
        return _refused("iss is not the issuer")
    aud = claims.get("aud")
    if not (aud == client_id or (type(aud) is list and client_id in aud)):
        return _refused("aud does not name this client")
    iat: Any = claims.get("iat")
    if not _number(iat) or not now - max_age <= iat <= now + max_age:
        return _refused("iat is missing or not fresh")
    exp: Any = claims.get("exp")
    if exp is not None and (not _number(exp) or exp <= now):
        return _refused("expired")
    document = claims.get("token_introspection")
    if type(document) is not dict:
        return _refused("no token_introspection object")
    return SignedAnswer(jws, document)
