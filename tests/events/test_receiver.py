"""The RFC 8935 push receiver, served by uvicorn on loopback, fed by SETs that the
embedded authorization server signs with its real keys."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tokenguard import InactiveToken, TokenGuard
from tokenguard.events import SetReceiver
from tokenguard.testing import AuthServer, guard_for

RECIPIENT = "https://rs.example/events"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SECEVENT = "application/secevent+jwt"


class Served:
    """An ASGI app on a uvicorn server in a thread, on an ephemeral loopback port."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve([sock])))
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


@pytest.fixture
def setup(auth_server: AuthServer) -> Iterator[tuple[TokenGuard, Served]]:
    guard = guard_for(auth_server)
    served = Served(SetReceiver(guard, issuer=auth_server.issuer, audience=RECIPIENT))
    yield guard, served
    served.close()
    guard.close()


def event(server: AuthServer, events: dict[str, Any], **claims: Any) -> str:
    """A SET signed by the authorization server's key."""
    return server.issue_jwt(
        typ="secevent+jwt",
        audience=RECIPIENT,
        claims={
            "exp": None,
            "sub": None,
            "client_id": None,
            "scope": None,
            "events": events,
            **claims,
        },
    )


def post(
    served: Served, body: str | bytes, content_type: str = SECEVENT, **headers: str
) -> httpx.Response:
    return httpx.post(
        served.url, content=body, headers={"content-type": content_type, **headers}, timeout=10
    )


def iss_sub(server: AuthServer, sub: str) -> dict[str, str]:
    return {"format": "iss_sub", "iss": server.issuer, "sub": sub}


@pytest.mark.parametrize(
    "event_type",
    [
        CAEP + "session-revoked",
        CAEP + "credential-change",
        RISC + "account-disabled",
        RISC + "account-purged",
        RISC + "credential-compromise",
    ],
)
def test_revoking_events_cut_the_subject_off(
    auth_server: AuthServer, setup: tuple[TokenGuard, Served], event_type: str
) -> None:
    guard, served = setup
    token = auth_server.issue_jwt(subject="alice", issued_at=time.time() - 30)
    other = auth_server.issue_jwt(subject="bob", issued_at=time.time() - 30)
    guard.validate(token)
    body = event(
        auth_server,
        {event_type: {"event_timestamp": int(time.time()) - 1}},
        sub_id=iss_sub(auth_server, "alice"),
    )
    response = post(served, body)
    assert response.status_code == 202
    assert response.content == b""
    with pytest.raises(InactiveToken):
        guard.validate(token)
    assert guard.validate(other).subject == "bob"
    newer = auth_server.issue_jwt(subject="alice", issued_at=time.time() + 1)
    assert guard.validate(newer).subject == "alice"


def test_subject_in_the_event_payload_and_opaque_format(
    auth_server: AuthServer, setup: tuple[TokenGuard, Served]
) -> None:
    guard, served = setup
    token = auth_server.issue_opaque(subject="carol")
    guard.validate(token)
    body = event(
        auth_server, {CAEP + "session-revoked": {"subject": {"format": "opaque", "id": "carol"}}}
    )
    assert post(served, body).status_code == 202
    with pytest.raises(InactiveToken):
        guard.validate(token)


def test_other_events_and_duplicates_are_acknowledged(
    auth_server: AuthServer, setup: tuple[TokenGuard, Served]
) -> None:
    guard, served = setup
    token = auth_server.issue_jwt(subject="dan", issued_at=time.time() - 30)
    body = event(auth_server, {RISC + "account-enabled": {"subject": iss_sub(auth_server, "dan")}})
    assert post(served, body).status_code == 202
    assert guard.validate(token).subject == "dan"
    email = event(
        auth_server, {CAEP + "session-revoked": {"subject": {"format": "email", "email": "d@x"}}}
    )
    assert post(served, email).status_code == 202  # names no sub: nothing to cut off
    assert guard.validate(token).subject == "dan"
    revoking = event(
        auth_server, {CAEP + "session-revoked": {}}, sub_id=iss_sub(auth_server, "dan")
    )
    assert post(served, revoking).status_code == 202
    assert post(served, revoking).status_code == 202  # a retry: acknowledged again


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert set(document) == {"err", "description"}
    return str(document["err"])


def test_rfc8935_errors(auth_server: AuthServer, setup: tuple[TokenGuard, Served]) -> None:
    served = setup[1]
    events = {CAEP + "session-revoked": {}}
    good = event(auth_server, events, sub_id=iss_sub(auth_server, "eve"))
    with AuthServer() as stranger:
        foreign = stranger.issue_jwt(
            typ="secevent+jwt",
            audience=RECIPIENT,
            claims={"iss": auth_server.issuer, "exp": None, "events": events},
        )
    header, payload, signature = good.split(".")
    cases = {
        "not a jwt": (b"hello", "invalid_request", 400),
        "bad signature": (f"{header}.{payload}.{signature[:-4]}AAAA", "invalid_key", 400),
        "other issuer's key": (foreign, "invalid_key", 400),
        "wrong issuer": (
            event(auth_server, events, iss="https://evil.example"),
            "invalid_issuer",
            400,
        ),
        "wrong audience": (
            auth_server.issue_jwt(
                typ="secevent+jwt",
                audience="https://other.example",
                claims={"exp": None, "events": events},
            ),
            "invalid_audience",
            400,
        ),
        "access token, not a SET": (
            auth_server.issue_jwt(audience=RECIPIENT),
            "invalid_request",
            400,
        ),
        "no events": (event(auth_server, {}), "invalid_request", 400),
        "with exp": (event(auth_server, events, exp=int(time.time()) + 60), "invalid_request", 400),
        "no jti": (event(auth_server, events, jti=None), "invalid_request", 400),
        "unsigned": (f"{header}.{payload}.", "invalid_key", 400),
    }
    for name, (body, err, status) in cases.items():
        response = post(served, body)
        assert (response.status_code, error_of(response)) == (status, err), name
    wrong_type = post(served, good, content_type="application/jwt")
    assert (wrong_type.status_code, error_of(wrong_type)) == (400, "invalid_request")
    too_big = post(served, "a" * 70_000)
    assert (too_big.status_code, error_of(too_big)) == (413, "invalid_request")
    get = httpx.get(served.url, timeout=5)
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"


def test_transmitter_authentication_and_keys_unavailable(auth_server: AuthServer) -> None:
    guard = guard_for(auth_server, settings={"jwks_refresh_cooldown": 0})
    served = Served(
        SetReceiver(
            guard, issuer=auth_server.issuer, audience=RECIPIENT, authorization="Bearer s3cret"
        )
    )
    try:
        body = event(auth_server, {CAEP + "session-revoked": {}}, sub_id=iss_sub(auth_server, "f"))
        response = post(served, body)
        assert (response.status_code, error_of(response)) == (401, "authentication_failed")
        assert post(served, body, authorization="Bearer wrong").status_code == 401
        auth_server.go_down()  # the keys cannot be fetched: retry later
        response = post(served, body, authorization="Bearer s3cret")
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        auth_server.come_up()
        assert post(served, body, authorization="Bearer s3cret").status_code == 202
    finally:
        served.close()
        guard.close()


def test_sync_twin(auth_server: AuthServer) -> None:
    guard = guard_for(auth_server)
    body = event(
        auth_server, {RISC + "identifier-recycled": {"subject": iss_sub(auth_server, "gus")}}
    )
    result = guard.handle_security_event(body, issuer=auth_server.issuer, audience=RECIPIENT)
    assert [(c.subject, c.issuer) for c in result.cutoffs] == [("gus", auth_server.issuer)]
    assert not result.duplicate
    assert guard.handle_security_event(
        body, issuer=auth_server.issuer, audience=RECIPIENT
    ).duplicate
    guard.close()
