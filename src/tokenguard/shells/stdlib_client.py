"""tokenguard's own HTTP client for threads: ``http.client`` with keep-alive pooling.

The standard library's HTTP/1.1 client does ~2.5x the requests per second of
``httpx.Client`` and ~1.3x those of ``urllib3`` on the same loopback server
(docs/performance.md), and it lets every wait of an exchange be bounded by one deadline,
which neither of the others can: each read and write, the connection, the TLS handshake
and name resolution get the time left until ``deadline``, never a fresh timeout. A server
that dribbles its status line and headers, or sends ``100 Continue`` without end, is
abandoned at the deadline with the rest.

What it does, and what it refuses:

* one idle pool of connections per origin (scheme, host, port, proxy, and the client
  certificate presented, if any: a connection made without a certificate, or with
  another, is never reused for a mutual-TLS request), last used first;
  a connection idle for longer than :data:`KEEPALIVE_EXPIRY` or that the server closed
  (readable while idle) is dropped, and a request that fails on a reused connection
  before any answer is sent once more on a new one;
* TLS with :func:`~.transport.ssl_context` (certificates and host names verified),
  presenting the request's client certificate when it names one
  (:func:`~.transport.client_ssl_context`);
* ``http://`` proxies from the environment, as httpx uses them (``CONNECT`` for https);
* no redirects, no decompression, no cookies (nothing here would do them);
* an interim response other than ``100 Continue`` (``http.client`` cannot read past one)
  ends the exchange as a failure.
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import io
import ipaddress
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..core.exchange import (
    HttpFailure,
    HttpOutcome,
    HttpRequest,
    ResponseReader,
    TlsIdentity,
)
from .transport import FORM_TYPE, REQUEST_HEADERS, Proxy, client_ssl_context, encode_form, proxy_for

__all__ = ["KEEPALIVE_EXPIRY", "StdlibClient"]

log = logging.getLogger("tokenguard.shells")

#: Idle connections older than this (seconds) are not reused.
KEEPALIVE_EXPIRY = 15.0
#: Idle connections kept per origin.
MAX_IDLE = 64
_CHUNK = 64 * 1024
#: Concurrent name resolutions (each on its own thread, so a dead DNS server cannot hold a
#: request past its deadline; this bounds the threads such a server can tie up).
_RESOLVERS = threading.BoundedSemaphore(8)
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.BadStatusLine)


class _Overdue(TimeoutError):
    """The exchange's deadline has passed."""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Overdue("deadline passed")
    return left


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a connection goes: the server, the proxy in front of it if any, and the
    client certificate its TLS handshake presents if any."""

    scheme: str
    host: str
    port: int
    proxy: Proxy | None
    identity: TlsIdentity | None = None


@functools.lru_cache(maxsize=256)
def _route(url: str) -> tuple[_Origin, str]:
    """The origin of ``url`` and the request target to send (absolute through a proxy to
    an ``http://`` server, as RFC 9112 §3.2.2 asks)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = proxy_for(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if proxy is not None and parts.scheme == "http":
        target = url
    return _Origin(parts.scheme, parts.hostname, port, proxy), target


def _resolve(host: str, port: int, deadline: float) -> list[Any]:
    """``getaddrinfo`` within the deadline: it cannot be interrupted, so a name is resolved
    on a daemon thread and given up on (not waited for) when the deadline passes."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    if not _RESOLVERS.acquire(timeout=_remaining(deadline)):
        raise _Overdue("no resolver available in time")
    answer: list[Any] = []
    failure: list[OSError] = []
    done = threading.Event()

    def work() -> None:
        try:
            answer.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as error:
            failure.append(error)
        finally:
            _RESOLVERS.release()
            done.set()

    threading.Thread(target=work, name="tokenguard-resolve", daemon=True).start()
    if not done.wait(_remaining(deadline)):
        raise _Overdue("name resolution took too long")
    if failure:
        raise failure[0]
    return answer


def _open(host: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection to the first address of ``host`` that accepts one in time."""
    error: OSError = OSError("no address")
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(address)
        except OSError as failed:
            sock.close()
            if isinstance(failed, TimeoutError):
                raise
            error = failed
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class _Reader(io.RawIOBase):
    """The raw reading end ``http.client`` reads responses from: each read waits only for
    the time left until the connection's deadline."""

    def __init__(self, owner: _Socket) -> None:
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._owner.sock
        sock.settimeout(_remaining(self._owner.connection.deadline))
        return sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._owner.reader_closed()


class _Socket:
    """What ``http.client`` takes for its socket: writes and reads bounded by the
    connection's deadline. Like a real socket's ``makefile``, a reader still open keeps
    the socket open after :meth:`close` (a response read after its connection closed)."""

    def __init__(self, sock: socket.socket, connection: _Connection) -> None:
        self.sock = sock
        self.connection = connection
        self._readers = 0
        self._closing = False

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_Reader(self), _CHUNK)

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(_remaining(self.connection.deadline))
        self.sock.sendall(data)

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closing and self._readers <= 0:
            self.sock.close()

    def close(self) -> None:
        self._closing = True
        if self._readers <= 0:
            self.sock.close()

    def dropped(self) -> bool:
        """Whether the server closed (or wrote on) this idle connection."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


class _Connection(http.client.HTTPConnection):
    """One keep-alive connection; every wait in it ends by :attr:`deadline`."""

    def __init__(self, origin: _Origin) -> None:
        target = origin.proxy or origin
        super().__init__(target.host, target.port)
        self.origin = origin
        self.deadline = 0.0
        self.idle_since = 0.0
        proxy = origin.proxy
        if proxy is not None and origin.scheme == "https":
            headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
            self.set_tunnel(origin.host, origin.port, headers)

    def connect(self) -> None:
        raw = _open(self.host, self.port, self.deadline)
        self.sock = _Socket(raw, self)
        if self.origin.proxy is not None and self.origin.scheme == "https":
            self._tunnel()  # type: ignore[attr-defined]  # CONNECT, bounded like any answer
        if self.origin.scheme == "https":
            raw.settimeout(_remaining(self.deadline))  # the whole handshake, in CPython
            context = client_ssl_context(self.origin.identity)
            raw = context.wrap_socket(raw, server_hostname=self.origin.host)
            self.sock = _Socket(raw, self)

    def dropped(self) -> bool:
        sock = self.sock
        return not isinstance(sock, _Socket) or sock.dropped()


class StdlibClient:
    """Pooled keep-alive connections over ``http.client``; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[_Origin, list[_Connection]] = {}

    def perform(self, request: HttpRequest, deadline: float) -> HttpOutcome:
        """One exchange, ended by ``deadline`` (``time.monotonic()``) whatever the server
        does; failures are returned, never raised."""
        try:
            origin, target = _route(request.url)
        except ValueError as error:
            return HttpFailure(str(error) if "proxies" in str(error) else "bad URL")
        if request.tls_identity is not None:
            origin = dataclasses.replace(origin, identity=request.tls_identity)
        headers = {**REQUEST_HEADERS, **request.headers}
        body = None
        if request.form is not None:
            body = encode_form(request.form)
            headers["Content-Type"] = FORM_TYPE
        if origin.proxy is not None and origin.scheme == "http" and origin.proxy.authorization:
            headers["Proxy-Authorization"] = origin.proxy.authorization
        for attempt in (1, 2):
            connection, reused = self._checkout(origin)
            connection.deadline = deadline
            try:
                connection.request(request.method, target, body, headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException, ValueError) as error:
                connection.close()
                if reused and attempt == 1 and isinstance(error, _STALE):
                    # A kept-alive connection the server closed meanwhile: once more, anew.
                    log.debug("retrying on a new connection: %s", type(error).__name__)
                    continue
                return HttpFailure(_reason(error))
            return self._read(connection, response, request, deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(
        self,
        connection: _Connection,
        response: http.client.HTTPResponse,
        request: HttpRequest,
        deadline: float,
    ) -> HttpOutcome:
        if response.status < 200:
            connection.close()  # a second response follows on the wire: never reuse
            return HttpFailure("unexpected interim response")
        reader = ResponseReader(request, response.status, response.headers, deadline)
        failure = reader.check_head()
        try:
            while failure is None:
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                failure = reader.feed(chunk, time.monotonic())
        except (OSError, http.client.HTTPException) as error:
            failure = HttpFailure(_reason(error))
        response.close()
        if failure is not None:
            connection.close()
            return failure
        self._checkin(connection)
        return reader.response()

    def _checkout(self, origin: _Origin) -> tuple[_Connection, bool]:
        stale: list[_Connection] = []
        found = None
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                if now - connection.idle_since <= KEEPALIVE_EXPIRY and not connection.dropped():
                    found = connection
                    break
                stale.append(connection)
        for connection in stale:
            connection.close()
        if found is not None:
            return found, True
        return _Connection(origin), False

    def _checkin(self, connection: _Connection) -> None:
        if connection.sock is None:  # the server said it would close: http.client did
            return
        connection.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(connection.origin, [])
            if len(idle) < MAX_IDLE:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close every idle connection (the client stays usable: it connects anew)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (TimeoutError, "timeout"),
    (ssl.SSLError, "TLS failure"),
    (ConnectionRefusedError, "connection failed"),
    (socket.gaierror, "connection failed"),
    (http.client.HTTPException, "protocol error"),
    (ConnectionError, "connection lost"),
)


def _reason(error: BaseException) -> str:
    """A log-safe reason (exception messages may contain URLs or server text)."""
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return type(error).__name__
