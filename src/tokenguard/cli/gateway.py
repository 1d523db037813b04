"""``tokenguard gateway``: the forward-auth service for nginx, Traefik and Envoy.

Needs the ``gateway`` extra (an ASGI server and Prometheus metrics). The configuration
is checked before anything listens: an invalid file is refused with the line and the
reason of each problem (exit code 2). See ``docs/gateway.md``.
"""

from __future__ import annotations

import sys

import click

from ..errors import ConfigurationError
from .terminal import EXIT_USAGE

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
    "--port", type=click.IntRange(0, 65535), default=8181, show_default=True, help="0: any free."
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Processes."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Of the server's own messages (the access log is always on stdout, if enabled).",
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
    """Serve the forward-auth gateway for nginx, Traefik and Envoy (needs tokenguard[gateway])."""
    try:
        from ..gateway.config import load_gateway_config
        from ..gateway.server import serve
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        click.secho(
            f"the gateway needs its extra: pip install 'tokenguard[gateway]' ({error.name})",
            fg="red",
            err=True,
        )
        sys.exit(EXIT_USAGE)
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
        click.secho(f"{config_path}: {error.description}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
