"""Reading the token out of an ``Authorization`` header (RFC 6750 §2.1, RFC 9110 §11.4,
RFC 9449 §7.1).

The header holds one ``credentials``: ``auth-scheme [ 1*SP ( token68 / #auth-param ) ]``.
The scheme is case-insensitive; a ``Bearer`` or ``DPoP`` credential is one token68 (the
RFC 6750 ``b64token``) after one or more spaces, nothing else. A value that holds two
credentials (two ``Authorization`` headers joined with a comma by the server, or a client
that sent ``Basic ..., Bearer ...``) is refused, never read as its first one.
"""

from __future__ import annotations

import re

from .errors import InvalidRequest, MissingToken

__all__ = ["bearer_token", "is_token68", "parse_authorization"]

# RFC 9110 §5.6.2 token (the auth-scheme), then 1*SP and the rest (§11.4).
_CREDENTIALS = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?: +(.*))?", re.DOTALL)
# RFC 6750 §2.1 b64token, which is RFC 9110 §11.2 token68.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# A quoted-string (RFC 9110 §5.6.4): its content may hold commas and spaces.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
# Another credentials after a comma: an auth-scheme followed by a space and not by "="
# (an auth-param is ``token BWS "=" BWS value``).
_ANOTHER = re.compile(r",[ \t]*+[!#$%&'*+.^_`|~0-9A-Za-z-]++ ++(?!=)")
# The schemes tokenguard reads, by their lower-case name.
_OURS = {"bearer": "Bearer", "dpop": "DPoP"}


def parse_authorization(authorization: str | None) -> tuple[str, str] | None:
    """The ``(scheme, credentials)`` of an ``Authorization`` header value.

    ``scheme`` is ``"Bearer"`` or ``"DPoP"`` (then ``credentials`` is the access token),
    or another scheme in lower case (then the rest of the value, unchecked). ``None`` when
    the value is absent or empty. Raises :class:`InvalidRequest` (400) for a value that is
    not one RFC 9110 credentials (no scheme, a scheme followed by anything but a space,
    two credentials) and for a Bearer or DPoP credential that is not exactly one token68.
    """
    if authorization is None:
        return None
    value = authorization.strip(" \t")  # the field value's optional whitespace only
    if not value:
        return None
    match = _CREDENTIALS.fullmatch(value)
    if match is None:
        raise InvalidRequest("The Authorization header is malformed")
    scheme, rest = match.group(1), match.group(2) or ""
    if "," in rest and _ANOTHER.search(_QUOTED.sub('""', rest)):
        raise InvalidRequest("The Authorization header carries more than one credential")
    ours = _OURS.get(scheme.lower())
    if ours is None:
        return scheme.lower(), rest
    if not _TOKEN68.fullmatch(rest):
        raise InvalidRequest("The Authorization header must carry exactly one bearer token")
    return ours, rest


def is_token68(value: str) -> bool:
    """Whether ``value`` is one RFC 6750 ``b64token`` (RFC 9110 ``token68``), nothing more."""
    return _TOKEN68.fullmatch(value) is not None


def bearer_token(authorization: str | None) -> str:
    """Return the access token of an ``Authorization: Bearer <token>`` header value.

    No header, or another scheme, raises :class:`MissingToken` (401 without an error
    code, RFC 6750 §3.1); a malformed header, two credentials in one value, or a Bearer
    header without exactly one token raises :class:`InvalidRequest` (400).
    """
    credentials = parse_authorization(authorization)
    if credentials is None or credentials[0] != "Bearer":
        raise MissingToken()
    return credentials[1]
