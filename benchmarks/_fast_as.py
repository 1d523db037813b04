"""A fast RFC 7662 introspection endpoint in its own process, for the transport benchmarks.

The embedded ``AuthServer`` (authlib on a thread-per-connection ``http.server``) answers
a few hundred to a couple of thousand introspections a second: below what the HTTP
clients under test can send, so against it every client would look the same. This
server is a bare asyncio protocol in a child process (its own interpreter, GIL and, on
an idle machine, core): it parses HTTP/1.1 keep-alive requests, checks the client's
Basic credentials, and answers from the token alone. Tokens are self-validating
(``<nonce>.<HMAC of the nonce>``, the key shared with the parent), as some real
authorization servers issue them, so the parent can mint millions without a round trip;
anything else (a random string from a flood) is inactive.

It counts requests and the most requests it had in progress at once, and can answer
after a delay (an authorization server's own latency, for the flood benchmark). The
parent reads and sets these on a control path, ``/_control``, unauthenticated: loopback
only, benchmark only.

    python benchmarks/_fast_as.py <hex key>     # prints "PORT <n>", serves until killed
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

HOST = "127.0.0.1"
CLIENT_ID = "bench-rs"
CLIENT_SECRET = "bench-secret-" + "x" * 20
AUDIENCE = "urn:test:api"
SCOPES = "orders:read orders:write"


def _mac(key: bytes, nonce: str) -> str:
    digest = hmac.new(key, nonce.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint(key: bytes) -> str:
    """A new valid opaque token (43 characters of nonce and MAC)."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_mac(key, nonce)}"


def random_token() -> str:
    """An opaque string of the same shape that this server never issued."""
    return f"{secrets.token_urlsafe(16)}.{secrets.token_urlsafe(16)[:22]}"


# -- the child process ----------------------------------------------------------------


class _State:
    def __init__(self, key: bytes, issuer: str) -> None:
        self.key = key
        self.issuer = issuer
        self.expected_auth = (
            "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        )
        self.requests = 0
        self.active = 0
        self.peak = 0
        self.delay = 0.0

    def answer(self, token: str) -> dict[str, Any]:
        nonce, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, _mac(self.key, nonce)):
            return {"active": False}
        now = int(time.time())
        return {
            "active": True,
            "token_type": "Bearer",
            "iss": self.issuer,
            "sub": "user-" + nonce[:6],
            "aud": AUDIENCE,
            "client_id": "bench-client",
            "scope": SCOPES,
            "iat": now - 10,
            "exp": now + 3600,
        }


class _Protocol(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.request(lines[0].split(" "), headers, body)

    def request(self, line: list[str], headers: dict[str, str], body: bytes) -> None:
        state = self.state
        path = line[1] if len(line) > 1 else "/"
        if path.startswith("/_control"):
            form = parse_qs(body.decode())
            if "delay" in form:
                state.delay = float(form["delay"][0])
            if "reset" in form:
                state.requests = state.peak = 0
            self.send(200, json.dumps({"requests": state.requests, "peak": state.peak}).encode())
            return
        state.requests += 1
        if headers.get("authorization") != state.expected_auth:
            self.send(401, b'{"error":"invalid_client"}')
            return
        token = parse_qs(body.decode()).get("token", [""])[0]
        document = json.dumps(state.answer(token)).encode()
        if state.delay:
            state.active += 1
            state.peak = max(state.peak, state.active)
            asyncio.get_running_loop().call_later(state.delay, self.delayed, document)
        else:
            state.peak = max(state.peak, 1)
            self.send(200, document)

    def delayed(self, document: bytes) -> None:
        self.state.active -= 1
        self.send(200, document)

    def send(self, status: int, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(body), body)
        )


async def _serve(key: bytes) -> None:
    loop = asyncio.get_running_loop()
    state = _State(key, "")
    server = await loop.create_server(lambda: _Protocol(state), HOST, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    state.issuer = f"http://{HOST}:{port}"
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


# -- the parent's handle --------------------------------------------------------------


@dataclass
class FastAS:
    """The running child: its URLs, credentials and the key that makes valid tokens."""

    port: int
    key: bytes
    process: subprocess.Popen[str]
    where: str = "in a child process (asyncio, self-validating tokens)"

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks.json"  # never fetched: opaque tokens only

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET

    def opaque_tokens(self, count: int) -> list[str]:
        return [mint(self.key) for _ in range(count)]

    def control(self, **form: Any) -> dict[str, int]:
        import http.client

        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            body = "&".join(f"{name}={value}" for name, value in form.items())
            connection.request("POST", "/_control", body=body)
            answer: dict[str, int] = json.loads(connection.getresponse().read())
            return answer
        finally:
            connection.close()

    def request_count(self, endpoint: str = "introspection") -> int:
        return self.control()["requests"]


@contextmanager
def fast_as() -> Iterator[FastAS]:
    key = os.urandom(32)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, key.hex()], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError("the benchmark authorization server did not start")
        yield FastAS(int(line.split()[1]), key, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(_serve(bytes.fromhex(sys.argv[1])))
