"""Signed introspection answers (RFC 9701): a guard that requires them refuses plain JSON,
answers signed by another key or with ``none``, another type, issuer or audience, a stale
``iat``, a passed ``exp``, an encrypted answer, an answer without ``token_introspection``.
Every failure is the server's: 503 and never cached. What the signed answer says is then
read by the usual rules (inactive, another audience...).

Answers are forced with ``AuthServer.set_failure("introspection", ...)``; genuine ones are
signed with the server's own published key (``issue_jwt`` with a custom payload).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tokenguard import InactiveToken, InvalidAudience, TokenGuard, ValidationUnavailable
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for
from . import forge
from .support import accepted, rejected

SIGNED = "application/token-introspection+jwt"


def _guard(server: AuthServer) -> TokenGuard:
    return guard_for(
        server,
        issuer={"signed_introspection": True},
        introspection_cache_ttl=0,
        inactive_cache_ttl=0,
        verified_cache_ttl=0,
    )


def _inner(server: AuthServer, **members: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {
        "active": True,
        "iss": server.issuer,
        "aud": AUDIENCE,
        "client_id": server.client_id,
        "scope": "orders:read",
        "exp": now + 300,
        "iat": now,
    }
    body.update(members)
    return body


def _answer(
    server: AuthServer, *, inner: Any = None, typ: str = "token-introspection+jwt", **claims: Any
) -> str:
    """A signed answer made by the server's real RS256 key; ``claims`` override the outer
    claims (``None`` removes one)."""
    outer: dict[str, Any] = {
        "iss": server.issuer,
        "aud": server.client_id,
        "iat": int(time.time()),
        "token_introspection": _inner(server) if inner is None else inner,
        # issue_jwt's defaults that an introspection answer does not carry:
        "sub": None,
        "exp": None,
        "jti": None,
        "client_id": None,
        "scope": None,
    }
    outer.update(claims)
    return server.issue_jwt(audience=None, typ=typ, claims=outer)


def _serve(server: AuthServer, body: str | bytes | dict[str, Any], media: str = SIGNED) -> None:
    server.set_failure("introspection", 200, body, content_type=media)


def test_genuine_signed_answer(server: AuthServer, check: Driver) -> None:
    _serve(server, _answer(server))
    info = accepted(check, _guard(server), server.issue_opaque())
    assert info.source == "introspection"
    assert info.scopes == {"orders:read"}


_WHY = {
    "plain-json": "not a signed answer",  # RFC 9701 §5: a downgrade to an unsigned answer
    "json-labelled-signed": "not a compact JWS",
    "typ-at+jwt": "typ is not",
    "typ-absent": "typ is not",
    "iss-other": "iss is not",
    "aud-other-client": "aud does not",
    "aud-absent": "aud does not",
    "iat-stale": "iat",
    "iat-future": "iat",
    "iat-absent": "iat",
    "exp-passed": "expired",
    "no-token_introspection": "no token_introspection",
    "token_introspection-string": "no token_introspection",
    "signed-by-another-key": "not verified",
    "alg-none": "not a valid JWS",
    "signature-stripped": "not a valid JWS",
    "encrypted-jwe": "encrypted",
    "garbage": "not a valid JWS",
}


@pytest.mark.parametrize("case", list(_WHY))
def test_unacceptable_signed_answers(
    server: AuthServer,
    check: Driver,
    case: str,
    attacker_keys: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each one fails closed (503); none is cached: the next genuine answer passes."""
    now = int(time.time())
    genuine = _answer(server)
    h64, p64, _ = forge.split(genuine)
    body: Any = {
        "plain-json": _inner(server),
        "json-labelled-signed": forge.raw_json(_inner(server)),
        "typ-at+jwt": _answer(server, typ="at+jwt"),
        "typ-absent": _answer(server, typ=None),  # type: ignore[arg-type]
        "iss-other": _answer(server, iss="https://other.example"),
        "aud-other-client": _answer(server, aud="another-client"),
        "aud-absent": _answer(server, aud=None),
        "iat-stale": _answer(server, iat=now - 3600),
        "iat-future": _answer(server, iat=now + 3600),
        "iat-absent": _answer(server, iat=None),
        "exp-passed": _answer(server, exp=now - 10),
        "no-token_introspection": _answer(server, token_introspection=None),
        "token_introspection-string": _answer(server, token_introspection="active"),
        "signed-by-another-key": forge.compact(
            forge.b64url_decode(h64),
            forge.b64url_decode(p64),
            key=attacker_keys["rsa"],
            alg="RS256",
        ),
        "alg-none": forge.compact(
            {"alg": "none", "typ": "token-introspection+jwt"},
            forge.b64url_decode(p64),
            signature="",
        ),
        "signature-stripped": f"{h64}.{p64}.",
        "encrypted-jwe": "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
        "garbage": b"\xff\xfe not a jwt",
    }[case]
    media = "application/json" if case == "plain-json" else SIGNED
    _serve(server, body, media)
    guard = _guard(server)
    token = server.issue_opaque()
    rejected(check, guard, token, ValidationUnavailable)
    assert _WHY[case] in caplog.text
    _serve(server, _answer(server))
    accepted(check, guard, token)


def test_what_a_genuine_answer_says_still_counts(server: AuthServer, check: Driver) -> None:
    guard = _guard(server)
    _serve(server, _answer(server, inner={"active": False}))
    rejected(check, guard, server.issue_opaque(), InactiveToken)
    _serve(server, _answer(server, inner=_inner(server, aud="urn:other-service")))
    rejected(check, guard, server.issue_opaque(), InvalidAudience)


def test_the_request_asks_for_a_signed_answer(server: AuthServer, check: Driver) -> None:
    """RFC 9701 §4: Accept: application/token-introspection+jwt. The embedded server only
    answers JSON, so a guard that requires signatures refuses it (503)."""
    guard = _guard(server)
    rejected(check, guard, server.issue_opaque(), ValidationUnavailable)
    assert server.request_count("introspection") == 1
