"""Through a real nginx (``auth_request``, the documented configuration) to the real
gateway and an upstream: what a client sees, and what the upstream receives."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tokenguard.testing import AuthServer, DPoPKey

from .conftest import EVENTS_AUDIENCE, Gateway, start_nginx
from .processes import free_port, stop


def upstream_headers(response: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def challenge(response: httpx.Response) -> str:
    values = response.headers.get_list("www-authenticate")
    assert len(values) == 1, values
    return values[0]


def test_valid_token_reaches_upstream_with_identity(
    nginx: str, client: httpx.Client, gw_server: AuthServer
) -> None:
    token = gw_server.issue_jwt(subject="alice", scopes=["orders:read", "extra"])
    forged = {"X-Auth-Subject": "admin", "X-Auth-Scopes": "admin"}
    response = client.get(f"{nginx}/orders/42?x=1", headers=bearer(token, **forged))
    assert response.status_code == 200
    seen = upstream_headers(response)
    assert response.json()["path"] == "/orders/42?x=1"
    assert seen["x-auth-subject"] == ["alice"]
    assert seen["x-auth-scopes"] == ["extra orders:read"]
    assert seen["x-auth-client-id"] == [gw_server.client_id]
    assert seen["x-auth-issuer"] == [gw_server.issuer]


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"lifetime": -600}, 401, 'error="invalid_token"'),
        ({"audience": "urn:other"}, 401, 'error="invalid_token"'),
        ({"scopes": ["orders:write"]}, 403, 'error="insufficient_scope", '),
    ],
    ids=["expired", "wrong-audience", "missing-scope"],
)
def test_refused_tokens(
    nginx: str,
    client: httpx.Client,
    gw_server: AuthServer,
    kwargs: dict[str, Any],
    status: int,
    error: str,
) -> None:
    kwargs.setdefault("scopes", ["orders:read"])
    response = client.get(f"{nginx}/orders/1", headers=bearer(gw_server.issue_jwt(**kwargs)))
    assert response.status_code == status
    assert error in challenge(response)
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] in ("invalid_token", "insufficient_scope")
    assert "x-auth-subject" not in response.text


def test_missing_scope_names_the_route_scopes(
    nginx: str, client: httpx.Client, gw_server: AuthServer
) -> None:
    token = gw_server.issue_jwt(scopes=["orders:read"])
    response = client.post(f"{nginx}/orders", headers=bearer(token), content=b"{}")
    assert response.status_code == 403
    assert 'scope="orders:read orders:write"' in challenge(response)
    ok = client.post(
        f"{nginx}/orders",
        headers=bearer(gw_server.issue_jwt(scopes=["orders:read", "orders:write"])),
        content=b"{}",
    )
    assert ok.status_code == 200
    assert ok.json()["method"] == "POST"


def test_no_token_and_malformed_header(nginx: str, client: httpx.Client) -> None:
    missing = client.get(f"{nginx}/orders/1")
    assert missing.status_code == 401
    assert challenge(missing).startswith("Bearer, DPoP algs=")  # the policy accepts both
    # A 400 must reach the client as 400 (nginx alone would make it a 500).
    malformed = client.get(f"{nginx}/orders/1", headers={"Authorization": "Bearer a b"})
    assert malformed.status_code == 400
    assert 'error="invalid_request"' in challenge(malformed)
    assert malformed.json()["error"] == "invalid_request"
    # RFC 6750 §2.3 query tokens are refused, as by every framework adapter.
    in_query = client.get(f"{nginx}/orders/1?access_token=abc")
    assert in_query.status_code == 400


def test_unmatched_route_is_denied(nginx: str, client: httpx.Client, gw_server: AuthServer) -> None:
    token = gw_server.issue_jwt(scopes=["orders:read"])
    for path in ("/elsewhere", "/admin/x", "/orders"):
        method = "PATCH" if path == "/orders" else "GET"
        response = client.request(method, f"{nginx}{path}", headers=bearer(token))
        assert response.status_code == 403, path
        assert response.json()["error"] == "access_denied"
    # The host route matches only its host.
    admin = gw_server.issue_jwt(scopes=["orders:read", "admin"])
    response = client.get(f"{nginx}/admin/x", headers=bearer(admin, Host="admin.example.com"))
    assert response.status_code == 200


def test_public_route_strips_forged_identity(nginx: str, client: httpx.Client) -> None:
    response = client.get(f"{nginx}/public/a/b", headers={"X-Auth-Subject": "admin"})
    assert response.status_code == 200
    assert "x-auth-subject" not in upstream_headers(response)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/public/../orders/1", 401),
        ("/public/%2e%2e/orders/1", 401),
        ("/public/..;/orders/1", 401),
        ("/public//..//orders/1", 400),
        ("/orders/1/../../public/x", 200),
        ("/orders/1/..//x/../../public/", 400),
        ("/public/..%2forders/1", 400),
        ("/public/%00", 400),
    ],
)
def test_paths_are_matched_as_the_upstream_would_resolve_them(
    nginx: str, path: str, status: int
) -> None:
    # An HTTP client would resolve the dot segments itself: send the raw request line.
    port = int(nginx.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b" ", 2)[1] == str(status).encode(), answer


def test_identity_header_injection_is_neutralised(
    nginx: str, client: httpx.Client, gw_server: AuthServer
) -> None:
    token = gw_server.issue_jwt(
        subject="eve\r\nX-Injected: 1\nZ: ü",
        scopes=["orders:read"],
        client_id="c\x00d e%",
    )
    response = client.get(f"{nginx}/orders/1", headers=bearer(token))
    assert response.status_code == 200
    seen = upstream_headers(response)
    assert "x-injected" not in seen
    assert "z" not in seen
    assert seen["x-auth-subject"] == ["eve%0D%0AX-Injected:%201%0AZ:%20%C3%BC"]
    assert seen["x-auth-client-id"] == ["c%00d%20e%25"]


def test_dpop_bound_tokens_need_their_proof(
    nginx: str, client: httpx.Client, gw_server: AuthServer
) -> None:
    key = DPoPKey()
    token = gw_server.issue_jwt(scopes=["orders:read"], claims={"cnf": key.cnf})
    url = f"{nginx}/orders/5"
    proof = key.proof("GET", url, access_token=token)
    allowed = client.get(url + "?q=1", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert allowed.status_code == 200
    assert upstream_headers(allowed)["x-auth-subject"] == ["user-1"]
    replayed = client.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert replayed.status_code == 401
    assert 'error="invalid_dpop_proof"' in challenge(replayed)
    elsewhere = key.proof("GET", f"{nginx}/orders/6", access_token=token)
    wrong_url = client.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": elsewhere})
    assert wrong_url.status_code == 401
    # Sent as a bearer token, without its proof: refused, and the challenge offers DPoP.
    as_bearer = client.get(url, headers=bearer(token))
    assert as_bearer.status_code == 401
    assert "DPoP" in challenge(as_bearer)


def test_revoked_token_is_blocked_at_once_on_high_assurance(
    nginx: str, client: httpx.Client, gw_server: AuthServer
) -> None:
    token = gw_server.issue_jwt(scopes=["orders:read"])
    opaque = gw_server.issue_opaque(scopes=["orders:read"])
    for credential in (token, opaque):
        assert client.get(f"{nginx}/live/1", headers=bearer(credential)).status_code == 200
        gw_server.revoke(credential)
        response = client.get(f"{nginx}/live/1", headers=bearer(credential))
        assert response.status_code == 401
        assert 'error="invalid_token"' in challenge(response)


def test_push_revocation_event_blocks_the_subject_at_once(
    nginx: str, gateway: Gateway, client: httpx.Client, gw_server: AuthServer
) -> None:
    """A CAEP session-revoked event pushed to the gateway (RFC 8935) refuses the subject's
    JWTs at the next request, although the token is valid, cached and never introspected
    on this hybrid route."""
    subject = "pushed-user"
    token = gw_server.issue_jwt(subject=subject, scopes=["orders:read"])
    other = gw_server.issue_jwt(subject="someone-else", scopes=["orders:read"])
    for credential in (token, other):
        assert client.get(f"{nginx}/orders/1", headers=bearer(credential)).status_code == 200
    event = gw_server.issue_jwt(
        typ="secevent+jwt",
        audience=EVENTS_AUDIENCE,
        claims={
            "exp": None,
            "sub": None,
            "client_id": None,
            "scope": None,
            "events": {
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {
                    "subject": {"format": "iss_sub", "iss": gw_server.issuer, "sub": subject},
                    "event_timestamp": int(time.time()),
                }
            },
        },
    )
    pushed = client.post(
        f"{gateway.url}/events",
        content=event,
        headers={"content-type": "application/secevent+jwt"},
    )
    assert pushed.status_code == 202, pushed.text
    refused = client.get(f"{nginx}/orders/1", headers=bearer(token))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in challenge(refused)
    assert client.get(f"{nginx}/orders/1", headers=bearer(other)).status_code == 200
    # A forged event (not signed by the transmitter) is refused and revokes nothing.
    forged = event[: event.rindex(".")] + ".AAAA"
    bad = client.post(
        f"{gateway.url}/events",
        content=forged,
        headers={"content-type": "application/secevent+jwt"},
    )
    assert bad.status_code == 400
    assert bad.json()["err"] in ("invalid_key", "authentication_failed", "invalid_request")


def test_authorization_server_down_is_503(
    nginx: str, client: httpx.Client, gw_server: AuthServer
) -> None:
    token = gw_server.issue_jwt(scopes=["orders:read"])
    assert client.get(f"{nginx}/orders/1", headers=bearer(token)).status_code == 200
    gw_server.go_down()
    try:
        response = client.get(f"{nginx}/live/1", headers=bearer(token))
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert response.headers["retry-after"] == "5"
        # A JWT route keeps working from the cached keys.
        fresh = gw_server.issue_jwt(scopes=["orders:read"])
        assert client.get(f"{nginx}/orders/1", headers=bearer(fresh)).status_code == 200
    finally:
        gw_server.come_up()


def test_gateway_unreachable_is_503(upstream: int, client: httpx.Client, tmp_path: Path) -> None:
    process, port = start_nginx(tmp_path, free_port(), upstream)
    try:
        response = client.get(f"http://127.0.0.1:{port}/orders/1")
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
    finally:
        stop(process)


def test_access_log_has_no_token_or_claims(
    nginx: str, client: httpx.Client, gw_server: AuthServer, gateway: Gateway
) -> None:
    token = gw_server.issue_jwt(subject="secret-subject-77", scopes=["orders:read"])
    client.get(f"{nginx}/orders/1?access_token={token}", headers=bearer(token))
    client.get(f"{nginx}/orders/2", headers=bearer(token + "x"))
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline and '"/orders/2"' not in text:
        time.sleep(0.05)
        text = gateway.log.read_text()
    assert '"/orders/2"' in text
    assert token.split(".")[2][:24] not in text
    assert "secret-subject-77" not in text
    assert "access_token" not in text
