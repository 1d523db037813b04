"""The pure pieces of sender-constrained tokens: RFC 7638 thumbprints, ``ath``, ``htu``
normalisation, server nonces, the replay cache, certificate thumbprints, configuration."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tokenguard import ConfigurationError, DPoPProof, InvalidRequest, Policy, Settings, TokenGuard
from tokenguard.core.binding import Binder, binding_rules
from tokenguard.core.dpop import access_token_hash, jwk_thumbprint
from tokenguard.core.mtls import certificate_thumbprint, matches_certificate
from tokenguard.core.nonces import NonceSource
from tokenguard.core.replay import ReplayCache, replay_key
from tokenguard.core.urls import normalize_http_uri
from tokenguard.errors import InvalidTokenBinding

# RFC 7638 §3.1's example key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
    "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
    "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
    "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_rfc7638_thumbprint() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    # Only the required members count: alg, kid, use and unknown members do not.
    plain = {k: RFC7638_JWK[k] for k in ("e", "kty", "n")}
    assert jwk_thumbprint({**plain, "use": "sig", "x": 1}) == jwk_thumbprint(RFC7638_JWK)


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "RSA", "n": "AQAB"},
        {"kty": "EC", "crv": "P-256", "x": "AA"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": 1},
        {"kty": "oct", "k": "AA"},
        {"kty": ["EC"]},
        {},
    ],
)
def test_thumbprint_of_incomplete_keys(jwk: dict[str, Any]) -> None:
    assert jwk_thumbprint(jwk) is None


def test_thumbprint_of_ec_and_okp_keys() -> None:
    ec_jwk = {"kty": "EC", "crv": "P-256", "x": "xx", "y": "yy", "kid": "k"}
    digest = hashlib.sha256(b'{"crv":"P-256","kty":"EC","x":"xx","y":"yy"}').digest()
    assert jwk_thumbprint(ec_jwk) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    okp = hashlib.sha256(b'{"crv":"Ed25519","kty":"OKP","x":"xx"}').digest()
    assert jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": "xx"}) == (
        base64.urlsafe_b64encode(okp).rstrip(b"=").decode()
    )


def test_ath_matches_rfc9449_example() -> None:
    # RFC 9449 §7.1: the access token of the example and its ath.
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://api.example/orders", "https://api.example/orders"),
        ("HTTPS://API.EXAMPLE/orders", "https://api.example/orders"),
        ("https://api.example:443/orders", "https://api.example/orders"),
        ("http://api.example:80", "http://api.example/"),
        ("https://api.example:/x", "https://api.example/x"),
        ("https://api.example:8443/x", "https://api.example:8443/x"),
        ("https://api.example/%7euser/%2f", "https://api.example/~user/%2F"),
        ("https://api.example/a/./b/../c", "https://api.example/a/c"),
        ("https://api.example/a/%2E%2E/c", "https://api.example/c"),
        ("https://api.example/a/b/..", "https://api.example/a/"),
        ("https://api.example/../../x", "https://api.example/x"),
        ("https://[::1]:443/p", "https://[::1]/p"),
        ("https://api.example/é", "https://api.example/%C3%A9"),
        ("https://api.example/ORDERS", "https://api.example/ORDERS"),  # paths keep case
    ],
)
def test_htu_normalisation(url: str, normal: str) -> None:
    """RFC 3986 §6.2.2 (case, percent-encoding, dot segments), §6.2.3 (port, empty path)."""
    assert normalize_http_uri(url, strip_query=False) == normal


@pytest.mark.parametrize(
    "url",
    [
        "ftp://api.example/x",
        "/orders",
        "api.example/orders",
        "https://user:pw@api.example/x",
        "https://@api.example/x",
        "https://api.example/a%zz",
        "https://api.example/a%",
        "https://api.example/a b",
        "https://api.example/a\\b",
        "https://api.example/\x00",
        "https://api.example:99999/x",
        "https://api.example:port/x",
        "https://ex%41mple.com/x",
        "https://exämple.com/x",
        "https:///x",
        "https://api.example/" + "a" * 5000,
    ],
)
def test_htu_refused(url: str) -> None:
    assert normalize_http_uri(url, strip_query=True) is None


def test_htu_query_and_fragment() -> None:
    for url in ("https://api.example/x?q=1", "https://api.example/x#f", "https://api.example/x?"):
        assert normalize_http_uri(url, strip_query=False) is None
        assert normalize_http_uri(url, strip_query=True) == "https://api.example/x"


# -- nonces -------------------------------------------------------------------------------

T0 = 1_700_000_000.0


def test_nonces_live_four_to_five_minutes() -> None:
    source = NonceSource()
    nonce = source.current(T0)
    assert source.accepts(nonce, T0)
    assert source.accepts(nonce, T0 + 239)
    assert not source.accepts(nonce, T0 + 301)
    assert not source.accepts(nonce, T0 - 121)  # from two steps ahead: not ours
    assert source.current(T0 + 120) != nonce


def test_nonces_shared_by_secret_only() -> None:
    a, b, c = NonceSource(b"s" * 32), NonceSource(b"s" * 32), NonceSource(b"t" * 32)
    assert a.current(T0) == b.current(T0)
    assert b.accepts(a.current(T0), T0)
    assert not c.accepts(a.current(T0), T0)
    assert not NonceSource().accepts(NonceSource().current(T0), T0)
    assert not a.accepts("n\u00f6nce", T0)
    assert not a.accepts("", T0)


# -- replay cache -----------------------------------------------------------------------------


def test_replay_cache_remembers_for_its_retention() -> None:
    cache = ReplayCache(maxsize=1000, retention=120)
    key = replay_key("thumb", "jti-1")
    assert cache.claim(key, T0) is True
    assert cache.claim(key, T0 + 119) is False
    assert cache.claim(replay_key("thumb", "jti-2"), T0 + 1) is True
    assert len(cache) == 2
    assert cache.claim(key, T0 + 120.5) is True  # its window is over, jti-2's is not
    assert len(cache) == 2


def test_replay_key_separates_keys_and_jtis() -> None:
    keys = {replay_key("a", "b\x00c"), replay_key("a\x00b", "c"), replay_key("a", "bc")}
    assert len(keys) == 3
    assert all(len(k) == 16 for k in keys)


def test_replay_cache_refuses_when_full() -> None:
    cache = ReplayCache(maxsize=3, retention=60)
    for i in range(3):
        assert cache.claim(replay_key("k", str(i)), T0 + i)
    assert cache.claim(replay_key("k", "new"), T0 + 10) is None  # full: never forget early
    assert cache.claim(replay_key("k", "0"), T0 + 10) is False
    assert cache.claim(replay_key("k", "new"), T0 + 61.5) is True  # the first one expired


def test_binder_refuses_when_the_replay_cache_is_full() -> None:
    from tokenguard import InvalidDPoPProof, ValidationUnavailable
    from tokenguard.core.dpop import Proof

    binder = Binder(Settings(dpop_replay_cache_size=1000), [Policy(name="p", audience="a")])
    proof: Any = Proof(jws=None, jwk={}, thumbprint="t", jti="j", iat=T0)  # type: ignore[arg-type]
    binder.claim(proof, T0)
    with pytest.raises(InvalidDPoPProof, match="already used"):
        binder.claim(proof, T0)
    for i in range(999):
        binder.claim(Proof(jws=None, jwk={}, thumbprint="t", jti=str(i), iat=T0), T0)  # type: ignore[arg-type]
    with pytest.raises(ValidationUnavailable, match="replay cache is full"):
        binder.claim(Proof(jws=None, jwk={}, thumbprint="t", jti="x", iat=T0), T0)  # type: ignore[arg-type]
    assert repr(proof).startswith("Proof(thumbprint='t'")
    assert "'j'" not in repr(proof)


# -- schemes ---------------------------------------------------------------------------------


def test_scheme_inference_and_challenge() -> None:
    binder = Binder(Settings(), [Policy(name="p", audience="a")])
    rules = binding_rules(Policy(name="p", audience="a", dpop_algorithms=["ES256"]))
    assert binder.challenge(rules, None).scheme == "Bearer"
    assert binder.challenge(rules, DPoPProof(None, "GET", "https://a/")).scheme == "Bearer"
    assert binder.challenge(rules, DPoPProof("x", "GET", "https://a/")).scheme == "DPoP"
    assert binder.challenge(rules, DPoPProof("x", "GET", "https://a/", "bearer")).scheme == (
        "Bearer"
    )
    assert binder.challenge(rules, DPoPProof(None, "GET", "https://a/", "dPoP")).algs == ("ES256",)
    with pytest.raises(InvalidRequest):
        binder.begin(rules, "t", DPoPProof(None, "GET", "https://a/", "Basic"), None, T0)
    assert binder.begin(rules, "t", None, None, T0) is None
    assert binder.begin(rules, "t", DPoPProof("x", "GET", "u", "Bearer"), None, T0) is not None


def test_dpop_proof_repr_hides_the_proof() -> None:
    proof = DPoPProof("eyJ.secret-proof.sig", "GET", "https://api.example/x")
    assert "secret-proof" not in repr(proof)
    assert "GET" in repr(proof)


# -- certificates ----------------------------------------------------------------------------


def _certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_certificate_thumbprints() -> None:
    """RFC 8705 §3.1: base64url SHA-256 of the DER certificate, whatever form it came in."""
    cert = _certificate(ec.generate_private_key(ec.SECP256R1()))
    der = cert.public_bytes(Encoding.DER)
    pem = cert.public_bytes(Encoding.PEM)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    chain = pem + _certificate(ec.generate_private_key(ec.SECP256R1())).public_bytes(Encoding.PEM)
    for form in (der, pem, pem.decode(), cert, chain, b"\n" + pem):
        assert certificate_thumbprint(form) == expected
    assert matches_certificate(expected, der)
    # Another thumbprint: the first character changed (changing the last one to a fixed
    # letter gave the same string one time in sixteen).
    other = ("B" if expected[0] == "A" else "A") + expected[1:]
    assert not matches_certificate(other, der)
    for junk in (
        b"",
        b"not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
        "é",
        os.urandom(64),
    ):
        with pytest.raises(InvalidTokenBinding, match="could not be read"):
            certificate_thumbprint(junk)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("algs", [["HS256"], [], ["ES256", "HS512"], ["none"], ["XX256"]])
def test_dpop_algorithms_must_be_asymmetric(algs: list[str]) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        Policy(name="p", audience="a", dpop_algorithms=algs)


def test_dpop_policy_settings() -> None:
    policy = Policy(name="p", audience="a")
    assert (policy.dpop, policy.dpop_nonce, policy.dpop_max_age) == ("allowed", False, 60.0)
    assert policy.dpop_algorithms[0] == "ES256"
    assert "HS256" not in policy.dpop_algorithms
    for bad in ({"dpop": "maybe"}, {"dpop_max_age": 0}, {"dpop_max_age": 3600}):
        with pytest.raises(ValueError):
            Policy(name="p", audience="a", **bad)


def test_allow_sender_constrained_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="allow_sender_constrained"):
        Policy(name="p", audience="a", allow_sender_constrained=True)


def test_nonce_secret_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Settings(dpop_nonce_secret="short")
    monkeypatch.setenv("TG_TEST_NONCE_SECRET", "n" * 32)
    settings = Settings.model_validate({"dpop_nonce_secret_env": "TG_TEST_NONCE_SECRET"})
    assert settings.dpop_nonce_secret is not None
    assert "nnnn" not in repr(settings)
    assert "nnnn" not in settings.model_dump_json()
    with pytest.raises(ConfigurationError, match="dpop_replay_cache_size"):
        TokenGuard(
            issuers=[{"issuer": "https://as.example"}],
            policies=[{"name": "p", "audience": "a"}],
            settings={"dpop_replay_cache_size": 5},
        )


def test_signed_introspection_needs_a_client_id() -> None:
    from tokenguard import BearerToken, ClientSecretBasic, Issuer

    with pytest.raises(ValueError, match="client_auth with a client_id"):
        Issuer("https://as.example", client_auth=BearerToken("t"), signed_introspection=True)
    issuer = Issuer(
        "https://as.example",
        client_auth=ClientSecretBasic("rs", "secret"),
        signed_introspection=True,
    )
    assert issuer.signed_introspection
