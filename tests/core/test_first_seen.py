"""The first-seen JWT path (issue 10 §2): the shortcuts it takes keep every rule.

A header that verified before is not decoded again (core/jose.py), and the keys in hand
are read without the fetch logic (Engine._keys_in_hand): neither may let through what
the full path refuses, nor change what is counted.
"""

from __future__ import annotations

import pytest

from tokenguard import InvalidSignature, Issuer, Policy, TokenGuard, UnsupportedToken
from tokenguard.core import jose
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for


def _forged(token: str, other: str) -> str:
    """``token``'s header and payload with ``other``'s signature."""
    head, payload, _ = token.split(".")
    return f"{head}.{payload}.{other.rsplit('.', 1)[1]}"


def test_remembered_header_does_not_excuse_a_bad_signature(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server)
    good = auth_server.issue_jwt(alg="ES256", subject="alice")
    assert check(guard, good).subject == "alice"
    head = good.split(".")[0].encode().translate(jose._TO_STANDARD)
    assert head in jose._HEADERS  # verified: its header is remembered
    # Same header, another payload, a signature of another token of the same key.
    other = auth_server.issue_jwt(alg="ES256", subject="bob")
    mallory = auth_server.issue_jwt(alg="ES256", subject="mallory")
    with pytest.raises(InvalidSignature):
        check(guard, _forged(mallory, other))


def test_remembered_header_still_answers_to_each_policy(
    auth_server: AuthServer, check: Driver
) -> None:
    issuer = Issuer(auth_server.issuer, jwks_uri=auth_server.jwks_uri, allow_insecure_http=True)
    guard = TokenGuard(
        issuers=[issuer],
        policies=[
            Policy(name="any", audience=AUDIENCE),
            Policy(name="rsa-only", audience=AUDIENCE, algorithms=["RS256"]),
        ],
    )
    first = auth_server.issue_jwt(alg="EdDSA")
    assert check(guard, first, "any").source == "jwt"
    second = auth_server.issue_jwt(alg="EdDSA", subject="alice")  # the same header
    assert second.split(".")[0] == first.split(".")[0]
    with pytest.raises(InvalidSignature, match="not allowed"):
        check(guard, second, "rsa-only")
    assert check(guard, second, "any").subject == "alice"


def test_untyped_header_refused_after_a_typed_one_verified(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server)
    check(guard, auth_server.issue_jwt())
    with pytest.raises(UnsupportedToken):
        check(guard, auth_server.issue_jwt(typ="dpop+jwt"))


def test_keys_in_hand_count_as_jwks_hits(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    for n in range(3):
        assert not check(guard, auth_server.issue_jwt(subject=f"user-{n}")).cached
    jwks = guard.stats().caches.jwks
    assert (jwks.hits, jwks.misses) == (2, 1)
    assert auth_server.request_count("jwks") == 1
