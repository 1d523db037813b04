"""The console script, run for real (subprocess) against the embedded server."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import click
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
        "--",  # an opaque token may start with "-" (one in 64): after "--" it is no option
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
    table = out.split("\nsummary", 1)[0]
    # The revoked opaque token passes on its cached answer until forget(): the row after
    # forget() is the one that differs (issue 15: the demo taught the wrong lesson).
    assert re.search(r"\n  opaque, revoked +orders +valid \(cached\) ", table)
    assert re.search(r"\n  opaque, revoked, forgotten +orders +401 InactiveToken +guard", table)
    assert re.search(r"\n  JWT, revoked +orders +valid \(cached\) ", table)
    assert re.search(r"\n  JWT, revoked +orders-live +401 InactiveToken ", table)


def _close_pipes(process: subprocess.Popen[str]) -> None:
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


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
        _close_pipes(process)


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_help_and_version(args: list[str]) -> None:
    assert run(*args).returncode == 0


def test_validate_requires_an_audience_in_introspection_unless_allowed(
    auth_server: AuthServer,
) -> None:
    opaque = auth_server.issue_opaque(audience=None)
    env = {"TOKENGUARD_CLIENT_SECRET": auth_server.client_secret}
    args = validate_args(auth_server, "--client-id", auth_server.client_id)
    strict = run(*args, stdin=opaque, env=env)
    assert strict.returncode == 1
    assert "InvalidAudience" in strict.stdout
    assert run(*args, "--allow-missing-audience", stdin=opaque, env=env).returncode == 0


def test_a_token_starting_with_a_dash_is_read_after_double_dash(auth_server: AuthServer) -> None:
    """Random opaque tokens start with "-" one time in 64; the POSIX "--" makes it one."""
    env = {"TOKENGUARD_CLIENT_SECRET": auth_server.client_secret}
    args = validate_args(auth_server, "--client-id", auth_server.client_id, "--json")
    result = run(*args, "--", "-not-an-option-0123456789", env=env)
    assert result.returncode == 1, result.stdout + result.stderr  # read, refused: inactive
    assert json.loads(result.stdout)["error"] == "invalid_token"


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


def _paste_lines_in_testing_md() -> list[str]:
    """The sample of the dev server's paste lines that docs/testing.md shows."""
    from tests.docs.blocks import ROOT, blocks

    page = ROOT / "docs" / "testing.md"
    text = page.read_text(encoding="utf-8")
    after = text.index("They look like this")
    sample = next(b for b in blocks(page) if b.lang == "text" and text.index(b.code) > after)
    lines = [line.strip() for line in sample.code.splitlines() if line.strip()]
    assert len(lines) == 5, lines
    return lines


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
        issuer = next(line.split()[1] for line in out if line.strip().startswith("issuer "))
        for shown in _paste_lines_in_testing_md():
            # The page's sample, "…" for what it leaves out, on the page's port.
            pattern = ".*".join(re.escape(part) for part in shown.split("…"))
            pattern = pattern.replace(re.escape("http://127.0.0.1:9000"), re.escape(issuer))
            assert any(re.fullmatch(pattern, line) for line in paste), (shown, paste)
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
        _close_pipes(process)


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


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ([], ["tokenguard --help"]),  # a group without a command shows its help (below)
        (["nosuch"], ["No such command 'nosuch'", "tokenguard --help"]),
        (["validate"], ["--issuer", "tokenguard validate --help"]),
        (["validate", "--issuer", "https://a"], ["--audience"]),
        (["validate", "--issuer", "https://a", "--audience", "a", "--mode", "x"], ["--mode"]),
        (["inspect", "a", "b"], ["unexpected extra argument", "tokenguard inspect --help"]),
        (["dev-server", "--port", "99999"], ["--port", "tokenguard dev-server --help"]),
        (["demo", "--bogus"], ["--bogus", "tokenguard demo --help"]),
        (["gateway"], ["--config", "tokenguard gateway --help"]),
        (["gateway", "--config", "no-such-file.toml", "--check"], ["no-such-file.toml"]),
        (["validate", "--issuer", "http://127.0.0.1:1", "--audience", "a"], ["--issuer"]),
        (["validate", "--issuer", "https://a", "--audience", ""], ["--audience"]),
        (["validate", "--issuer", "https://a", "--audience", "a", "--scope", "a b"], ["--scope"]),
        (["validate", "--issuer", "https://a", "--audience", "a", "-"], ["no token"]),
        (["inspect"], ["no token", "standard input"]),
    ],
)
def test_each_error_is_one_line(args: list[str], names: list[str]) -> None:
    nothing = "no token" in names  # an empty standard input
    result = run(*args, stdin="\n" if nothing else "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.\n")
    assert result.returncode == 2
    assert result.stdout == ""
    if not args:
        assert result.stderr.startswith("Usage: tokenguard")
        assert "Commands:" in result.stderr
        return
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    for name in names:
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_configuration_errors_are_named_by_option_in_cli_terms() -> None:
    args = ["validate", "--issuer", "http://127.0.0.1:1", "--audience", "a"]
    result = run(*args, stdin="eyJhbGciOiJub25lIn0.eyJleHAiOjF9.")
    assert result.stderr == (
        "error: --issuer must use https "
        "(set --allow-insecure-http only for a loopback test server)\n"
    )
    both = run("validate", "--issuer", "notaurl", "--audience", "", "--json", stdin="opaque-token")
    answer = json.loads(both.stdout)
    assert answer["reasons"] == [
        "--issuer is not a valid absolute URL",
        "--audience: must not be empty",
        "an opaque token can only be validated by introspection, which needs --client-id "
        "(or TOKENGUARD_CLIENT_ID) and the client secret in TOKENGUARD_CLIENT_SECRET",
    ]
    assert both.stderr == ""


def _options(command: str) -> list[str]:
    text = run(command, "--help").stdout
    return re.findall(r"^  (--[\w-]+)", text.split("Options:", 1)[1], re.MULTILINE)


@pytest.mark.parametrize("command", sorted(main.commands))
def test_help_describes_every_option(command: str) -> None:
    """docs/cli.md is generated from these texts: an option without one is a gap there."""
    group = main

    ctx = click.Context(group)
    cmd = group.get_command(ctx, command)
    assert cmd is not None
    assert cmd.help
    assert len(cmd.help.split()) >= 8
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"tokenguard {command} {param.opts[0]} has no help text"
    # What --help prints lists the same options.
    shown = _options(command)
    declared = [p.opts[0] for p in cmd.params if isinstance(p, click.Option)]
    assert sorted(shown) == sorted([*declared, "--help"])


def test_help_of_validate_says_what_each_mode_does() -> None:
    text = " ".join(run("validate", "--help").stdout.split())
    for mode in ("jwt:", "introspect:", "hybrid:", "high_assurance:"):
        assert mode in text
    assert "never none" in text
    assert "loopback" in text


def test_inspect_on_a_terminal_prints_only_its_own_colours() -> None:
    """On a terminal click keeps escape sequences (it strips them only for pipes), so
    the escaping is what stands between a hostile token and the terminal."""
    import pty

    hostile = {"sub": "\x1b]0;owned\x07\x1b[2J", "\x1b[31mVALID\x1b[0m": "\x9b1m\u202e"}
    token = _unsigned(hostile)
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [str(SCRIPT), "inspect", token],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(secondary)
    try:
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the pty closes when the process ends
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    finally:
        os.close(primary)
        process.kill()
        process.wait(timeout=10)
    out = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "\x1b[" in out  # coloured: this really is a terminal
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # the colours the command itself prints
    assert "\x1b" not in plain
    assert "\x07" not in plain
    assert "\x9b" not in plain
    assert "\u202e" not in plain
    assert "\r" not in plain
    assert "\\x1b[31mVALID\\x1b[0m: " in plain  # the hostile name, escaped
    assert plain.startswith("UNVERIFIED")


def test_validate_points_at_inspect_for_a_jwt_of_another_issuer_or_audience(
    auth_server: AuthServer,
) -> None:
    other_issuer = auth_server.issue_jwt(claims={"iss": "https://elsewhere.example"})
    result = run(*validate_args(auth_server), stdin=other_issuer)
    assert result.returncode == 1
    assert "401 UntrustedIssuer" in result.stdout
    assert "  hint: the token names another issuer than --issuer: `tokenguard inspect`" in (
        result.stdout
    )
    assert "elsewhere" not in result.stdout  # the token's own words are for inspect to show
    other_audience = run(
        *validate_args(auth_server, "--json"), stdin=auth_server.issue_jwt(audience="urn:other")
    )
    answer = json.loads(other_audience.stdout)
    assert answer["error_class"] == "InvalidAudience"
    assert answer["hints"] == [
        "`tokenguard inspect` shows the token's aud; --audience must be one of its values"
    ]


def test_fleet_demo_never_prints_the_redis_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    """No Redis answers at the URL given: the demo starts a private one and says so,
    naming the address without the password the URL carries."""
    import shutil

    from tokenguard.cli.fleet_demo import _redis

    if shutil.which("redis-server") is None:  # pragma: no cover - installed by ./dev test
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with _redis(f"redis://demo:s3cret-word@127.0.0.1:{port}/0") as private:
        assert private.startswith("redis://127.0.0.1:")
    out = capsys.readouterr().out
    assert f"(no Redis at 127.0.0.1:{port}/0: started a private redis-server" in out
    assert "s3cret-word" not in out
