"""The README's quick start, run as written against the embedded server (sync and async).

Only the values a reader would change are substituted: the issuer URL (plus
``allow_insecure_http``, since the test server is plain HTTP on loopback), the client
credentials and the audience.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start(server: AuthServer) -> str:
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code.group(1)
    source = source.replace(
        '"https://as.example.com",', f'"{server.issuer}", allow_insecure_http=True,', 1
    )
    source = source.replace('"https://as.example.com"', f'"{server.issuer}"')
    source = source.replace(
        'ClientSecretBasic("rs-id", "rs-secret")',
        f'ClientSecretBasic("{server.client_id}", "{server.client_secret}")',
    )
    return source.replace('"urn:orders"', f'"{DEFAULT_AUDIENCE}"')


def test_readme_quick_start_sync_and_async(auth_server: AuthServer) -> None:
    source = quick_start(auth_server)
    sync_part, _, async_line = source.rpartition("\ninfo = await")
    for token in (
        auth_server.issue_jwt(scopes=["orders:read"], alg="ES256"),
        auth_server.issue_opaque(scopes=["orders:read"]),
    ):
        namespace: dict[str, object] = {"token": token}
        exec(sync_part, namespace)  # noqa: S102 - our own README
        assert namespace["info"].has_scopes("orders:read")  # type: ignore[attr-defined]
        body = textwrap.indent("info = await" + async_line, "    ")
        exec(f"async def run():\n{body}\n    return info", namespace)  # noqa: S102
        info = asyncio.run(namespace["run"]())  # type: ignore[operator]
        assert info.has_scopes("orders:read")
        namespace["guard"].close()  # type: ignore[attr-defined]
