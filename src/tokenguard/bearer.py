"""Reading the token out of an ``Authorization`` header (RFC 6750 §2.1)."""

from __future__ import annotations

import re

from .errors import InvalidRequest, MissingToken

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1

__all__ = ["bearer_token"]


def bearer_token(authorization: str | None) -> str:
    """Return the access token of an ``Authorization: Bearer <token>`` header value.

    No header, or another scheme, raises :class:`MissingToken` (401 without an error
    code, RFC 6750 §3.1); a Bearer header without exactly one token raises
    :class:`InvalidRequest` (400).
    """
    if not authorization:
        raise MissingToken()
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken()
    token = rest.strip()
    if not _B64TOKEN.fullmatch(token):
        raise InvalidRequest("The Authorization header must carry exactly one bearer token")
    return token
