"""The console script, run for real (subprocess) against the embedded server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer

SCRIPT = Path(sys.executable).with_name("tokenguard")


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_inspect_decodes_without_verifying(auth_server: AuthServer) -> None:
    token = auth_server.issue_jwt(subject="alice", scopes=["orders:read"], lifetime=600)
    result = run("inspect", token)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "UNVERIFIED" in out
    assert "format: jws" in out
    assert '"at+jwt"' in out
    assert '"alice"' in out
    assert re.search(r"expires \d{4}-\d\d-\d\dT.* \(in 1\d\.\dm\)", out)
    assert "\x1b[" not in out  # no colours when not a terminal
    assert auth_server.request_count("jwks") == 0  # never sent anywhere


def test_inspect_from_stdin_and_other_formats() -> None:
    assert "format: opaque" in run("inspect", "-", stdin="abc123\n").stdout
    expired = run("inspect", "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.")
    assert "expired 1970-01-01" in expired.stdout
    bad = run("inspect", "not a token")
    assert bad.returncode == 1
    assert "not a well-formed" in bad.stdout


def validate_args(server: AuthServer, *extra: str) -> list[str]:
    return [
        "validate",
        "--issuer",
        server.issuer,
        "--allow-insecure-http",
        "--audience",
        DEFAULT_AUDIENCE,
        *extra,
    ]


def test_validate_jwt_and_opaque(auth_server: AuthServer) -> None:
    token = auth_server.issue_jwt(subject="alice", scopes=["orders:read"])
    result = run(*validate_args(auth_server, "--scope", "orders:read"), token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VALID" in result.stdout
    assert "alice" in result.stdout

    opaque = auth_server.issue_opaque(subject="bob")
    secret_env = {"TOKENGUARD_CLIENT_SECRET": auth_server.client_secret}
    result = run(
        *validate_args(auth_server, "--client-id", auth_server.client_id, "--json"),
        opaque,
        env=secret_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["valid"] is True
    assert answer["token"]["subject"] == "bob"
    assert answer["token"]["source"] == "introspection"
    assert auth_server.client_secret not in result.stdout + result.stderr
    assert opaque not in result.stdout + result.stderr


def test_validate_exit_codes(auth_server: AuthServer) -> None:
    expired = auth_server.issue_jwt(lifetime=-600)
    result = run(*validate_args(auth_server), expired)
    assert result.returncode == 1
    assert "ExpiredToken" in result.stdout
    assert 'WWW-Authenticate: Bearer error="invalid_token"' in result.stdout

    scoped = run(
        *validate_args(auth_server, "--scope", "orders:admin", "--json"), auth_server.issue_jwt()
    )
    assert scoped.returncode == 1
    assert json.loads(scoped.stdout)["status"] == 403

    usage = run("validate", "--issuer", "http://example.com", "--audience", "a", "tok")
    assert usage.returncode == 2  # plain http to a non-loopback host is refused
    assert run("validate").returncode == 2

    auth_server.go_down()
    down = run(*validate_args(auth_server), auth_server.issue_jwt())
    assert down.returncode == 3
    assert "ValidationUnavailable" in down.stdout


def test_demo_runs_end_to_end() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in (
        "401 InactiveToken",
        "401 ExpiredToken",
        "401 InvalidAudience",
        "403 InsufficientScope",
    ):
        assert expected in out
    assert "summary" in out
    assert out.count("valid (cached)") >= 2


def test_dev_server_prints_its_issuer() -> None:
    process = subprocess.Popen(
        [str(SCRIPT), "dev-server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        issuer = next(line.split()[-1] for line in lines if line.strip().startswith("issuer"))
        import httpx

        assert httpx.get(f"{issuer}/.well-known/openid-configuration").json()["issuer"] == issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_docs_testing_example_runs_as_written(tmp_path: Path) -> None:
    """The three-line pytest example of docs/testing.md, run by a fresh pytest."""
    doc = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    example = re.search(r"```python\n(def test_orders_can_be_read.*?)```", doc, re.S)
    assert example is not None
    (tmp_path / "test_example.py").write_text(textwrap.dedent(example.group(1)))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_help_and_version(args: list[str]) -> None:
    assert run(*args).returncode == 0


def test_validate_requires_an_audience_in_introspection_unless_allowed(
    auth_server: AuthServer,
) -> None:
    opaque = auth_server.issue_opaque(audience=None)
    env = {"TOKENGUARD_CLIENT_SECRET": auth_server.client_secret}
    args = validate_args(auth_server, "--client-id", auth_server.client_id)
    strict = run(*args, opaque, env=env)
    assert strict.returncode == 1
    assert "InvalidAudience" in strict.stdout
    assert run(*args, "--allow-missing-audience", opaque, env=env).returncode == 0
