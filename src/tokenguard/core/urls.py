"""Endpoint URL rules: HTTPS everywhere, plain HTTP only for loopback when allowed."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

__all__ = ["endpoint_problem", "is_loopback_host", "well_known_urls"]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return parts


def endpoint_problem(url: str, *, allow_insecure_http: bool, is_issuer: bool = False) -> str | None:
    """Return why ``url`` may not be used as an endpoint, or None if it may.

    HTTPS is required; ``http`` is accepted only when the issuer explicitly allows it
    *and* the host is loopback. Userinfo and fragments are never accepted; an issuer
    identifier may not carry a query either (RFC 8414 §2).
    """
    if not isinstance(url, str) or not url or any(ch.isspace() for ch in url) or len(url) > 2048:
        return "is not a valid URL"
    parts = _split(url)
    if parts is None or not parts.hostname:
        return "is not a valid absolute URL"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.fragment or url.endswith("#"):
        return "must not contain a fragment"
    if is_issuer and (parts.query or url.endswith("?")):
        return "must not contain a query"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http":
        if not allow_insecure_http:
            return "must use https (set allow_insecure_http=True only for a loopback test server)"
        if not is_loopback_host(parts.hostname):
            return "may use http only on a loopback host"
        return None
    return "must use https"


def well_known_urls(issuer: str) -> tuple[str, str]:
    """The RFC 8414 and the OpenID Connect discovery URLs for an issuer identifier.

    RFC 8414 §3.1 inserts the well-known segment between host and path; OpenID
    Connect Discovery 1.0 §4 appends it to the issuer.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oauth = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{path}"
    oidc = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    return oauth, oidc
