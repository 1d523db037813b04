"""HTTP plumbing of the test authorization server: a loopback ``ThreadingHTTPServer``.

The handler only turns bytes into :class:`HTTPRequest` objects and :class:`HTTPResponse`
objects back into bytes; everything else is up to the ``dispatch`` callable.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HOST", "MAX_BODY_SIZE", "HTTPListener", "HTTPRequest", "HTTPResponse"]

log = logging.getLogger("tokenguard.testing")

#: The loopback address the server binds to.
HOST = "127.0.0.1"
#: Request bodies larger than this are refused with 413 without being read.
MAX_BODY_SIZE = 64 * 1024
# Idle keep-alive connections are closed after this many seconds.
_IDLE_TIMEOUT = 60.0
# How often serve_forever() notices a shutdown request.
_POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class HTTPRequest:
    """A request as read off the wire.

    Attributes:
        method: the HTTP method.
        url: the absolute request URL (``http://127.0.0.1:PORT/path?query``).
        path: the URL path.
        headers: the request headers (case-insensitive ``get``).
        body: the request body (empty when ``rejection`` is set).
        rejection: a status to answer with instead of looking at the request: 400 for an
            invalid ``Content-Length``, 411 for a chunked body, 413 for a body over
            :data:`MAX_BODY_SIZE`. The body was not read; the connection will be closed.
    """

    method: str
    url: str
    path: str
    headers: Message[str, str]
    body: bytes
    rejection: HTTPStatus | None = None


@dataclass(frozen=True)
class HTTPResponse:
    """A response to write: status, headers (without ``Content-Length``) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


Dispatch = Callable[[HTTPRequest], HTTPResponse]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "tokenguard-testing"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body are separate writes

    def do_GET(self) -> None:
        """Serve any method the same way; the dispatcher decides what is allowed."""
        request = self._read_request()
        try:
            response = self.server.dispatch(request)
        except Exception:
            log.exception("internal error while answering %s %s", request.method, request.path)
            response = HTTPResponse(500, (("Content-Type", "text/plain"),), b"internal error")
        self._write(response, close=request.rejection is not None)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silence ``BaseHTTPRequestHandler``'s stderr logging."""

    def _read_request(self) -> HTTPRequest:
        target = urlsplit(self.path)
        url = f"http://{HOST}:{self.server.server_port}{target.path}"
        if target.query:
            url += f"?{target.query}"
        body, rejection = b"", None
        if "Transfer-Encoding" in self.headers:
            rejection = HTTPStatus.LENGTH_REQUIRED
        else:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0:
                rejection = HTTPStatus.BAD_REQUEST
            elif length > MAX_BODY_SIZE:
                rejection = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            else:
                body = self.rfile.read(length)
                if len(body) != length:
                    rejection = HTTPStatus.BAD_REQUEST
        return HTTPRequest(self.command, url, target.path, self.headers, body, rejection)

    def _write(self, response: HTTPResponse, *, close: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        body = response.body
        if response.status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            body = b""
        else:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # http.server's default backlog of 5 resets connections when a test opens dozens
    # at once (a stampede); real servers queue far more.
    request_queue_size = 128

    def __init__(self, port: int, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() would resolve the host name (socket.getfqdn), which can
        # be slow; loopback needs none of that.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.socket.getsockname()[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def close_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client went away mid-request, or go_down() cut the connection: not our problem.
        log.debug("connection error", exc_info=True)

    def close_connections(self) -> None:
        """Cut every open connection (keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class HTTPListener:
    """Owns the listening socket and the thread that accepts connections."""

    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the socket is listening."""
        return self._server is not None

    def bind(self, port: int = 0) -> int:
        """Listen on ``port`` (0: any free port) and return the port. Connections queue up
        until :meth:`serve` is called."""
        assert self._server is None, "already listening"
        self._server = _Server(port, self._dispatch)
        return self._server.server_port

    def serve(self) -> None:
        """Start answering requests in a background thread."""
        server = self._server
        assert server is not None, "bind() first"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"tokenguard-auth-server-{server.server_port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop listening and cut open connections; connecting is then refused."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        if thread is not None:  # shutdown() waits for serve_forever(), so only if it runs
            server.shutdown()
            thread.join()
        server.server_close()
        server.close_connections()
