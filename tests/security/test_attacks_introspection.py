"""Introspection attacks (RFC 7662): answers that are not quite "active", active answers for
another audience or issuer, answers that are not JSON objects, huge, slow or redirected
answers, and cache poisoning between policies and between similar tokens.

Answers are forced with ``AuthServer.set_failure("introspection", ...)``; slow and
unbounded answers come from a second loopback server standing for a hostile endpoint.
"""

from __future__ import annotations

import gzip
import time
import zlib
from typing import Any

import httpx
import pytest

from tokenguard import (
    ClientSecretBasic,
    ExpiredToken,
    InactiveToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidSignature,
    InvalidTokenBinding,
    Issuer,
    Policy,
    TokenGuard,
    TokenInfo,
    TokenNotYetValid,
    UnsupportedToken,
    UntrustedIssuer,
    ValidationUnavailable,
)
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for
from . import forge
from .conftest import Attacker, Reply
from .support import accepted, outcome, rejected

FAST = {"http_timeout": 0.3}


def _answer(server: AuthServer, **members: Any) -> dict[str, Any]:
    """A complete active answer for the default audience; ``None`` removes a member."""
    now = int(time.time())
    body: dict[str, Any] = {
        "active": True,
        "iss": server.issuer,
        "aud": AUDIENCE,
        "sub": "user-1",
        "client_id": server.client_id,
        "scope": "orders:read",
        "token_type": "Bearer",
        "exp": now + 300,
        "iat": now,
    }
    for name, value in members.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def _guard(server: AuthServer, issuer: dict[str, Any] | None = None, **policy: Any) -> TokenGuard:
    # Every validation asks the server (no answer reuse), so each case sees its answer.
    policy.setdefault("introspection_cache_ttl", 0)
    policy.setdefault("inactive_cache_ttl", 0)
    policy.setdefault("verified_cache_ttl", 0)
    return guard_for(server, issuer=issuer, **policy)


@pytest.mark.parametrize(
    "active",
    [
        pytest.param("true", id="string-true"),
        pytest.param("True", id="string-True"),
        pytest.param(1, id="one"),
        pytest.param(1.0, id="one-float"),
        pytest.param("1", id="string-one"),
        pytest.param([True], id="list-true"),
        pytest.param({"value": True}, id="object"),
        pytest.param("yes", id="yes"),
        pytest.param("__missing__", id="missing"),
        pytest.param(None, id="null"),
        pytest.param(False, id="false"),
    ],
)
def test_active_must_be_the_json_boolean_true(
    server: AuthServer, check: Driver, active: Any
) -> None:
    """RFC 7662 §2.2 (``active`` is a boolean; anything but true is inactive)."""
    body = _answer(server)
    if active == "__missing__":
        del body["active"]
    else:
        body["active"] = active
    server.set_failure("introspection", 200, body)
    rejected(check, _guard(server), server.issue_opaque(), InactiveToken)


def test_duplicate_active_members(server: AuthServer, check: Driver) -> None:
    """RFC 8259 §4 (names should be unique; parsers differ), RFC 8725 §2.6: an answer
    saying ``active`` false then true is not read as either; it is nonsense (503)."""
    body = forge.raw_json(_answer(server, active=False))[:-1] + b',"active":true}'
    server.set_failure("introspection", 200, body, content_type="application/json")
    rejected(check, _guard(server), server.issue_opaque(), ValidationUnavailable)


_ACTIVE_BUT: dict[str, tuple[dict[str, Any], type, dict[str, Any]]] = {
    # RFC 7662 §2.2 / §4 (the RS checks iss, aud, exp, token_type itself); RFC 8725 §3.8-3.9
    "iss-other": ({"iss": "https://other.example"}, UntrustedIssuer, {}),
    "iss-trailing-slash": ({"iss": "{issuer}/"}, UntrustedIssuer, {}),
    "aud-other": ({"aud": "urn:other"}, InvalidAudience, {}),
    "aud-list-of-others": ({"aud": ["urn:a", "urn:b"]}, InvalidAudience, {}),
    # Issue 14 rule 4: present but naming nobody is not "absent"; same rule as for a JWT.
    "aud-empty-list": ({"aud": []}, InvalidAudience, {}),
    "aud-empty-list-required": (
        {"aud": []},
        InvalidAudience,
        {"require_introspection_audience": True},
    ),
    "aud-absent-but-required": (
        {"aud": None},
        InvalidAudience,
        {"require_introspection_audience": True},
    ),
    "exp-past": ({"exp": 1_000_000}, ExpiredToken, {}),
    "nbf-future": ({"nbf": 4_000_000_000}, TokenNotYetValid, {}),
    "iat-future": ({"iat": 4_000_000_000}, TokenNotYetValid, {}),
    "token_type-refresh": ({"token_type": "refresh_token"}, UnsupportedToken, {}),
    "token_type-id-token": (
        {"token_type": "urn:ietf:params:oauth:token-type:id_token"},
        UnsupportedToken,
        {},
    ),
    # RFC 9449 §6.2: a DPoP token type without the cnf.jkt to check the proof against
    "token_type-dpop": ({"token_type": "DPoP"}, UnsupportedToken, {}),
    # validated without the request's proof: the binding is not proven (RFC 9449 §7.2)
    "cnf-bound": (
        {"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
        InvalidTokenBinding,
        {},
    ),
    "cnf-bound-dpop": (
        {"token_type": "DPoP", "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
        InvalidTokenBinding,
        {},
    ),
    "cnf-unknown-method": ({"cnf": {"jwk": {"kty": "EC"}}}, UnsupportedToken, {}),
    "exp-string": ({"exp": "tomorrow"}, InvalidClaims, {}),
    "exp-bool": ({"exp": True}, InvalidClaims, {}),
    "exp-10**400": ({"exp": 10**400}, InvalidClaims, {}),
    "iss-number": ({"iss": 1}, InvalidClaims, {}),
    "aud-number": ({"aud": 1}, InvalidClaims, {}),
    "scope-number": ({"scope": 1}, InvalidClaims, {}),
    "sub-list": ({"sub": ["a"]}, InvalidClaims, {}),
}


@pytest.mark.parametrize("case", list(_ACTIVE_BUT))
def test_active_answer_that_does_not_fit_the_policy(
    server: AuthServer, check: Driver, case: str
) -> None:
    """``active: true`` is necessary, not sufficient (RFC 7662 §4; see the comments)."""
    members, expected, policy = _ACTIVE_BUT[case]
    members = {
        k: v.replace("{issuer}", server.issuer) if isinstance(v, str) else v
        for k, v in members.items()
    }
    server.set_failure("introspection", 200, _answer(server, **members))
    rejected(check, _guard(server, **policy), server.issue_opaque(), expected)


def test_active_answer_with_an_overflowing_exp(server: AuthServer, check: Driver) -> None:
    """RFC 7519 §2 (NumericDate), RFC 8259 §6: ``exp`` written as 1e400 (infinity)."""
    body = forge.raw_json(_answer(server, exp=0)).replace(b'"exp":0', b'"exp":1e400')
    server.set_failure("introspection", 200, body, content_type="application/json")
    rejected(check, _guard(server), server.issue_opaque(), InvalidClaims)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param([], "application/json", id="empty-array"),
        pytest.param([{"active": True}], "application/json", id="array-of-active"),
        pytest.param(b"true", "application/json", id="true"),
        pytest.param(b'"active"', "application/json", id="string"),
        pytest.param(b"null", "application/json", id="null"),
        pytest.param(b"1", "application/json", id="number"),
        pytest.param(b"", "application/json", id="empty-body"),
        pytest.param(b"\xff\xfe{\x00}\x00", "application/json", id="utf16"),
        pytest.param(b'\xef\xbb\xbf{"active":true}', "application/json", id="utf8-bom"),
        pytest.param(b'{"active":true', "application/json", id="truncated"),
        pytest.param(b'{"active":true,"exp":NaN}', "application/json", id="nan"),
        pytest.param(b"[" * 10_000, "application/json", id="deep-10000"),
        pytest.param(b"<html>active</html>", "text/html", id="html"),
        pytest.param(b'{"active":true}', "text/html", id="json-as-html"),
        pytest.param(b'{"active":true}', "application/jwt", id="jwt-response-type"),
    ],
)
def test_answer_that_is_not_a_json_object(
    server: AuthServer, check: Driver, body: Any, content_type: str
) -> None:
    """RFC 7662 §2.2 (the answer is a JSON object, application/json), RFC 8259 §8.1: the
    server answered nonsense, so the token cannot be judged: 503, never cached."""
    server.set_failure("introspection", 200, body, content_type=content_type)
    guard = guard_for(server)
    token = server.issue_opaque()
    for _ in range(2):
        rejected(check, guard, token, ValidationUnavailable)
    assert server.request_count("introspection") == 2


def test_active_answer_with_a_deeply_nested_member(server: AuthServer, check: Driver) -> None:
    """RFC 8259 §9 (depth limits must refuse, not crash). Any TokenGuardError or a pass is
    acceptable; a RecursionError is not. (Regression: it was one; bounded in 0a27c82.)"""
    nested = b"[" * 600 + b"]" * 600
    body = forge.raw_json(_answer(server))[:-1] + b',"x":' + nested + b"}"
    server.set_failure("introspection", 200, body, content_type="application/json")
    result = outcome(check, _guard(server), server.issue_opaque())
    assert isinstance(result, TokenInfo | ValidationUnavailable | InvalidClaims)


def _compressed(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    return data  # "br": an encoding tokenguard does not decode


_SIZES = [
    "64KiB+1 with length",
    "1MiB without length",
    "gzip bomb (1 KiB -> 16 MiB)",
    "deflate bomb",
    "gzip bomb without length",
    "unknown encoding (br)",
    "gzip, corrupt",
    "gzip, no trailer",
    "gzip, trailing junk",
]


@pytest.mark.parametrize("size", _SIZES)
def test_oversized_answers(
    server: AuthServer, check: Driver, attacker: Attacker, size: str
) -> None:
    """Resource exhaustion (docs/concepts.md Transport: introspection answers are capped at
    64 KiB; a compressed answer is decoded with its output bounded by the same cap): an
    answer padded past the cap, an endless one without Content-Length, decompression bombs
    (with and without Content-Length), an encoding that is not decoded, a stream that is
    corrupt, lacks its trailer or is followed by junk (RFC 1952 §2.2). All 503.
    (Regression: without a trailer, or with junk after it, an active answer passed before
    9b119fb.)"""
    guard = _guard(server)
    if size == "64KiB+1 with length":
        body = forge.raw_json(_answer(server, pad="x" * 65_536))
        server.set_failure("introspection", 200, body, content_type="application/json")
    elif size == "1MiB without length":
        attacker.reply = Reply(
            body=forge.raw_json(_answer(server, pad="x" * 1_048_576)), content_length=False
        )
        guard = _guard(server, issuer={"introspection_endpoint": attacker.url("/introspect")})
    else:
        encoding = "deflate" if "deflate" in size else "br" if "br" in size else "gzip"
        bomb = forge.raw_json(_answer(server, pad=" " * 16 * 1_048_576))
        body = _compressed(encoding, bomb)
        if encoding == "br":  # labelled br, whatever the bytes: not decoded, refused
            body = forge.raw_json(_answer(server))
        # A complete, valid, active answer, damaged in transit (or by the attacker).
        packed = _compressed("gzip", forge.raw_json(_answer(server)))
        if "corrupt" in size:
            body = packed[:-12] + b"\x00" * 12
        elif "no trailer" in size:
            body = packed[:-8]  # CRC-32 and length missing: the answer may be cut short
        elif "junk" in size:
            body = packed + b"junk"
        assert len(body) < 64 * 1024
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        if "without length" in size:
            attacker.reply = Reply(body=body, headers=headers, content_length=False)
            guard = _guard(server, issuer={"introspection_endpoint": attacker.url("/introspect")})
        else:
            server.set_failure(
                "introspection",
                200,
                body,
                content_type="application/json",
                headers={"Content-Encoding": encoding},
            )
    started = time.perf_counter()
    rejected(check, guard, server.issue_opaque(), ValidationUnavailable)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_small_compressed_answer_is_read(server: AuthServer, check: Driver, encoding: str) -> None:
    """Control for the bombs above (docs/concepts.md Transport): a server that compresses
    although asked not to is decoded, and its answer judged like any other."""
    body = _compressed(encoding, forge.raw_json(_answer(server)))
    server.set_failure(
        "introspection",
        200,
        body,
        content_type="application/json",
        headers={"Content-Encoding": encoding},
    )
    accepted(check, _guard(server), server.issue_opaque())
    inactive = _compressed(encoding, forge.raw_json(_answer(server, active=False)))
    server.set_failure(
        "introspection",
        200,
        inactive,
        content_type="application/json",
        headers={"Content-Encoding": encoding},
    )
    rejected(check, _guard(server), server.issue_opaque(), InactiveToken)


@pytest.mark.parametrize("how", ["delayed", "dribbled"])
def test_slow_answers_time_out(
    server: AuthServer, check: Driver, attacker: Attacker, how: str
) -> None:
    """Resource exhaustion / slowloris: an answer that comes late, or one byte at a time
    (each byte within the read timeout), is abandoned at the overall deadline: 503."""
    if how == "delayed":
        server.set_delay(1.5, "introspection")
        guard = guard_for(server, settings=FAST)
    else:
        attacker.reply = Reply(body=forge.raw_json(_answer(server)), dribble=0.05)
        guard = guard_for(
            server, settings=FAST, issuer={"introspection_endpoint": attacker.url("/introspect")}
        )
    started = time.perf_counter()
    rejected(check, guard, server.issue_opaque(), ValidationUnavailable)
    assert time.perf_counter() - started < 1.2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("client", ["own", "caller-follows-redirects"])
def test_introspection_redirect_to_the_attacker(
    server: AuthServer, check: Driver, attacker: Attacker, status: int, client: str
) -> None:
    """RFC 7662 §4 (the token and the client credentials go only to the introspection
    endpoint), RFC 8725 §2.9 (SSRF): a redirect is never followed, even through a
    caller's client configured to follow redirects; the attacker gets nothing."""
    attacker.reply = Reply(body=forge.raw_json(_answer(server)))
    server.set_failure(
        "introspection", status, "", headers={"Location": attacker.url("/introspect")}
    )
    clients: dict[str, Any] = {}
    if client != "own":
        clients = {
            "http_client": httpx.Client(follow_redirects=True),
            "async_http_client": httpx.AsyncClient(follow_redirects=True),
        }
    guard = TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                allow_insecure_http=True,
                client_auth=ClientSecretBasic(server.client_id, server.client_secret),
            )
        ],
        policies=[Policy(name="api", audience=AUDIENCE)],
        **clients,
    )
    try:
        rejected(check, guard, server.issue_opaque(), ValidationUnavailable)
    finally:
        if clients:
            clients["http_client"].close()
            if check.loop is not None:
                check.loop.run_until_complete(clients["async_http_client"].aclose())
    assert attacker.hits == 0, attacker.requests


# -- cache poisoning ---------------------------------------------------------------------------


def _policies_guard(server: AuthServer) -> TokenGuard:
    return guard_for(
        server,
        Policy(name="orders", audience=AUDIENCE, require_introspection_audience=False),
        Policy(name="billing", audience="urn:billing"),
        Policy(name="orders-admin", audience=AUDIENCE, required_scopes=["orders:admin"]),
        Policy(name="strict", audience=AUDIENCE),  # aud required: the default
        Policy(name="live", audience=AUDIENCE, mode="high_assurance"),
    )


@pytest.mark.parametrize("first", ["orders", "billing"])
def test_cached_answer_does_not_cross_policies(
    server: AuthServer, check: Driver, first: str
) -> None:
    """RFC 7662 §4 (the RS decides per request), RFC 8725 §3.9: an active answer cached for
    policy A is re-checked for every other policy: another audience (401), another scope
    requirement (403), an audience requirement; in either order."""
    guard = _policies_guard(server)
    token = server.issue_opaque(scopes=["orders:read"])
    order = ["orders", "billing"] if first == "orders" else ["billing", "orders"]
    for name in order:
        if name == "orders":
            accepted(check, guard, token, "orders")
        else:
            rejected(check, guard, token, InvalidAudience, "billing")
    error = rejected(check, guard, token, InsufficientScope, "orders-admin")
    assert error.scopes == ("orders:admin",)
    assert server.request_count("introspection") == 1  # one answer, checked per policy
    no_aud = server.issue_opaque(audience=None)
    accepted(check, guard, no_aud, "orders")
    rejected(check, guard, no_aud, InvalidAudience, "strict")


def test_cached_answer_does_not_satisfy_high_assurance(server: AuthServer, check: Driver) -> None:
    """RFC 7662 §4 (caching trades freshness for load; the high-assurance policy opts out):
    a revoked token still cached as active for a hybrid policy is refused by a
    high_assurance policy, which asks the server."""
    guard = _policies_guard(server)
    token = server.issue_opaque()
    accepted(check, guard, token, "orders")
    server.revoke(token)
    rejected(check, guard, token, InactiveToken, "live")


@pytest.mark.parametrize("first", ["genuine", "sibling"])
def test_tokens_sharing_a_long_prefix(server: AuthServer, check: Driver, first: str) -> None:
    """Cache-key collisions (docs: caches are keyed by SHA-256 of the whole token): tokens
    differing only in the last character, a truncation or an appended character each get
    their own answer, whichever is seen first."""
    guard = guard_for(server)
    genuine = server.issue_opaque()
    last = genuine[-1]
    siblings = [
        genuine[:-1] + ("A" if last != "A" else "B"),
        genuine[:-1],
        genuine + "A",
        genuine + "=",
        genuine + ".",
    ]
    if first == "genuine":
        accepted(check, guard, genuine)
    for sibling in siblings:
        rejected(check, guard, sibling, InactiveToken)
    accepted(check, guard, genuine)
    assert server.request_count("introspection") == 1 + len(siblings)


def test_verified_jwt_does_not_vouch_for_a_sibling(server: AuthServer, check: Driver) -> None:
    """The verified-token cache is keyed by the whole token: a JWT that passed does not make
    a copy with another signature, payload or trailing character pass."""
    guard = guard_for(server, mode="jwt")
    token = server.issue_jwt()
    accepted(check, guard, token)
    h64, p64, s64 = token.split(".")
    other = server.issue_jwt()
    rejected(check, guard, f"{h64}.{p64}.{other.split('.')[2]}", InvalidSignature)
    rejected(check, guard, f"{h64}.{other.split('.')[1]}.{s64}", InvalidSignature)
    assert check(guard, token).cached


def test_verified_jwt_does_not_cross_policies(server: AuthServer, check: Driver) -> None:
    """The verified-token cache is keyed by (token, policy): a JWT remembered for one policy
    is judged afresh by a policy with other algorithms, another audience or a scope rule."""
    guard = guard_for(
        server,
        Policy(name="rs", audience=AUDIENCE, algorithms=["RS256"]),
        Policy(name="es-only", audience=AUDIENCE, algorithms=["ES256"]),
        Policy(name="billing", audience="urn:billing"),
        Policy(name="admin", audience=AUDIENCE, required_scopes=["orders:admin"]),
    )
    token = server.issue_jwt(alg="RS256", scopes=["orders:read"])
    accepted(check, guard, token, "rs")
    assert check(guard, token, "rs").cached
    rejected(check, guard, token, InvalidSignature, "es-only")
    rejected(check, guard, token, InvalidAudience, "billing")
    rejected(check, guard, token, InsufficientScope, "admin")
