"""HTTP client settings shared by the sync and async shells."""

from __future__ import annotations

from typing import Any

import httpx

from .. import __version__
from ..core.exchange import HttpRequest

__all__ = ["REQUEST_HEADERS", "build_request", "client_options", "failure_reason"]

#: Sent with every request, also through a client the user supplied.
REQUEST_HEADERS = {
    "User-Agent": f"tokenguard/{__version__}",
    # Refuse compression: a small compressed body can expand without bound.
    "Accept-Encoding": "identity",
}


def client_options(timeout: float) -> dict[str, Any]:
    """Options for the httpx clients tokenguard creates itself: pooled keep-alive
    connections, TLS verification on, no redirects, the configured timeout."""
    return {
        "timeout": httpx.Timeout(timeout),
        "follow_redirects": False,
        "limits": httpx.Limits(max_connections=100, max_keepalive_connections=20),
        "headers": REQUEST_HEADERS,
    }


def build_request(
    client: httpx.Client | httpx.AsyncClient,
    request: HttpRequest,
    timeout: float,
    *,
    own_client: bool,
) -> httpx.Request:
    """The httpx request for ``request``. A client tokenguard made already sends
    :data:`REQUEST_HEADERS`; a client the user gave gets them on each request."""
    headers = request.headers if own_client else {**REQUEST_HEADERS, **request.headers}
    return client.build_request(
        request.method, request.url, headers=headers, data=request.form, timeout=timeout
    )


def failure_reason(error: httpx.HTTPError) -> str:
    """A log-safe reason for a transport failure (httpx messages may contain URLs)."""
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.ConnectError):
        return "connection failed"
    if isinstance(error, httpx.RemoteProtocolError):
        return "protocol error"
    return type(error).__name__
