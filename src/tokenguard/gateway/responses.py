"""What the gateway answers: an allow, a denial (as the framework adapters answer an
error, through :mod:`tokenguard.edge`), or "no route"."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..edge import Reply
from ..errors import TokenGuardError

__all__ = ["Answer", "denial", "unmatched"]

_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the gateway sends back to the proxy."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    error: str | None = None  # the OAuth error code, for logs and metrics


def denial(reply: Reply, error: TokenGuardError) -> Answer:
    """The answer for a refused request, from the adapters' shared error response
    (:meth:`tokenguard.edge.Protection.reply`: status, challenge, ``Retry-After``,
    ``DPoP-Nonce``, JSON body)."""
    headers = [
        (name.lower().encode("ascii"), value.encode("ascii")) for name, value in reply.headers
    ]
    return Answer(reply.status, headers, reply.body, error.error)


_UNMATCHED = json.dumps(
    {"error": "access_denied", "error_description": "No route allows this request"}
).encode("ascii")


def unmatched() -> Answer:
    """No route matches: 403 (a status every proxy passes on; 404 is not one nginx does)."""
    return Answer(403, [_JSON, _NO_STORE], _UNMATCHED, "access_denied")
