"""Endpoint URL rules: HTTPS everywhere, plain HTTP only for loopback when allowed."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

__all__ = ["endpoint_problem", "is_loopback_host", "normalize_http_uri", "well_known_urls"]


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


# RFC 3986 §2.3 unreserved characters, and everything a path may hold unencoded
# (pchar: unreserved, sub-delims, ":", "@"; plus "/").
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_HEX = frozenset("0123456789abcdefABCDEF")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"[a-z0-9._~!$&'()*+,;=-]+|\[[0-9a-f:.]+\]")
_MAX_URI_LENGTH = 4096


def _normalize_path(path: str) -> str | None:
    """Percent-encoding normalisation (RFC 3986 §6.2.2.1-2): escapes in upper case,
    unreserved characters decoded, anything else that may not appear encoded."""
    out: list[str] = []
    i, end = 0, len(path)
    while i < end:
        ch = path[i]
        if ch == "%":
            pair = path[i + 1 : i + 3]
            if len(pair) != 2 or not _HEX.issuperset(pair):
                return None
            decoded = chr(int(pair, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + pair.upper())
            i += 3
            continue
        if ch in _PATH_CHARS:
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.rsplit("/", 1)[-1] in (".", ".."):
        output.append("")  # "/a/b/.." is "/a/", not "/a"
    return "/" + "/".join(output)


def normalize_http_uri(url: str, *, strip_query: bool) -> str | None:
    """An absolute ``http``/``https`` URI in normal form, or None if it is not one.

    Syntax-based and scheme-based normalisation (RFC 3986 §6.2.2, §6.2.3): scheme and
    host in lower case, the default port dropped, percent-encoding normalised, dot
    segments removed, an empty path made ``/``. Userinfo is refused (RFC 9110 §4.2.4).
    A query or fragment is dropped with ``strip_query``, else the URI is refused.
    """
    if len(url) > _MAX_URI_LENGTH or any(ch <= " " or ch == "\x7f" for ch in url) or "\\" in url:
        return None
    parts = _split(url)
    if parts is None or parts.scheme.lower() not in _DEFAULT_PORTS:
        return None
    has_query = bool(parts.query or parts.fragment) or "?" in url or "#" in url
    if has_query and not strip_query:
        return None
    netloc = parts.netloc
    if "@" in netloc or not netloc:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""  # lower-cased, brackets removed
    if ":" in host:
        host = f"[{host}]"
    if not host.isascii() or not _HOST.fullmatch(host):
        return None
    port = parts.port
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normalize_path(parts.path or "/")
    if path is None or not path.startswith("/"):
        return None
    return f"{scheme}://{authority}{_remove_dot_segments(path)}"
