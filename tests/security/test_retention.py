"""Rule 1 (issue 14): nothing an unauthenticated request sends is kept beyond that request.

For each shape of token an attacker without a valid token can send, distinct tokens
are refused while ``tracemalloc`` watches; what is still allocated afterwards must stay
within :data:`BUDGET` (docs/security.md, "Memory an attacker can hold"). CI refuses
2,000 of each shape on every Python version (enough to see a leak of even a few bytes
per token); ``benchmarks/run.py`` and ``nox -s retention`` refuse 20,000
(``TOKENGUARD_RETENTION_TOKENS``). The
shapes are those that reached a process-wide store before: ``sys.intern`` of member names
and claim values (immortal on CPython 3.12: ~9 KB kept per refused token), and the memo
of scope sets (filled by unsigned tokens on every version).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import secrets
import time
import tracemalloc
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tokenguard import Issuer, Policy, Settings, TokenGuard, TokenGuardError

from . import forge

ISSUER = "https://as.example.com"
AUDIENCE = "urn:retention:api"
TOKENS = int(os.environ.get("TOKENGUARD_RETENTION_TOKENS", "2000"))
#: What the refused tokens of one shape may leave allocated, however many: msgspec's own
#: bounded cache of short member names (at most a few tens of KB), with room for noise.
BUDGET = 128 * 1024

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# 9,000 characters shared by every token; each token adds a unique prefix.
_FILLER = secrets.token_urlsafe(6_750)


def guard() -> TokenGuard:
    """A guard trusting one issuer with a static RSA key (no network at all)."""
    jwk = forge.jwk_of(_KEY.public_key(), kid="k1", alg="RS256")
    return TokenGuard(
        issuers=[Issuer(ISSUER, static_jwks={"keys": [jwk]})],
        policies=[Policy(name="api", audience=AUDIENCE, mode="jwt", algorithms=["RS256"])],
        settings=Settings(verified_cache_size=1000),
    )


def _token(header: dict[str, object], claims: dict[str, object], *, junk: bool = True) -> str:
    signing_input = f"{forge.segment(header)}.{forge.segment(claims)}"
    signature = forge.b64url(secrets.token_bytes(256)) if junk else ""
    return f"{signing_input}.{signature}"


def _claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": "alice",
        "client_id": "app",
        "jti": "j-1",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(extra)
    return claims


def _scope(n: int) -> str:
    # ~1.5 KB of distinct short scopes, unique to this token.
    return " ".join(f"{n:x}.{i}" for i in range(150))


SHAPES: dict[str, Callable[[int], str]] = {
    # A ~9 KB algorithm name, refused before any key is looked up (InvalidSignature).
    "huge-alg": lambda n: _token({"alg": f"{n}{_FILLER}", "typ": "at+jwt"}, _claims()),
    # Member names unique to each token, in the header and in the claims.
    "unique-member-names": lambda n: _token(
        {"alg": "RS256", "typ": "at+jwt", f"h{n}{_FILLER[:40]}": 1},
        _claims(**{f"c{n}.{i}.{_FILLER[:20]}": i for i in range(20)}),
    ),
    # Unique values of the claims that repeat between genuine tokens (iss, client_id...).
    "unique-shared-values": lambda n: _token(
        {"alg": "RS256", "typ": "at+jwt"},
        _claims(
            iss=f"{ISSUER}/{n}{_FILLER[:2000]}",
            client_id=f"{n}{_FILLER[:2000]}",
            acr=f"{n}{_FILLER[:2000]}",
            azp=f"{n}{_FILLER[:2000]}",
        ),
    ),
    # A 1.5 KB scope from an issuer that is not trusted: refused with no crypto at all.
    "scope-flood-untrusted": lambda n: _token(
        {"alg": "RS256", "typ": "at+jwt"},
        _claims(iss="https://evil.example", scope=_scope(n)),
    ),
    # The same scope under the trusted issuer, refused by the signature check.
    "scope-flood-bad-signature": lambda n: _token(
        {"alg": "RS256", "typ": "at+jwt"}, _claims(scope=_scope(n))
    ),
    # A kid no key has (a static-only issuer: no refresh to trigger).
    "unknown-kid": lambda n: _token(
        {"alg": "RS256", "typ": "at+jwt", "kid": f"{n}{_FILLER[:200]}"}, _claims()
    ),
    # Valid base64url over text that is not JSON.
    "not-json": lambda n: (
        f"{forge.segment(b'{' + f'{n}{_FILLER}'.encode())}.{forge.segment(_claims())}.c2ln"
    ),
}


def refusal(guard_: TokenGuard, token: str) -> str:
    """The error class a token is refused with."""
    try:
        guard_.validate(token, "api")
    except TokenGuardError as error:
        return type(error).__name__
    raise AssertionError("an attacker's token passed")


def retained_after(guard_: TokenGuard, build: Callable[[int], str], count: int) -> int:
    """Bytes still allocated after ``count`` tokens of a shape were refused (after a
    warm-up: first-time imports and lazily built tables are not retention)."""
    for n in range(200):
        with contextlib.suppress(TokenGuardError):
            guard_.validate(build(-n - 1), "api")
    tokens = [build(n) for n in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for token in tokens:
            try:
                guard_.validate(token, "api")
            except TokenGuardError:
                continue
            raise AssertionError("an attacker's token passed")
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_refused_tokens_leave_nothing_behind(shape: str) -> None:
    retained = retained_after(guard(), SHAPES[shape], TOKENS)
    assert retained <= BUDGET, f"{shape}: {retained:,} bytes kept after {TOKENS:,} refusals"


def test_the_shapes_are_refused_for_the_reason_they_aim_at() -> None:
    """The shapes reach the step they target (a shape refused earlier tests nothing)."""
    guard_ = guard()
    reasons = {shape: refusal(guard_, build(1)) for shape, build in SHAPES.items()}
    assert reasons == {
        "huge-alg": "InvalidSignature",
        "unique-member-names": "InvalidSignature",
        "unique-shared-values": "UntrustedIssuer",
        "scope-flood-untrusted": "UntrustedIssuer",
        "scope-flood-bad-signature": "InvalidSignature",
        "unknown-kid": "InvalidSignature",
        "not-json": "MalformedToken",
    }


def test_a_verified_token_shares_its_scope_set() -> None:
    """Sharing is for verified tokens: two genuine tokens with one scope string share one
    frozenset (memory per cached token), which a refused token never enters."""
    guard_ = guard()
    scope = f"read:{secrets.token_hex(4)} write"
    tokens = [
        forge.compact(
            {"alg": "RS256", "typ": "at+jwt", "kid": "k1"},
            _claims(scope=scope, jti=secrets.token_hex(8)),
            key=_KEY,
        )
        for _ in range(2)
    ]
    first, second = (guard_.validate(t, "api") for t in tokens)
    assert first.scopes is second.scopes
    refused = _token({"alg": "RS256", "typ": "at+jwt"}, _claims(scope=scope + " admin"))
    with pytest.raises(TokenGuardError):
        guard_.validate(refused, "api")
    from tokenguard.core import claims as claims_module

    assert scope + " admin" not in claims_module._SCOPE_SETS
    assert json.dumps(sorted(first.scopes)) == json.dumps(sorted(scope.split()))
