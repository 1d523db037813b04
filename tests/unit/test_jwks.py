"""jwks.py: which published keys are usable, cache lifetimes, and refresh timing."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, x25519

from tokenguard.config import Settings
from tokenguard.core.jwks import (
    JwksState,
    KeySet,
    VerificationKey,
    max_age,
    parse_jwks,
    static_keyset,
)

from ._support import b64url, oct_jwk, private_jwk, public_jwk

SETTINGS = Settings(
    jwks_default_ttl=3600,
    jwks_min_ttl=60,
    jwks_max_ttl=86400,
    jwks_refresh_cooldown=15,
    jwks_stale_window=600,
)
ISSUER = "https://as.example"
T0 = 1_000_000.0

RSA_ALGS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}


def parse(*jwks: Any, max_keys: int = 100, allow_symmetric: bool = False) -> KeySet:
    return parse_jwks({"keys": list(jwks)}, max_keys=max_keys, allow_symmetric=allow_symmetric)


# -- parse_jwks: usable keys -------------------------------------------------------------


def test_parse_each_key_type(keys: SimpleNamespace) -> None:
    ks = parse(
        public_jwk(keys.rsa, kid="r"),
        public_jwk(keys.p256, kid="e256"),
        public_jwk(keys.p384, kid="e384"),
        public_jwk(keys.ed25519, kid="ed"),
    )
    by_kid = {k.kid: k for k in ks.keys}
    assert by_kid["r"].algorithms == RSA_ALGS
    assert by_kid["r"].kty == "RSA"
    assert by_kid["e256"].algorithms == {"ES256"}
    assert by_kid["e384"].algorithms == {"ES384"}
    assert by_kid["ed"].algorithms == {"EdDSA", "Ed25519"}
    assert by_kid["ed"].kty == "OKP"
    assert by_kid["r"].key.public_numbers() == keys.rsa.public_key().public_numbers()
    assert by_kid["e256"].key.public_numbers() == keys.p256.public_key().public_numbers()


def test_parse_p521_and_ed448() -> None:
    p521 = ec.generate_private_key(ec.SECP521R1())
    ed = ed448.Ed448PrivateKey.generate()
    import json

    from jwt.algorithms import OKPAlgorithm

    ed_jwk = json.loads(OKPAlgorithm.to_jwk(ed.public_key()))
    ks = parse(public_jwk(p521, kid="p521"), {**ed_jwk, "kid": "ed448"})
    assert {k.kid: k.algorithms for k in ks.keys} == {
        "p521": frozenset({"ES512"}),
        "ed448": frozenset({"EdDSA", "Ed448"}),
    }


def test_key_repr_hides_key(keys: SimpleNamespace) -> None:
    key = parse(public_jwk(keys.rsa, kid="r")).keys[0]
    assert "key=" not in repr(key)
    assert "kid='r'" in repr(key)


@pytest.mark.parametrize(
    "extra",
    [{"use": "sig"}, {"key_ops": ["verify"]}, {"key_ops": ["verify", "sign"]}, {"alg": "RS256"}],
)
def test_parse_usable_variants(keys: SimpleNamespace, extra: dict[str, Any]) -> None:
    assert len(parse(public_jwk(keys.rsa, **extra)).keys) == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"use": "enc"},
        {"use": "SIG"},
        {"use": 1},
        {"key_ops": ["encrypt"]},
        {"key_ops": []},
        {"key_ops": "verify"},
        {"alg": "ES256"},  # alg of another key type
        {"alg": "RSA-OAEP"},
        {"alg": "none"},
        {"alg": 256},
        {"kid": 1},
        {"kid": ["a"]},
        {"kty": "rsa"},
        {"kty": 1},
        {"crv": 1},
        {"n": "AQAB"},  # too short modulus
        {"e": None},
    ],
)
def test_parse_unusable_rsa(keys: SimpleNamespace, extra: dict[str, Any]) -> None:
    assert parse(public_jwk(keys.rsa, **extra)).keys == ()


def test_alg_restricts_algorithms(keys: SimpleNamespace) -> None:
    (key,) = parse(public_jwk(keys.rsa, alg="PS384")).keys
    assert key.algorithms == {"PS384"}


def test_rsa_1024_refused(keys: SimpleNamespace) -> None:
    assert parse(public_jwk(keys.rsa_1024)).keys == ()
    assert parse(public_jwk(keys.rsa_1024, alg="RS256")).keys == ()


@pytest.mark.parametrize("name", ["rsa", "p256", "ed25519"])
def test_private_members_refused(keys: SimpleNamespace, name: str) -> None:
    private = getattr(keys, name)
    assert parse(private_jwk(private)).keys == ()
    assert parse({**public_jwk(private), "d": "AAAA"}).keys == ()


@pytest.mark.parametrize("member", ["p", "q", "dp", "dq", "qi", "oth"])
def test_any_private_rsa_member_refused(keys: SimpleNamespace, member: str) -> None:
    assert parse({**public_jwk(keys.rsa), member: "AQAB"}).keys == ()


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": "P-192", "x": "AAAA", "y": "AAAA"},
        {"kty": "EC", "crv": "secp256k1", "x": "AAAA", "y": "AAAA"},  # bad coordinates
        {"kty": "OKP", "crv": "X25519", "x": b64url(b"\x00" * 32)},
        {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},  # wrong length
        {"kty": "FOO"},
        {"kty": "RSA"},
        {},
    ],
)
def test_unknown_or_broken_keys_skipped(jwk: dict[str, Any]) -> None:
    assert parse(jwk).keys == ()


def test_ec_without_crv_refused(keys: SimpleNamespace) -> None:
    jwk = public_jwk(keys.p256)
    del jwk["crv"]
    assert parse(jwk).keys == ()


def test_ec_curve_mismatch_refused(keys: SimpleNamespace) -> None:
    # A P-384 point labelled P-256: wrong coordinate length, refused.
    assert parse({**public_jwk(keys.p384), "crv": "P-256"}).keys == ()


def test_x25519_key_refused() -> None:
    import json

    from jwt.algorithms import OKPAlgorithm

    try:
        jwk = json.loads(OKPAlgorithm.to_jwk(x25519.X25519PrivateKey.generate().public_key()))
    except Exception:  # pragma: no cover - pyjwt versions without X25519 export
        jwk = {"kty": "OKP", "crv": "X25519", "x": b64url(b"\x09" + b"\x00" * 31)}
    assert parse(jwk).keys == ()


def test_ec_point_not_on_curve_refused(keys: SimpleNamespace) -> None:
    jwk = public_jwk(keys.p256)
    numbers = keys.p256.public_key().public_numbers()
    y = (numbers.y + 1).to_bytes(32, "big")
    assert parse({**jwk, "y": b64url(y)}).keys == ()
    assert parse(jwk).keys != ()


def test_ec_coordinates_of_the_wrong_length_refused(keys: SimpleNamespace) -> None:
    jwk = public_jwk(keys.p256)
    numbers = keys.p256.public_key().public_numbers()
    padded = b64url(b"\x00" + numbers.x.to_bytes(32, "big"))  # 33 bytes for P-256
    assert parse({**jwk, "x": padded}).keys == ()
    assert parse({**jwk, "x": 5}).keys == ()  # not a string


@pytest.mark.parametrize("member", ["n", "e"])
def test_rsa_without_modulus_or_exponent_refused(keys: SimpleNamespace, member: str) -> None:
    jwk = public_jwk(keys.rsa)
    assert parse({k: v for k, v in jwk.items() if k != member}).keys == ()
    assert parse({**jwk, member: ""}).keys == ()


def test_padded_members_read_as_servers_publish_them(keys: SimpleNamespace) -> None:
    jwk = public_jwk(keys.rsa)
    padded = {**jwk, "n": jwk["n"] + "=" * (-len(jwk["n"]) % 4), "e": "AQAB"}
    (key,) = parse(padded).keys
    assert key.key.public_numbers() == keys.rsa.public_key().public_numbers()


def test_oct_only_when_allowed() -> None:
    jwk = oct_jwk(b"k" * 32, kid="h")
    assert parse(jwk).keys == ()
    (key,) = parse(jwk, allow_symmetric=True).keys
    assert key.kty == "oct"
    assert key.key == b"k" * 32
    assert key.algorithms == {"HS256"}  # RFC 7518 §3.2: HS384/HS512 need longer keys
    (only,) = parse(oct_jwk(b"k" * 64, alg="HS512"), allow_symmetric=True).keys
    assert only.algorithms == {"HS512"}


def test_short_oct_refused() -> None:
    assert parse(oct_jwk(b"k" * 31), allow_symmetric=True).keys == ()
    assert parse(oct_jwk(b""), allow_symmetric=True).keys == ()


def test_oct_key_length_bounds_hmac_algorithms() -> None:
    (key,) = parse(oct_jwk(b"k" * 32), allow_symmetric=True).keys
    assert key.algorithms == {"HS256"}


@pytest.mark.parametrize("entry", [None, "key", 1, ["kty", "RSA"], True])
def test_non_dict_entries_skipped(keys: SimpleNamespace, entry: Any) -> None:
    ks = parse(entry, public_jwk(keys.p256, kid="ok"))
    assert [k.kid for k in ks.keys] == ["ok"]


@pytest.mark.parametrize("document", [{}, {"keys": None}, {"keys": {}}, {"keys": "x"}])
def test_not_a_key_set(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a JWK Set"):
        parse_jwks(document, max_keys=10)


def test_max_keys(keys: SimpleNamespace) -> None:
    jwks = [public_jwk(keys.p256, kid=f"k{i}") for i in range(5)]
    assert [k.kid for k in parse(*jwks, max_keys=3).keys] == ["k0", "k1", "k2"]
    # The bound counts entries, usable or not.
    assert parse({"kty": "FOO"}, {"kty": "FOO"}, *jwks, max_keys=2).keys == ()


def test_static_keyset(keys: SimpleNamespace) -> None:
    assert static_keyset(None, max_keys=5) is None
    ks = static_keyset({"keys": [oct_jwk(b"s" * 32, kid="h")]}, max_keys=5)
    assert ks is not None
    assert ks.keys[0].kid == "h"
    with pytest.raises(ValueError, match="not a JWK Set"):
        static_keyset({"key": []}, max_keys=5)


# -- KeySet.candidates -------------------------------------------------------------------------


@pytest.fixture
def keyset(keys: SimpleNamespace) -> KeySet:
    return parse(
        public_jwk(keys.rsa, kid="a"),
        public_jwk(keys.rsa_other, kid="b", alg="PS256"),
        public_jwk(keys.p256, kid="a"),  # same kid, other type
        public_jwk(keys.ed25519),  # no kid
    )


def test_candidates_by_kid_and_alg(keyset: KeySet) -> None:
    assert [(k.kid, k.kty) for k in keyset.candidates("RS256", "a")] == [("a", "RSA")]
    assert [(k.kid, k.kty) for k in keyset.candidates("ES256", "a")] == [("a", "EC")]
    assert keyset.candidates("RS256", "b") == ()  # b is PS256-only
    assert [k.kid for k in keyset.candidates("PS256", "b")] == ["b"]
    assert keyset.candidates("ES256", "zzz") == ()
    assert keyset.candidates("EdDSA", "a") == ()
    assert keyset.candidates("HS256", None) == ()


def test_candidates_without_kid(keyset: KeySet) -> None:
    assert [k.kid for k in keyset.candidates("PS256", None)] == ["a", "b"]
    assert [k.kty for k in keyset.candidates("EdDSA", None)] == ["OKP"]
    assert keyset.candidates("ES384", None) == ()


def test_candidates_kid_is_exact(keyset: KeySet) -> None:
    assert keyset.candidates("RS256", "A") == ()
    assert keyset.candidates("RS256", "a ") == ()


def test_verification_key_is_frozen(keyset: KeySet) -> None:
    with pytest.raises(AttributeError):
        keyset.keys[0].kid = "x"  # type: ignore[misc]
    assert isinstance(keyset.keys[0], VerificationKey)


# -- max_age -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 3600),
        ("", 3600),
        ("max-age=600", 600),
        ("public, max-age=600", 600),
        ("max-age=600, must-revalidate", 600),
        ("Public,MAX-AGE = 7200 ,immutable", 7200),
        ('max-age="900"', 900),
        ("max-age=0", 60),  # clamped up to jwks_min_ttl
        ("max-age=5", 60),
        ("max-age=9999999", 86400),  # clamped down to jwks_max_ttl
        ("max-age=99999999999", 3600),  # > 10 digits: not understood, default
        ("no-store", 60),
        ("no-cache", 60),
        ("public, no-store, max-age=600", 60),
        ("max-age=600, NO-CACHE", 60),
        ("max-age=abc", 3600),
        ("max-age=-5", 3600),
        ("max-age=1.5", 3600),
        ("s-maxage=600", 3600),
        ("xmax-age=600", 3600),
        ("private", 3600),
        ("no-transform", 3600),
        ("junk;;,,", 3600),
    ],
)
def test_max_age(header: str | None, expected: float) -> None:
    assert max_age(header, SETTINGS) == expected


def test_max_age_default_clamped() -> None:
    settings = Settings(jwks_default_ttl=10, jwks_min_ttl=30, jwks_max_ttl=40)
    assert max_age(None, settings) == 30
    settings = Settings(jwks_default_ttl=100, jwks_min_ttl=30, jwks_max_ttl=40)
    assert max_age(None, settings) == 40


# -- JwksState ---------------------------------------------------------------------------------


@pytest.fixture
def doc(keys: SimpleNamespace) -> dict[str, Any]:
    return {"keys": [public_jwk(keys.rsa, kid="k1")]}


@pytest.fixture
def rotated(keys: SimpleNamespace) -> dict[str, Any]:
    return {"keys": [public_jwk(keys.rsa_other, kid="k2")]}


def test_first_fetch_and_fresh_use(doc: dict[str, Any]) -> None:
    state = JwksState(ISSUER, SETTINGS)
    assert state.usable(T0) is None
    assert state.wants_fetch(T0, "RS256", "k1")
    state.absorb(doc, "max-age=300", T0)
    keys = state.usable(T0)
    assert keys is not None
    assert [k.kid for k in keys.keys] == ["k1"]
    assert not state.wants_fetch(T0 + 1, "RS256", "k1")
    assert not state.wants_fetch(T0 + 299.9, "RS256", None)
    assert state.usable(T0 + 299.9) is keys


def test_expiry_triggers_fetch(doc: dict[str, Any]) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, "max-age=300", T0)
    assert state.wants_fetch(T0 + 300.001, "RS256", "k1")
    assert not state.wants_fetch(T0 + 300, "RS256", "k1")  # fresh up to fresh_until


def test_unknown_kid_refresh_under_cooldown(doc: dict[str, Any], rotated: dict[str, Any]) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, None, T0)
    # Unknown kid right after a fetch: within the cooldown, no refresh.
    assert not state.wants_fetch(T0 + 1, "RS256", "k2")
    assert not state.wants_fetch(T0 + 14.9, "RS256", "k2")
    assert state.wants_fetch(T0 + 15, "RS256", "k2")
    # A wrong algorithm for the known kid also counts as "no candidate".
    assert state.wants_fetch(T0 + 15, "ES256", "k1")
    state.absorb(rotated, None, T0 + 15)
    keys = state.usable(T0 + 15)
    assert keys is not None
    assert [k.kid for k in keys.keys] == ["k2"]
    assert not state.wants_fetch(T0 + 16, "RS256", "k2")
    # Still unknown after the refresh: next chance after another cooldown.
    assert not state.wants_fetch(T0 + 20, "RS256", "k9")
    assert state.wants_fetch(T0 + 30, "RS256", "k9")


def test_failed_first_fetch_backs_off(doc: dict[str, Any]) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(None, None, T0)
    assert state.usable(T0) is None
    assert not state.wants_fetch(T0 + 5, "RS256", "k1")
    assert state.wants_fetch(T0 + 15, "RS256", "k1")
    state.absorb(doc, None, T0 + 15)
    assert state.usable(T0 + 15) is not None


def test_failed_refresh_keeps_last_known_good(
    doc: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, "max-age=300", T0)
    good = state.usable(T0)
    expired = T0 + 301
    assert state.wants_fetch(expired, "RS256", "k1")
    caplog.set_level(logging.WARNING, logger="tokenguard.jwks")
    state.absorb(None, None, expired)
    # Back off after the failure...
    assert not state.wants_fetch(expired + 1, "RS256", "k1")
    assert state.wants_fetch(expired + 15, "RS256", "k1")
    # ...and keep serving the last good keys for the stale window (600 s here).
    assert state.usable(expired + 1) is good
    stale = [r for r in caplog.records if "last-known-good" in r.getMessage()]
    assert len(stale) == 1
    assert stale[0].levelno == logging.WARNING
    assert ISSUER in stale[0].getMessage()
    assert "(2s stale)" in stale[0].getMessage()
    # Logged once per failed refresh, not on every use.
    assert state.usable(expired + 2) is good
    assert state.usable(expired + 598.9) is good
    assert len([r for r in caplog.records if "last-known-good" in r.getMessage()]) == 1
    # Past the stale window: nothing trustworthy.
    assert state.usable(expired + 599.1) is None
    # Another failed refresh re-arms the warning.
    state.absorb(None, None, expired + 20)
    state.usable(expired + 21)
    assert len([r for r in caplog.records if "last-known-good" in r.getMessage()]) == 2


def test_failed_refresh_within_fresh_window(doc: dict[str, Any]) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, "max-age=300", T0)
    good = state.usable(T0)
    state.absorb(None, None, T0 + 20)  # e.g. an unknown-kid refresh that failed
    assert state.usable(T0 + 21) is good
    assert not state.wants_fetch(T0 + 21, "RS256", "k1")  # known kid, still fresh
    assert not state.wants_fetch(T0 + 21, "RS256", "k2")  # cooldown after the failure


@pytest.mark.parametrize("document", [{"nokeys": 1}, {"keys": "x"}, {"keys": {}}])
def test_a_document_that_is_no_key_set_counts_as_failure(
    doc: dict[str, Any], document: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, "max-age=300", T0)
    good = state.usable(T0)
    caplog.set_level(logging.WARNING, logger="tokenguard.jwks")
    state.absorb(document, "max-age=300", T0 + 300)
    assert state.usable(T0 + 301) is good  # stale, not replaced
    assert state.failing
    assert not state.wants_fetch(T0 + 301, "RS256", "k1")  # backing off
    assert any("not a JWK Set" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "document",
    [
        {"keys": []},
        {"keys": [{"kty": "oct", "k": b64url(b"k" * 32)}]},  # symmetric never from the network
        {"keys": [{"kty": "RSA", "use": "enc"}]},
    ],
)
def test_a_key_set_without_usable_keys_withdraws_the_old_ones(
    doc: dict[str, Any], document: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 14 rule 4: a well-formed key set is the issuer's word, also when it withdraws
    # every key (an incident kill switch); it is not an outage to ride out on stale keys.
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, "max-age=300", T0)
    caplog.set_level(logging.WARNING, logger="tokenguard.jwks")
    state.absorb(document, "max-age=300", T0 + 300)
    usable = state.usable(T0 + 301)
    assert usable is not None
    assert usable.candidates("RS256", "k1") == ()
    assert usable.candidates("RS256", None) == ()
    assert not state.failing
    assert any("no usable key" in r.getMessage() for r in caplog.records)


def test_empty_first_jwks_means_no_keys() -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb({"keys": []}, None, T0)
    usable = state.usable(T0)
    assert usable is not None
    assert not usable.keys


def test_successful_refresh_logs_info(
    doc: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenguard.jwks")
    JwksState(ISSUER, SETTINGS).absorb(doc, None, T0)
    assert any("refreshed: 1 usable keys" in r.getMessage() for r in caplog.records)


def test_default_ttl_when_no_cache_control(doc: dict[str, Any]) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, None, T0)
    assert not state.wants_fetch(T0 + 3600, "RS256", "k1")
    assert state.wants_fetch(T0 + 3601, "RS256", "k1")


def test_recovery_after_failure_clears_backoff(doc: dict[str, Any]) -> None:
    state = JwksState(ISSUER, SETTINGS)
    state.absorb(doc, "max-age=60", T0)
    state.absorb(None, None, T0 + 60)
    state.absorb(doc, "max-age=60", T0 + 75)
    assert state.usable(T0 + 76) is not None
    # Expired again 60 s later: a fetch is wanted at once (no failure pending).
    assert state.wants_fetch(T0 + 136, "RS256", "k1")
