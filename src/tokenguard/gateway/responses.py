"""A denial as an HTTP answer: status, ``WWW-Authenticate``, JSON body.

The one place the gateway turns an error into a response, so that it can follow the
shared edge module of the framework adapters when that lands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import TokenGuardError

__all__ = ["Answer", "denial", "unmatched"]

_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_RETRY_AFTER = (b"retry-after", b"5")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the gateway sends back to the proxy."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    error: str | None = None  # the OAuth error code, for logs and metrics


def denial(error: TokenGuardError, realm: str | None) -> Answer:
    """The answer for a refused request: the error's status and headers (its
    challenge), and ``{"error", "error_description"}`` (fixed sentences only)."""
    headers = [_JSON, _NO_STORE]
    # WWW-Authenticate for 400/401/403 (Bearer and/or DPoP, as the policy says), and
    # DPoP-Nonce when the policy demands a nonce.
    headers.extend(
        (name.lower().encode("ascii"), value.encode("ascii"))
        for name, value in error.headers(realm).items()
    )
    if error.status_code == 503:
        headers.append(_RETRY_AFTER)  # as the framework adapters say it
    body = {"error": error.error or "invalid_request", "error_description": error.description}
    if error.error is None:  # MissingToken: RFC 6750 §3.1 gives no error code
        body = {"error_description": error.description}
    return Answer(error.status_code, headers, json.dumps(body).encode("ascii"), error.error)


_UNMATCHED = json.dumps(
    {"error": "access_denied", "error_description": "No route allows this request"}
).encode("ascii")


def unmatched() -> Answer:
    """No route matches: 403 (a status every proxy passes on; 404 is not one nginx does)."""
    return Answer(403, [_JSON, _NO_STORE], _UNMATCHED, "access_denied")
