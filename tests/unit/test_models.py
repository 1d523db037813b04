"""TokenInfo: the fast construction matches pydantic's, and the computed claim fields."""

from __future__ import annotations

import datetime as dt
from types import MappingProxyType

import pytest
from pydantic import ValidationError

from tokenguard import InsufficientScope, TokenInfo

CLAIMS = MappingProxyType(
    {
        "sub": "alice",
        "client_id": "app",
        "aud": "urn:a",
        "exp": 2_000_000_000,
        "iat": 1_999_999_000,
        "jti": "j",
        "amr": ("pwd", "otp"),
        "cnf": MappingProxyType({"jkt": "t"}),
    }
)


def make() -> TokenInfo:
    return TokenInfo.trusted(
        issuer="https://as.example",
        scopes=frozenset({"a", "b"}),
        token_type="at+jwt",
        claims=CLAIMS,
        source="jwt",
    )


def test_trusted_equals_model_construct() -> None:
    built = TokenInfo.model_construct(
        active=True,
        issuer="https://as.example",
        scopes=frozenset({"a", "b"}),
        token_type="at+jwt",
        claims=CLAIMS,
        source="jwt",
        cached=False,
    )
    assert make() == built
    assert make().model_fields_set == built.model_fields_set


def test_computed_claim_fields() -> None:
    info = make()
    assert info.subject == "alice"
    assert info.client_id == "app"
    assert info.audience == ("urn:a",)
    assert info.expires_at == dt.datetime.fromtimestamp(2_000_000_000, tz=dt.UTC)
    assert info.not_before is None
    assert info.token_id == "j"
    assert info.amr == ("pwd", "otp")
    assert info.cnf == {"jkt": "t"}
    dumped = info.model_dump(mode="json")
    assert dumped["subject"] == "alice"
    assert dumped["claims"]["amr"] == ["pwd", "otp"]
    assert dumped["cnf"] == {"jkt": "t"}


def test_as_cached_and_frozen() -> None:
    info = make()
    cached = info.as_cached()
    assert cached.cached
    assert not info.cached
    assert cached.claims is info.claims
    with pytest.raises(ValidationError):
        info.issuer = "x"  # type: ignore[misc]


def test_scope_helpers() -> None:
    info = make()
    assert info.has_scopes("a", "b")
    assert not info.has_scopes("a", "c")
    info.require_scopes("a")
    with pytest.raises(InsufficientScope) as caught:
        info.require_scopes("a", "c")
    assert caught.value.scopes == ("a", "c")
