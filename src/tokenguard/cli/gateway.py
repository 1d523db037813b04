"""``tokenguard gateway``: the forward-auth service for nginx, Traefik and Envoy.

Needs the ``gateway`` extra (an ASGI server and Prometheus metrics). The configuration
is checked before anything listens: an invalid file is refused with the line and the
reason of each problem (exit code 2). See ``docs/gateway.md``.
"""

from __future__ import annotations

import click

from ..errors import ConfigurationError
from .terminal import CommandError

__all__ = ["gateway"]


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The gateway configuration (TOML: issuers, policies, [[routes]], [gateway]).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8181,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes (event receivers with several workers need a [fleet]).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Level of the server's own messages; the access log ([gateway] access_log) "
    "goes to stdout whatever the level.",
)
@click.option(
    "--server",
    type=click.Choice(["uvicorn", "granian"]),
    default="uvicorn",
    show_default=True,
    help="The ASGI server (granian needs: pip install granian).",
)
@click.option("--check", is_flag=True, help="Check the configuration and exit.")
def gateway(
    config_path: str,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    server: str,
    check: bool,
) -> None:
    """Serve the forward-auth gateway for nginx, Traefik and Envoy (needs the gateway extra).

    The configuration is checked before anything listens; an invalid file is refused
    with the line and reason of each problem (exit code 2). See docs/gateway.md.
    """
    try:
        from ..gateway.config import load_gateway_config
        from ..gateway.server import serve
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise CommandError(
            f"the gateway needs the gateway extra ({error.name} is missing): "
            'pip install ".[gateway]" in a tokenguard checkout'
        ) from None
    try:
        config = load_gateway_config(config_path)
        if check:
            click.echo(
                f"{config_path}: valid ({len(config.routes)} routes, "
                f"{len(config.guard.policies)} policies, {len(config.guard.issuers)} issuers)"
            )
            return
        serve(
            config_path,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            announce=click.echo,
            server=server,
        )
    except ConfigurationError as error:
        raise CommandError(f"{config_path}: {error.description}") from None
