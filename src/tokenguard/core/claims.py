"""Claim rules shared by both paths. No I/O.

A JWT access token's payload (RFC 9068 §2.2) and an RFC 7662 introspection response
use the same member names for the same things (``iss``, ``sub``, ``aud``, ``exp``,
``scope``, ``client_id``...), so one reader types both and one set of checks applies
to both. Every claim is type-checked: a claim of the wrong JSON type is an error, not
something to coerce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import (
    ExpiredToken,
    InvalidAudience,
    InvalidClaims,
    TokenNotYetValid,
)
from ..models import TokenInfo, TokenSource, freeze

__all__ = [
    "Claims",
    "check_audience",
    "check_times",
    "read_claims",
    "to_token_info",
]

#: 9999-12-31T23:59:59Z: later NumericDates cannot be represented and are refused.
MAX_NUMERIC_DATE = 253402300799


class Claims(NamedTuple):
    """The registered claims of a token, type-checked; ``raw`` keeps everything.

    A NamedTuple: immutable and cheap to build on the hot path."""

    raw: dict[str, Any]
    issuer: str | None
    subject: str | None
    client_id: str | None
    username: str | None
    token_id: str | None
    token_type: str | None
    acr: str | None
    audience: tuple[str, ...] | None  # None: no aud member at all
    scopes: frozenset[str]
    exp: float | None
    iat: float | None
    nbf: float | None
    auth_time: float | None
    amr: tuple[str, ...] | None
    cnf: dict[str, Any] | None


_ABSENT: Any = object()
_STRING_CLAIMS = ("iss", "sub", "client_id", "username", "jti", "token_type", "acr")
_DATE_CLAIMS = ("exp", "iat", "nbf", "auth_time")


def _numeric_date(value: Any, name: str) -> float:
    # bool is an int subclass in Python, but true is not a number in JSON; exact type
    # checks also keep this cheap. NaN and infinities fail the range comparison.
    if type(value) is not int and type(value) is not float:
        raise InvalidClaims(f"The {name} claim must be a number")
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise InvalidClaims(f"The {name} claim is out of range")
    return value


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidClaims(f"The {name} claim must be a string or an array of strings")


def _scopes(raw: Mapping[str, Any]) -> frozenset[str]:
    scope = raw.get("scope", _ABSENT)
    if type(scope) is str and "scp" not in raw:
        # The common case: share one frozenset per distinct scope string.
        found = _SCOPE_SETS.get(scope)
        if found is None:
            found = frozenset(scope.split(" ")) - {""}
            if len(_SCOPE_SETS) >= _SCOPE_SETS_MAX:
                _SCOPE_SETS.clear()
            _SCOPE_SETS[scope] = found
        return found
    return _scopes_slow(raw)


_SCOPE_SETS: dict[str, frozenset[str]] = {}
_SCOPE_SETS_MAX = 4096


def _scopes_slow(raw: Mapping[str, Any]) -> frozenset[str]:
    # RFC 9068 / RFC 8693 use a space-delimited "scope" string; many servers (Okta,
    # Azure AD) use "scp", as an array or a space-delimited string. Both count.
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = raw.get(name, _ABSENT)
        if value is _ABSENT:
            continue
        for item in _string_list(value, name):
            found.update(item.split(" "))  # RFC 6749 §3.3: space-delimited
    found.discard("")
    return frozenset(found)


def read_claims(raw: dict[str, Any]) -> Claims:
    """Type-check the registered claims of a JWT payload or introspection response.

    A registered claim that is present must have its type: ``null`` is not a string, a
    number or an array, so ``"nbf": null`` is refused rather than read as absent.
    """
    get = raw.get
    for name in _STRING_CLAIMS:
        value = get(name, _ABSENT)
        if value is not _ABSENT and type(value) is not str:
            raise InvalidClaims(f"The {name} claim must be a string")
    exp, iat, nbf, auth_time = (
        None if (value := get(name, _ABSENT)) is _ABSENT else _numeric_date(value, name)
        for name in _DATE_CLAIMS
    )
    aud = get("aud", _ABSENT)
    amr = get("amr", _ABSENT)
    cnf = get("cnf", _ABSENT)
    if cnf is not _ABSENT and type(cnf) is not dict:
        raise InvalidClaims("The cnf claim must be an object")
    return Claims(
        raw,
        get("iss"),
        get("sub"),
        get("client_id"),
        get("username"),
        get("jti"),
        get("token_type"),
        get("acr"),
        None if aud is _ABSENT else _string_list(aud, "aud"),
        _scopes(raw),
        exp,
        iat,
        nbf,
        auth_time,
        None if amr is _ABSENT else _string_list(amr, "amr"),
        None if cnf is _ABSENT else cnf,
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
    """The token must be meant for ``audience`` (RFC 7519 §4.1.3, RFC 9068 §4).

    An ``aud`` that is present must name ``audience``, whether or not one is
    ``required``: an empty list is an answer that names no audience, not a missing one.
    """
    if claims.audience is None:
        if required:
            raise InvalidAudience("The token has no audience")
        return
    if audience not in claims.audience:
        raise InvalidAudience()


def to_token_info(
    claims: Claims, *, source: TokenSource, issuer: str, token_type: str | None
) -> TokenInfo:
    """Build the immutable :class:`TokenInfo` (fields already type-checked)."""
    try:
        frozen = freeze(claims.raw)
    except ValueError:
        raise InvalidClaims("The token claims are nested too deeply") from None
    return TokenInfo.trusted(
        issuer=issuer,
        scopes=claims.scopes,
        token_type=token_type,
        claims=frozen,
        source=source,
    )
