"""What every HTTP client of the shells shares: headers, TLS, proxies, form encoding.

tokenguard's own clients (:mod:`.stdlib_client` for threads, :mod:`.aiohttp_client` for
asyncio) and the adapters for a caller's httpx client (:mod:`.httpx_client`) all send the
same headers, verify TLS against the same trust store and use the same proxies as httpx
would with its defaults, so choosing a client changes speed, not behaviour.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlencode, urlsplit

from .. import __version__
from ..core.exchange import HttpOutcome, HttpRequest, TlsIdentity

if TYPE_CHECKING:
    import ssl

__all__ = [
    "FORM_TYPE",
    "REQUEST_HEADERS",
    "AsyncTransport",
    "Proxy",
    "SyncTransport",
    "client_ssl_context",
    "encode_form",
    "proxy_for",
    "ssl_context",
]

#: Sent with every request, also through a client the user supplied.
REQUEST_HEADERS = {
    "User-Agent": f"tokenguard/{__version__}",
    # Refuse compression: a small compressed body can expand without bound.
    "Accept-Encoding": "identity",
}
FORM_TYPE = "application/x-www-form-urlencoded"


class SyncTransport(Protocol):
    """Performs one request for the sync shell; the whole exchange ends by ``deadline``
    (``time.monotonic()``) and never raises for a network or protocol failure."""

    def perform(self, request: HttpRequest, deadline: float) -> HttpOutcome: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The async twin of :class:`SyncTransport`."""

    async def perform(self, request: HttpRequest, deadline: float) -> HttpOutcome: ...

    async def aclose(self) -> None: ...


#: Characters a form name or value may hold unencoded (RFC 3986 unreserved): tokens and
#: client ids usually are only these, so they skip the slower general encoder.
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def encode_form(form: Mapping[str, str]) -> bytes:
    """An ``application/x-www-form-urlencoded`` body (as httpx encodes ``data=``)."""
    plain = _UNRESERVED.fullmatch
    if all(plain(name) and plain(value) for name, value in form.items()):
        return "&".join(f"{name}={value}" for name, value in form.items()).encode("ascii")
    return urlencode(form).encode("ascii")


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The TLS settings of tokenguard's own clients: certificates and host names verified,
    against the CA bundle httpx uses by default (certifi's), or the one named by
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, as httpx does. Made once per process."""
    return _new_context()


_client_contexts: weakref.WeakKeyDictionary[TlsIdentity, ssl.SSLContext] = (
    weakref.WeakKeyDictionary()
)
_client_contexts_lock = threading.Lock()


def client_ssl_context(identity: TlsIdentity | None) -> ssl.SSLContext:
    """:func:`ssl_context`'s settings, presenting ``identity``'s certificate in the
    handshake (mutual TLS, RFC 8705 §2); :func:`ssl_context` itself for None. Made once
    per identity, and kept no longer than the identity (its issuer's configuration).
    Raises :class:`OSError` or :class:`ssl.SSLError` when the files no longer load."""
    if identity is None:
        return ssl_context()
    context = _client_contexts.get(identity)
    if context is None:
        with _client_contexts_lock:
            context = _client_contexts.get(identity)
            if context is None:
                context = _new_context()
                context.load_cert_chain(identity.certfile, identity.keyfile, identity.password)
                _client_contexts[identity] = context
    return context


def _new_context() -> ssl.SSLContext:
    import ssl

    if os.environ.get("SSL_CERT_FILE"):
        context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    elif os.environ.get("SSL_CERT_DIR"):
        context = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    else:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy from the environment: where it is and its Basic credentials."""

    url: str  # without credentials
    host: str
    port: int
    authorization: str | None  # a Proxy-Authorization value


@functools.lru_cache(maxsize=256)
def proxy_for(url: str) -> Proxy | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``, as read by :mod:`urllib.request`) names for ``url``, as httpx's default
    ``trust_env`` would use it; ``None`` for a direct connection. Only ``http://``
    proxies are supported: another scheme raises :class:`ValueError`."""
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return None
    parts = urlsplit(url)
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not chosen or bypass(parts.hostname or "", proxies):
        return None
    if "://" not in chosen:
        chosen = "http://" + chosen
    proxy = urlsplit(chosen)
    if proxy.scheme != "http" or not proxy.hostname:
        raise ValueError("only http:// proxies are supported")
    authorization = None
    if proxy.username is not None:
        import base64

        pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    host = proxy.hostname
    port = proxy.port or 80
    shown = f"[{host}]" if ":" in host else host
    return Proxy(f"http://{shown}:{port}", host, port, authorization)
