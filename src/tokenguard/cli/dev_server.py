"""``tokenguard dev-server``: the embedded authorization server, at the terminal.

It prints everything a newcomer needs next: the issuer and the audience to validate
against, the client credentials, and shell lines, ready to paste, that request a JWT and
an opaque token and validate each one with ``tokenguard validate``.
"""

from __future__ import annotations

import errno
import shlex
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING, Final

import click

from .. import __version__
from .terminal import EXIT_USAGE

if TYPE_CHECKING:
    from ..testing import AuthServer

__all__ = ["dev_server", "paste_lines"]

#: The scope the printed token requests ask for (any scope is granted by the dev server).
DEMO_SCOPE: Final = "orders:read"
_EXTRACT: Final = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"


def paste_lines(server: AuthServer) -> list[str]:
    """Shell lines that get a token of each format from ``server`` and validate it."""
    from ..testing import DEFAULT_AUDIENCE

    def request(variable: str, *extra: str) -> str:
        form = " ".join(
            f"-d {shlex.quote(item)}"
            for item in ("grant_type=client_credentials", f"scope={DEMO_SCOPE}", *extra)
        )
        return (
            f'{variable}=$(curl -s -u "$TOKENGUARD_CLIENT_ID:$TOKENGUARD_CLIENT_SECRET" '
            f"{form} {server.token_endpoint} | {_EXTRACT})"
        )

    validate = (
        f"tokenguard validate --issuer {server.issuer} --allow-insecure-http "
        f"--audience {DEFAULT_AUDIENCE} --scope {DEMO_SCOPE}"
    )
    return [
        f"export TOKENGUARD_CLIENT_ID={shlex.quote(server.client_id)} "
        f"TOKENGUARD_CLIENT_SECRET={shlex.quote(server.client_secret)}",
        request("JWT"),
        request("OPAQUE", "token_format=opaque"),
        f'echo "$JWT" | {validate}',
        f'echo "$OPAQUE" | {validate}',
    ]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _start(port: int) -> AuthServer:
    from ..testing import AuthServer

    server = AuthServer(port=port)
    try:
        return server.start()
    except OSError as error:
        server.stop()
        if error.errno == errno.EADDRINUSE:
            reason = "the port is already in use (another dev server?)"
        else:
            reason = error.strerror or type(error).__name__
        click.secho(
            f"error: cannot listen on 127.0.0.1:{port}: {reason}; "
            "choose another --port, or 0 for a free one",
            fg="red",
            err=True,
        )
        raise SystemExit(EXIT_USAGE) from None


@click.command("dev-server")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="The loopback port; 0 picks a free one.",
)
def dev_server(port: int) -> None:
    """Run the embedded authorization server on 127.0.0.1 until interrupted.

    For trials and tests only: plain HTTP, keys and client secret made at start. It
    prints the issuer, the audience of its tokens, the client credentials and shell
    lines that get a JWT and an opaque token and validate them.
    """
    from ..testing import DEFAULT_AUDIENCE

    server = _start(port)
    try:
        click.secho(
            f"tokenguard dev authorization server {__version__} "
            "(plain HTTP on loopback: for trials and tests only)",
            bold=True,
        )
        for name, value in (
            ("issuer", server.issuer),
            ("audience", f"{DEFAULT_AUDIENCE}   (the aud of the tokens it issues)"),
            ("metadata", server.metadata_url),
            ("jwks_uri", server.jwks_uri),
            ("token_endpoint", server.token_endpoint),
            ("introspection", server.introspection_endpoint),
            ("revocation", server.revocation_endpoint),
            ("client_id", server.client_id),
            ("client_secret", server.client_secret),
        ):
            click.echo(f"  {name:<15} {value}")
        click.echo(
            "\nIn another shell, paste these lines: the client credentials, a JWT and an "
            "opaque token\n(client_credentials grant; token_format=opaque asks for an "
            "opaque one), then validate each:\n"
        )
        for line in paste_lines(server):
            click.echo(f"  {line}")
        click.echo("\nPress Ctrl-C to stop.", nl=True)
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")
    finally:
        server.stop()
