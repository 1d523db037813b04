"""Real HTTP servers on loopback for the adapters: uvicorn (ASGI) and waitress (WSGI).

Each binds an ephemeral port, serves from a daemon thread and is stopped on exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from waitress.server import create_server


@contextmanager
def uvicorn_server(app: Any, *, lifespan: str = "auto") -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    _wait(lambda: server.started, thread)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def waitress_server(app: Callable[..., Any]) -> Iterator[str]:
    """Serve a WSGI app with waitress on 127.0.0.1; yield its base URL."""
    server = create_server(
        app, host="127.0.0.1", port=0, threads=4, clear_untrusted_proxy_headers=True
    )
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(5)


def _wait(ready: Callable[[], bool], thread: threading.Thread) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        if not thread.is_alive():
            raise RuntimeError("the server stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not start in 30 s")
        time.sleep(0.02)
