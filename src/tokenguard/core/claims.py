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
    "REGISTERED_CLAIMS",
    "Claims",
    "check_audience",
    "check_times",
    "minimise",
    "read_claims",
    "share",
    "to_token_info",
]

#: 9999-12-31T23:59:59Z: later NumericDates cannot be represented and are refused.
MAX_NUMERIC_DATE = 253402300799

#: The claims tokenguard itself reads or exposes on :class:`TokenInfo`, kept whatever a
#: policy's ``claims`` list says: RFC 7519 §4.1 (iss sub aud exp nbf iat jti), RFC 9068
#: §2.2 (client_id scope auth_time acr amr), RFC 7800 (cnf), RFC 7662 §2.2 (active
#: username token_type) and ``scp`` (scopes as Okta and Azure AD send them).
REGISTERED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "scope",
        "scp",
        "auth_time",
        "acr",
        "amr",
        "cnf",
        "active",
        "username",
        "token_type",
    }
)


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
        # The common case. The memo of scope sets is only read here: it is filled by
        # verified tokens alone (share_scopes), never by what a request merely sent.
        found = _SCOPE_SETS.get(scope)
        if found is None:
            found = frozenset(scope.split(" "))
            if "" in found:
                found = found - _EMPTY
        return found
    return _scopes_slow(raw)


def share_scopes(claims: Claims) -> frozenset[str]:
    """The scope set of a *verified* token (signature checked, or an authorization
    server's answer), shared with every other token that has the same ``scope`` string,
    so 100,000 cached tokens hold a few sets, not 100,000. Bounded in count and in the
    length of what it remembers."""
    scopes = claims.scopes
    scope = claims.raw.get("scope")
    if type(scope) is not str or len(scope) > _SCOPE_MEMO_LENGTH:
        return scopes
    found = _SCOPE_SETS.get(scope)
    if found is not None:
        return found
    if len(_SCOPE_SETS) >= _SCOPE_SETS_MAX:
        _SCOPE_SETS.clear()
    _SCOPE_SETS[scope] = scopes
    return scopes


_EMPTY = frozenset({""})
_SCOPE_SETS: dict[str, frozenset[str]] = {}
_SCOPE_SETS_MAX = 1024
_SCOPE_MEMO_LENGTH = 512  # longer scope strings are not shared


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
    # Unrolled (no generator): this runs for every first-seen token.
    exp = get("exp", _ABSENT)
    exp = None if exp is _ABSENT else _numeric_date(exp, "exp")
    iat = get("iat", _ABSENT)
    iat = None if iat is _ABSENT else _numeric_date(iat, "iat")
    nbf = get("nbf", _ABSENT)
    nbf = None if nbf is _ABSENT else _numeric_date(nbf, "nbf")
    auth_time = get("auth_time", _ABSENT)
    auth_time = None if auth_time is _ABSENT else _numeric_date(auth_time, "auth_time")
    aud = get("aud", _ABSENT)
    audience: tuple[str, ...] | None
    if aud is _ABSENT:
        audience = None
    elif type(aud) is str:  # the common case, without a call
        audience = (aud,)
    else:
        audience = _string_list(aud, "aud")
    amr = get("amr", _ABSENT)
    cnf = get("cnf", _ABSENT)
    if cnf is not _ABSENT and type(cnf) is not dict:
        raise InvalidClaims("The cnf claim must be an object")
    # tuple.__new__ directly: the NamedTuple's own __new__ is a Python-level call.
    return _new_claims(
        Claims,
        (
            raw,
            get("iss"),
            get("sub"),
            get("client_id"),
            get("username"),
            get("jti"),
            get("token_type"),
            get("acr"),
            audience,
            _scopes(raw),
            exp,
            iat,
            nbf,
            auth_time,
            None if amr is _ABSENT else _string_list(amr, "amr"),
            None if cnf is _ABSENT else cnf,
        ),
    )


_new_claims = tuple.__new__


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


def check_audience(claims: Claims, audience: str, *, required: bool, claim: str = "aud") -> None:
    """The token must be meant for ``audience`` (RFC 7519 §4.1.3, RFC 9068 §4).

    An ``aud`` that is present must name ``audience``, whether or not one is
    ``required``: an empty list is an answer that names no audience, not a missing one.
    With ``claim="client_id"`` (servers whose tokens carry no ``aud``, like Amazon
    Cognito) the token's ``client_id`` must be ``audience``, always.
    """
    if claim == "client_id":
        if claims.client_id != audience:
            raise InvalidAudience()
        return
    if claims.audience is None:
        if required:
            raise InvalidAudience("The token has no audience")
        return
    if audience not in claims.audience:
        raise InvalidAudience()


def check_claim_values(claims: Claims, required: Mapping[str, str]) -> None:
    """Each of ``required`` must be present in the token with exactly its value."""
    for name, value in required.items():
        found = claims.raw.get(name)
        if found != value or type(found) is not str:
            # The name comes from the configuration; the token's value is never shown.
            raise InvalidClaims(f"The {name} claim does not have the required value")


def minimise(raw: dict[str, Any], keep: frozenset[str] | None) -> dict[str, Any]:
    """Only the members named in ``keep`` (``None`` keeps everything).

    This is the one step that trims what is kept of a token: ``TokenInfo.claims``, both
    caches and whatever is built from them hold the result, so a cached token costs less
    memory and a dump of it leaks less (issue 10 §3). ``keep`` is a policy's ``claims``
    plus :data:`REGISTERED_CLAIMS`."""
    if keep is None or raw.keys() <= keep:
        return raw
    return {name: value for name, value in raw.items() if name in keep}


def share(value: str) -> str:
    """One copy of a short string that recurs between *verified* tokens (an issuer, an
    audience, a client, a scope string), so 100,000 cached tokens do not hold 100,000
    copies of it. Never called with what an unverified request sent; bounded in count
    and length, and cleared when full (rule 1, docs/security.md)."""
    if len(value) > _SHARE_LENGTH:
        return value
    found: str = pooled(_SHARED, value, _SHARE_MAX)
    return found


def pooled(pool: dict[Any, Any], value: Any, maximum: int) -> Any:
    """The one copy of ``value`` kept in ``pool`` (a verified value: see :func:`share`),
    added if new; the pool is cleared when it holds ``maximum`` values."""
    found = pool.get(value)
    if found is None:
        if len(pool) >= maximum:
            pool.clear()
        pool[value] = found = value
    return found


_SHARED: dict[str, str] = {}
_SHARE_MAX = 4096
_SHARE_LENGTH = 256


def to_token_info(
    claims: Claims,
    *,
    source: TokenSource,
    issuer: str,
    token_type: str | None,
    keep: frozenset[str] | None = None,
) -> TokenInfo:
    """Build the immutable :class:`TokenInfo` of a verified token (fields already
    type-checked), holding only the claims ``keep`` names (:func:`minimise`)."""
    try:
        frozen = freeze(minimise(claims.raw, keep))
    except ValueError:
        frozen = None
    if frozen is None:
        raise InvalidClaims("The token claims are nested too deeply")
    # What TokenInfo.trusted does, without its keyword-argument call.
    return TokenInfo._assemble(
        {
            "active": True,
            "issuer": issuer,
            "scopes": share_scopes(claims),
            "token_type": (
                None if token_type is None else _SHARED.get(token_type) or share(token_type)
            ),
            "claims": frozen,
            "source": source,
            "cached": False,
        }
    )
