"""The ``tokenguard`` console script: inspect, validate, dev-server, demo, gateway.

Each command lives in its own module and is added to the :data:`main` group below; a new
command is one module and one ``main.add_command`` line. Exit codes of ``validate``:
0 valid, 1 invalid (4xx), 2 usage or configuration error, 3 validation unavailable (5xx).
Output is coloured on a terminal and plain otherwise (click strips the colours when
stdout is not a TTY). Tokens and secrets are best given on standard input and in
environment variables: command-line arguments show in ``ps`` and in shell history.
Every error is one line on stderr (``error: ...``); under ``validate --json`` it is one
JSON object on stdout instead.
"""

from __future__ import annotations

import click

from .. import __version__
from .demo import demo
from .dev_server import dev_server
from .gateway import gateway
from .inspect import inspect
from .stats import stats
from .terminal import OneLineUsageErrors
from .validate import validate

__all__ = ["main"]


@click.group(cls=OneLineUsageErrors)
@click.version_option(__version__, prog_name="tokenguard")
def main() -> None:
    """Validate OAuth 2.0 access tokens: JWTs locally, opaque tokens by introspection.

    Give tokens on standard input (TOKEN "-", the default) and the client secret in
    TOKENGUARD_CLIENT_SECRET: command-line arguments are visible to other users (ps)
    and stay in your shell history.
    """


main.add_command(inspect)
main.add_command(validate)
main.add_command(dev_server)
main.add_command(demo)
main.add_command(gateway)
main.add_command(stats)
