"""A loopback HTTP server that never finishes its answer in time, in the ways a slow or
hostile server can: it dribbles the status line and headers, or sends ``100 Continue``
interim responses without end, or accepts and says nothing.

Each behaviour keeps going for ``hold`` seconds at most (then the connection is closed),
so a client without a whole-exchange deadline is caught by the test's elapsed-time
assertion instead of hanging the suite.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Literal, Self

Mode = Literal["dribble", "continue", "silent"]


class StallingServer:
    """Answers every request on ``url`` according to ``mode``; counts the requests."""

    def __init__(self, mode: Mode, *, interval: float = 0.25, hold: float = 10.0) -> None:
        self.mode = mode
        self.interval = interval
        self.hold = hold
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Self:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    request += chunk
            except OSError:
                return
            with self._lock:
                self.requests += 1
            ends = time.monotonic() + self.hold
            if self.mode == "dribble":
                # A status line, then one header whose value never ends.
                stream = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + (
                    b"a" * 100_000
                )
            elif self.mode == "continue":
                stream = b"HTTP/1.1 100 Continue\r\n\r\n" * 100_000
            else:
                stream = b""
            for byte in range(len(stream)):
                if time.monotonic() > ends or self._stop.wait(self.interval):
                    return
                try:
                    if self.mode == "dribble":
                        connection.sendall(stream[byte : byte + 1])
                    else:
                        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    return
            while time.monotonic() < ends and not self._stop.wait(self.interval):
                pass
