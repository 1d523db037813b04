"""Serving the gateway with worker processes: uvicorn (httptools, uvloop) or granian.

With uvicorn the socket is bound here, before the workers start, so ``--port 0`` works
and the address printed is the real one; every worker accepts on it. Granian binds in
its own (Rust) code, so for ``--port 0`` a free port is picked first. With more than one
worker, Prometheus samples go to a per-run directory (``PROMETHEUS_MULTIPROC_DIR``) that
``/metrics`` adds up, and that is removed at exit.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ._serve import CONFIG_ENV
from .config import load_gateway_config

__all__ = ["serve"]

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _log_config(level: str) -> dict[str, Any]:
    # The server's own messages on stderr; the access log writes to stdout itself.
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tagged": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "tagged",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "tokenguard": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }


def serve(
    config_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8181,
    workers: int = 1,
    log_level: str = "warning",
    announce: Callable[[str], None] = print,
    server: str = "uvicorn",
) -> None:
    """Serve the gateway for ``config_path`` until interrupted (SIGINT/SIGTERM), with
    ``server`` (``"uvicorn"`` or ``"granian"``).

    Raises :class:`~tokenguard.ConfigurationError` before binding anything if the
    configuration is invalid.
    """
    path = Path(config_path).resolve()
    config = load_gateway_config(path)  # refuse a bad file here, not in every worker
    if workers > 1 and config.gateway.events and config.guard.fleet is None:
        # A pushed event reaches one worker; only a fleet carries it to the others.
        raise ConfigurationError(
            "[[gateway.events]] with several workers needs a [fleet]: an event reaches one "
            "worker, and the fleet carries its revocation to every other worker"
        )
    os.environ[CONFIG_ENV] = str(path)
    metrics_dir = None
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="tokenguard-gateway-metrics-")
        os.environ[_MULTIPROC_ENV] = metrics_dir
    else:
        os.environ.pop(_MULTIPROC_ENV, None)
    try:
        run = _granian if server == "granian" else _uvicorn
        run(host, port, workers, log_level, announce)
    finally:
        if metrics_dir is not None:
            os.environ.pop(_MULTIPROC_ENV, None)
            with contextlib.suppress(OSError):
                shutil.rmtree(metrics_dir)


def _announce(announce: Callable[[str], None], host: str, port: int, workers: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"tokenguard gateway on http://{shown}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}); "
        "decision paths /nginx /traefik /envoy/; /healthz /readyz /metrics"
    )


def _uvicorn(
    host: str, port: int, workers: int, log_level: str, announce: Callable[[str], None]
) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    options: dict[str, Any] = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # uvicorn restarts a worker that does not answer its health check in time (5 s
        # by default): on a loaded host a worker still starting up would be restarted
        # over and over. Give it the time a start takes there.
        options["timeout_worker_healthcheck"] = 30
    config = uvicorn.Config(
        "tokenguard.gateway._serve:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=_log_config(log_level),
        log_level=log_level,
        lifespan="on",
        proxy_headers=False,  # the contracts read the proxy's headers themselves
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=10,
        **options,
    )
    sock = config.bind_socket()
    bound_host, bound_port = sock.getsockname()[:2]
    _announce(announce, bound_host, bound_port, workers)
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])


def _granian(
    host: str, port: int, workers: int, log_level: str, announce: Callable[[str], None]
) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    if port == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    _announce(announce, host, port, workers)
    Granian(
        "tokenguard.gateway._serve:app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        log_level=LogLevels(log_level),
        log_dictconfig=_log_config(log_level),
        log_access=False,
    ).serve()
