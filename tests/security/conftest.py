"""Fixtures of the adversarial suite: hypothesis profiles, an "attacker" loopback server,
an insider signing key, and a log watch that fails a test if a token reaches a log line.

Hypothesis profiles: ``ci`` (bounded, the default), ``quick`` (``TOKENGUARD_FUZZ=quick``:
the extra Python versions of ``./dev test``) and ``long`` (selected by the environment
variable ``TOKENGUARD_FUZZ=long`` or ``--hypothesis-profile=long``; the option wins when
both are given).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, settings

from tokenguard import Policy, TokenGuard
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, guard_for
from . import forge, support

_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=_HEALTH, print_blob=True
)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=_HEALTH, print_blob=True
)
# The extra Python versions of ./dev test (3.12, 3.13) fuzz less: 3.11 runs "ci".
settings.register_profile(
    "quick", max_examples=50, deadline=None, suppress_health_check=_HEALTH, print_blob=True
)
# An explicit --hypothesis-profile is loaded after this module (pytest_configure), so it
# wins; without one, the environment picks. Hypothesis auto-loads its own "ci" profile
# when $CI is set: ours (registered above under the same name) replaces it.
if settings.get_current_profile_name() in ("default", "ci"):
    wanted = os.environ.get("TOKENGUARD_FUZZ")
    settings.load_profile(wanted if wanted in ("long", "quick") else "ci")


# -- the attacker's server ------------------------------------------------------------


@dataclass
class Reply:
    """What the attacker server answers: status, headers, body; ``dribble`` > 0 sends the
    body one byte at a time with that many seconds between bytes."""

    status: int = 200
    body: bytes = b'{"keys": []}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    dribble: float = 0.0
    content_length: bool = True


class Attacker:
    """A loopback HTTP server standing for a host the attacker controls. It records every
    request it receives; the tests assert that tokenguard never sent it one."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.reply = Reply()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with owner._lock:
                    owner.requests.append((self.command, self.path))
                    reply = owner.reply
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                if not reply.dribble:
                    self.wfile.write(reply.body)
                    return
                for i in range(len(reply.body)):
                    if owner._stop.wait(reply.dribble):
                        return
                    try:
                        self.wfile.write(reply.body[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

            do_POST = do_HEAD = do_PUT = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/jwks.json") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    server = Attacker()
    yield server
    server.close()


# -- keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Insider:
    """Keys the guard trusts through ``Issuer.static_jwks``: with them a test can sign any
    raw bytes validly, so a rejection can only come from the attack, never from the
    signature. ``jwks`` is the static key set; ``rsa_kid``/``ec_kid`` name the keys."""

    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    rsa_kid: str = "insider-rsa"
    ec_kid: str = "insider-ec"

    @property
    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                forge.jwk_of(self.rsa, kid=self.rsa_kid, alg="RS256", use="sig"),
                forge.jwk_of(self.ec, kid=self.ec_kid, alg="ES256", use="sig"),
            ]
        }

    def header(self, **extra: Any) -> dict[str, Any]:
        return {"alg": "RS256", "typ": "at+jwt", "kid": self.rsa_kid, **extra}

    def sign(self, header: Any, payload: Any, *, alg: str = "RS256") -> str:
        """A compact JWS over the exact ``header``/``payload`` bytes, validly signed."""
        key = self.rsa if alg.startswith(("RS", "PS")) else self.ec
        return forge.compact(header, payload, key=key, alg=alg)

    def guard(self, server: AuthServer, *policies: Policy, **policy: Any) -> TokenGuard:
        """A guard trusting ``server`` (its JWKS) and the insider keys."""
        issuer = {"static_jwks": self.jwks, "jwks_uri": server.jwks_uri}
        return guard_for(server, *policies, issuer=issuer, **policy)


@pytest.fixture(scope="session")
def insider() -> Insider:
    return Insider(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture(scope="session")
def attacker_keys() -> dict[str, Any]:
    """Keys only the attacker holds."""
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ec384": ec.generate_private_key(ec.SECP384R1()),
    }


@pytest.fixture
def other_server() -> Iterator[AuthServer]:
    """A second, independent authorization server (other keys, other issuer)."""
    with AuthServer() as server:
        yield server


# -- the log watch --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _tokens_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every token a test hands to :func:`support.rejected` (or registers) must not appear
    in any log record of the test, at any level."""
    caplog.set_level("DEBUG")
    support.SEEN.clear()
    yield
    leaked = support.leaks(caplog.text)
    support.SEEN.clear()
    assert not leaked, f"token material in log output: {leaked[:1]!r}"


@pytest.fixture
def server(auth_server_session: AuthServer) -> Iterator[AuthServer]:
    """The session's authorization server with every switch and counter reset (starting a
    server generates an RSA key; most attack cases only need its published keys)."""
    auth_server_session.reset()
    yield auth_server_session
    auth_server_session.reset()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many examples each fuzz property ran, and how they ended."""
    from .test_fuzz import EXAMPLES

    if not EXAMPLES:
        return
    profile = settings.get_current_profile_name()
    terminalreporter.section(f"tokenguard fuzz examples (hypothesis profile {profile!r})")
    total = 0
    for node, tally in sorted(EXAMPLES.items()):
        total += tally["examples"]
        others = ", ".join(f"{k} {v}" for k, v in tally.most_common() if k != "examples")
        terminalreporter.write_line(f"{tally['examples']:>7}  {node}  ({others})")
    terminalreporter.write_line(f"{total:>7}  examples in total")


__all__ = ["AUDIENCE", "Attacker", "Insider", "Reply"]
