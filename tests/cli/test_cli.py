"""The console script, run for real (subprocess) against the embedded server."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tokenguard.cli import main
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
    token = auth_server.issue_jwt(subject="alice", scopes=["orders:read"], lifetime=660)
    exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
    result = run("inspect", token)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0].startswith("UNVERIFIED")
    assert "format: jws" in out
    assert '"at+jwt"' in out
    assert '"alice"' in out
    # The absolute time is exact; the relative one depends on when the CLI ran (exact
    # values are checked with a frozen clock below), so only its shape is asserted here.
    when = dt.datetime.fromtimestamp(exp, tz=dt.UTC).isoformat()
    assert f"  exp: {exp}\n      expires {when} (in " in out
    assert re.search(rf"expires {re.escape(when)} \(in \d+(\.\d)?[smhd]\)\n", out)
    assert "\x1b[" not in out  # no colours when not a terminal
    assert auth_server.request_count("jwks") == 0  # never sent anywhere


def _unsigned(claims: dict[str, object]) -> str:
    header = _b64(json.dumps({"alg": "none"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


@freeze_time("2026-03-01T12:00:00Z")
def test_inspect_shows_times_relative_to_now() -> None:
    now = int(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC).timestamp())
    claims = {"exp": now + 660, "iat": now - 90, "nbf": now + 5400, "auth_time": now - 172800}
    result = CliRunner().invoke(main, ["inspect", "-"], input=_unsigned(claims))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "expires 2026-03-01T12:11:00+00:00 (in 11.0m)" in out
    assert "      2026-03-01T11:58:30+00:00 (1.5m ago)" in out
    assert "      2026-03-01T13:30:00+00:00 (in 1.5h)" in out
    assert "      2026-02-27T12:00:00+00:00 (2.0d ago)" in out

    expired = CliRunner().invoke(main, ["inspect", "-"], input=_unsigned({"exp": now - 30}))
    assert "expired 2026-03-01T11:59:30+00:00 (30s ago)" in expired.output
    odd = {"exp": "soon", "iat": 1e300, "nbf": True}
    shown = CliRunner().invoke(main, ["inspect", "-"], input=_unsigned(odd)).output
    assert shown.count("(not a number)") == 2
    assert "(out of range)" in shown


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


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def test_inspect_escapes_what_could_drive_a_terminal() -> None:
    """Names and values from a token are untrusted: no escape sequence, bidi override or
    line separator reaches the terminal, and odd JSON does not crash the command."""
    attack = "\x1b[2K\x1b[1A\rVALID \u202egnp.exe\u2028"
    header = json.dumps({"alg": "none", attack: attack}).encode()
    name = json.dumps(attack)  # the same name, JSON-escaped as a real token would carry it
    claims = ('{"sub": "a", "sub": "b", "\\ud800": 1, ' + name + ': {"x": "\\u001b"}}').encode()
    result = run("inspect", "-", stdin=f"{_b64(header)}.{_b64(claims)}.")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for raw in ("\x1b", "\r", "\u202e", "\u2028", "\ud800"):
        assert raw not in out
    assert out.count("\\x1b[2K\\x1b[1A\\x0dVALID \\u202egnp.exe\\u2028:") == 2  # names
    assert "\\ud800" in out
    assert "duplicate member names" in out
    assert out.splitlines()[0].startswith("UNVERIFIED")


def test_help_steers_tokens_and_secrets_away_from_arguments() -> None:
    for command in ("inspect", "validate"):
        text = " ".join(run(command, "--help").stdout.split())
        assert "standard input" in text
        assert "shell history" in text
    text = " ".join(run("validate", "--help").stdout.split())
    assert "TOKENGUARD_CLIENT_SECRET" in text
    assert "TOKENGUARD_CLIENT_ID" in text


def test_validate_names_the_configuration_problem(auth_server: AuthServer) -> None:
    args = ["validate", "--issuer", auth_server.issuer, "--audience", DEFAULT_AUDIENCE]
    result = run(*args, stdin=auth_server.issue_jwt())
    assert result.returncode == 2
    assert "issuer must use https" in result.stderr
    assert "--allow-insecure-http" in result.stderr
    assert result.stdout == ""

    as_json = run(*args, "--json", stdin=auth_server.issue_jwt())
    assert as_json.returncode == 2
    answer = json.loads(as_json.stdout)
    assert answer["valid"] is False
    assert answer["error"] == "configuration_error"
    assert any("must use https" in reason for reason in answer["reasons"])
    assert any("--allow-insecure-http" in hint for hint in answer["hints"])

    usage = run("validate", "--audience", "a", "--json")
    assert usage.returncode == 2
    assert json.loads(usage.stdout)["error"] == "usage_error"
    assert "--issuer" in json.loads(usage.stdout)["description"]
    assert auth_server.request_count("metadata") == 0


def test_validate_names_missing_client_credentials(auth_server: AuthServer) -> None:
    opaque = auth_server.issue_opaque()
    no_env = {"TOKENGUARD_CLIENT_ID": "", "TOKENGUARD_CLIENT_SECRET": ""}
    result = run(*validate_args(auth_server), stdin=opaque, env=no_env)
    assert result.returncode == 2
    assert "--client-id" in result.stderr
    assert "TOKENGUARD_CLIENT_SECRET" in result.stderr
    assert "opaque" in result.stderr

    id_only = run(*validate_args(auth_server, "--client-id", "x", "--json"), stdin=opaque)
    assert id_only.returncode == 2
    assert "needs a client secret" in json.loads(id_only.stdout)["description"]

    secret_only = run(
        *validate_args(auth_server), stdin=opaque, env={"TOKENGUARD_CLIENT_SECRET": "s"}
    )
    assert secret_only.returncode == 2
    assert "needs --client-id" in secret_only.stderr

    live = run(*validate_args(auth_server, "--mode", "high_assurance"), auth_server.issue_jwt())
    assert live.returncode == 2
    assert "--mode high_assurance" in live.stderr
    assert auth_server.request_count("introspection") == 0  # refused before any request


def test_validate_wrong_secret_is_unavailable_with_its_reason(auth_server: AuthServer) -> None:
    env = {"TOKENGUARD_CLIENT_ID": auth_server.client_id, "TOKENGUARD_CLIENT_SECRET": "wrong"}
    opaque = auth_server.issue_opaque()
    result = run(*validate_args(auth_server), stdin=opaque, env=env)
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "UNAVAILABLE: 503 ValidationUnavailable"
    assert "  reason: introspection refused our client credentials (HTTP 401)" in lines
    assert "INVALID" not in result.stdout
    assert result.stderr == ""  # the library's log line is reported, not dumped

    as_json = json.loads(run(*validate_args(auth_server, "--json"), stdin=opaque, env=env).stdout)
    assert as_json["status"] == 503
    assert as_json["reasons"] == ["introspection refused our client credentials (HTTP 401)"]


def test_validate_notes_a_secret_given_as_an_argument(auth_server: AuthServer) -> None:
    args = validate_args(auth_server, "--client-id", auth_server.client_id)
    token = auth_server.issue_opaque()
    on_argv = run(*args, "--client-secret", auth_server.client_secret, stdin=token)
    assert on_argv.returncode == 0, on_argv.stdout + on_argv.stderr
    assert "TOKENGUARD_CLIENT_SECRET" in on_argv.stderr
    from_env = run(*args, stdin=token, env={"TOKENGUARD_CLIENT_SECRET": auth_server.client_secret})
    assert from_env.returncode == 0
    assert from_env.stderr == ""


def _dev_server_output(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return lines
    raise AssertionError("\n".join(lines))


def test_dev_server_prints_audience_and_lines_to_paste() -> None:
    process = subprocess.Popen(
        [str(SCRIPT), "dev-server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out = _dev_server_output(process)
        assert any(re.match(rf"\s+audience\s+{DEFAULT_AUDIENCE}\b", line) for line in out)
        start = next(i for i, line in enumerate(out) if line.startswith("In another shell"))
        paste = [line.strip() for line in out[start + 1 :] if line.startswith("  ")]
        assert sum("/token" in line for line in paste) == 2
        assert sum("token_format=opaque" in line for line in paste) == 1
        env = {**os.environ, "PATH": f"{SCRIPT.parent}{os.pathsep}{os.environ['PATH']}"}
        result = subprocess.run(
            ["bash", "-c", "set -e\n" + "\n".join(paste)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("VALID") == 2
        assert "source      jwt" in result.stdout
        assert "source      introspection" in result.stdout
        process.terminate()  # SIGTERM stops it as Ctrl-C does
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert process.stdout.read().strip() == "stopped"
    finally:
        process.kill()
        process.wait(timeout=10)


def test_dev_server_on_a_busy_port_says_so_in_one_line(auth_server: AuthServer) -> None:
    result = run("dev-server", "--port", str(auth_server.port))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"127.0.0.1:{auth_server.port}" in result.stderr
    assert "already in use" in result.stderr


def test_validate_with_client_secret_post(auth_server: AuthServer) -> None:
    env = {
        "TOKENGUARD_CLIENT_ID": auth_server.client_id,
        "TOKENGUARD_CLIENT_SECRET": auth_server.client_secret,
    }
    args = validate_args(auth_server, "--client-auth", "client_secret_post", "--json")
    result = run(*args, stdin=auth_server.issue_opaque(), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["token"]["source"] == "introspection"
    assert auth_server.client_auth_count("introspection", "client_secret_post") == 1
    assert auth_server.client_auth_count("introspection", "client_secret_basic") == 0
