"""Claim rules shared by both paths. No I/O.

A JWT access token's payload (RFC 9068 §2.2) and an RFC 7662 introspection response
use the same member names for the same things (``iss``, ``sub``, ``aud``, ``exp``,
``scope``, ``client_id``...), so one reader types both and one set of checks applies
to both. Every claim is type-checked: a claim of the wrong JSON type is an error, not
something to coerce.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import (
    ExpiredToken,
    InvalidAudience,
    InvalidClaims,
    TokenNotYetValid,
    UnsupportedToken,
)
from .models import TokenInfo, TokenSource, freeze

__all__ = [
    "Claims",
    "check_audience",
    "check_binding",
    "check_times",
    "read_claims",
    "to_token_info",
]

#: 9999-12-31T23:59:59Z: later NumericDates cannot be represented and are refused.
MAX_NUMERIC_DATE = 253402300799


@dataclass(frozen=True, slots=True)
class Claims:
    """The registered claims of a token, type-checked; ``raw`` keeps everything."""

    raw: dict[str, Any]
    issuer: str | None
    subject: str | None
    client_id: str | None
    username: str | None
    token_id: str | None
    token_type: str | None
    acr: str | None
    audience: tuple[str, ...]
    scopes: frozenset[str]
    exp: float | None
    iat: float | None
    nbf: float | None
    auth_time: float | None
    amr: tuple[str, ...] | None
    cnf: dict[str, Any] | None


def _string(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidClaims(f"The {name} claim must be a string")
    return value


def _numeric_date(raw: Mapping[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    # bool is an int subclass in Python, but true is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClaims(f"The {name} claim must be a number")
    if not (math.isfinite(value) and 0 <= value <= MAX_NUMERIC_DATE):
        raise InvalidClaims(f"The {name} claim is out of range")
    return value


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidClaims(f"The {name} claim must be a string or an array of strings")


def _scopes(raw: Mapping[str, Any]) -> frozenset[str]:
    # RFC 9068 / RFC 8693 use a space-delimited "scope" string; many servers (Okta,
    # Azure AD) use "scp", as an array or a space-delimited string. Both count.
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = raw.get(name)
        if value is None:
            continue
        for item in _string_list(value, name):
            found.update(item.split())
    return frozenset(found)


def read_claims(raw: dict[str, Any]) -> Claims:
    """Type-check the registered claims of a JWT payload or introspection response."""
    aud = raw.get("aud")
    audience = () if aud is None else _string_list(aud, "aud")
    amr = raw.get("amr")
    cnf = raw.get("cnf")
    if cnf is not None and not isinstance(cnf, dict):
        raise InvalidClaims("The cnf claim must be an object")
    return Claims(
        raw=raw,
        issuer=_string(raw, "iss"),
        subject=_string(raw, "sub"),
        client_id=_string(raw, "client_id"),
        username=_string(raw, "username"),
        token_id=_string(raw, "jti"),
        token_type=_string(raw, "token_type"),
        acr=_string(raw, "acr"),
        audience=audience,
        scopes=_scopes(raw),
        exp=_numeric_date(raw, "exp"),
        iat=_numeric_date(raw, "iat"),
        nbf=_numeric_date(raw, "nbf"),
        auth_time=_numeric_date(raw, "auth_time"),
        amr=None if amr is None else _string_list(amr, "amr"),
        cnf=cnf,
    )


def check_times(
    claims: Claims, now: float, leeway: float, *, require_exp: bool, require_iat: bool
) -> None:
    """``exp`` (RFC 7519 §4.1.4), ``nbf`` (§4.1.5) and ``iat`` against ``now`` ± leeway."""
    if claims.exp is None:
        if require_exp:
            raise InvalidClaims("The token has no exp claim")
    elif now >= claims.exp + leeway:
        raise ExpiredToken()
    if claims.nbf is not None and now + leeway < claims.nbf:
        raise TokenNotYetValid()
    if claims.iat is None:
        if require_iat:
            raise InvalidClaims("The token has no iat claim")
    elif now + leeway < claims.iat:
        raise TokenNotYetValid("The token was issued in the future")


def check_audience(claims: Claims, audience: str, *, required: bool) -> None:
    """The token must be meant for ``audience`` (RFC 7519 §4.1.3, RFC 9068 §4)."""
    if not claims.audience:
        if required:
            raise InvalidAudience("The token has no audience")
        return
    if audience not in claims.audience:
        raise InvalidAudience()


def check_binding(claims: Claims, *, allow_sender_constrained: bool) -> None:
    """A token bound to a key (``cnf``: DPoP RFC 9449, mTLS RFC 8705) is not a bearer
    token: refuse it unless the policy says the caller checks the proof of possession."""
    if claims.cnf and not allow_sender_constrained:
        raise UnsupportedToken("Sender-constrained tokens need a proof of possession")


def _datetime(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def to_token_info(
    claims: Claims, *, source: TokenSource, issuer: str, token_type: str | None
) -> TokenInfo:
    """Build the immutable :class:`TokenInfo` (fields already type-checked)."""
    return TokenInfo.model_construct(
        active=True,
        subject=claims.subject,
        client_id=claims.client_id,
        username=claims.username,
        scopes=claims.scopes,
        audience=claims.audience,
        issuer=issuer,
        expires_at=_datetime(claims.exp),
        issued_at=_datetime(claims.iat),
        not_before=_datetime(claims.nbf),
        token_id=claims.token_id,
        token_type=token_type,
        cnf=None if claims.cnf is None else freeze(claims.cnf),
        acr=claims.acr,
        amr=claims.amr,
        auth_time=_datetime(claims.auth_time),
        claims=freeze(claims.raw),
        source=source,
        cached=False,
    )
