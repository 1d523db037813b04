"""Algorithm attacks: ``none``, HMAC keyed with a public key, algorithms outside the policy
or unfit for the key, and impossible signatures (psychic ECDSA, wrong lengths, wrong curve).

Every forged token is built by hand (``forge``) from the authorization server's real
published keys; tokens whose header lies about the algorithm are signed with the server's
real key through ``AuthServer.issue_jwt(header=...)``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tokenguard import ConfigurationError, InvalidSignature, MalformedToken, TokenGuard
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for
from . import forge
from .support import accepted, rejected

ASYMMETRIC = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "ES256K",
    "EdDSA",
]
HMAC = ["HS256", "HS384", "HS512"]
P256_N = forge.CURVE_ORDER["P-256"]
# Ed25519 group order L (RFC 8032 §5.1).
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def published(server: AuthServer, alg: str) -> dict[str, Any]:
    """The server's published JWK for ``alg``."""
    return next(k for k in server.jwks()["keys"] if k["alg"] == alg)


def claims(server: AuthServer) -> dict[str, Any]:
    return forge.claims_for(server.issuer, AUDIENCE)


def no_network(server: AuthServer) -> None:
    """A header-level refusal happens before discovery or key fetching."""
    assert server.request_count("metadata") == 0
    assert server.request_count("openid_configuration") == 0
    assert server.request_count("jwks") == 0


# -- none ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["empty", "garbage", "copied-from-genuine"])
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_every_spelling(
    server: AuthServer, check: Driver, alg: str, signature: str
) -> None:
    """RFC 8725 §3.1, RFC 7518 §3.6; CVE-2015-9235 (jsonwebtoken accepted alg none)."""
    genuine = server.issue_jwt()
    kid = published(server, "RS256")["kid"]
    s64 = {"empty": "", "garbage": forge.b64url(b"\x00" * 32)}.get(
        signature, forge.split(genuine)[2]
    )
    token = forge.compact({"alg": alg, "typ": "at+jwt", "kid": kid}, claims(server), signature=s64)
    # Even a policy listing every algorithm tokenguard knows cannot let "none" in.
    for guard in (guard_for(server), guard_for(server, algorithms=[*ASYMMETRIC, *HMAC])):
        rejected(check, guard, token, InvalidSignature)
    no_network(server)


def test_alg_none_from_the_server_itself(server: AuthServer, check: Driver) -> None:
    """RFC 8725 §3.1: an unsecured JWT minted by the real issuer is refused all the same."""
    rejected(check, guard_for(server), server.issue_jwt(alg="none"), InvalidSignature)
    no_network(server)


@pytest.mark.parametrize("algorithms", [["none"], ["RS256", "none"], ["NONE"]])
def test_a_policy_cannot_enable_none(server: AuthServer, algorithms: list[str]) -> None:
    """RFC 8725 §3.1: "none" is refused at configuration time (500, not a token case)."""
    with pytest.raises(ConfigurationError) as caught:
        TokenGuard(
            issuers=[{"issuer": server.issuer, "allow_insecure_http": True}],
            policies=[{"name": "p", "audience": AUDIENCE, "algorithms": algorithms}],
        )
    assert caught.value.status_code == 500


# -- HMAC keyed with the public key ---------------------------------------------------------

_SPELLINGS = {
    "RS256": [
        "pem-spki",
        "pem-spki-no-newline",
        "der-spki",
        "openssh",
        "jwk-json",
        "jwk-json-compact",
        "pem-pkcs1",
        "der-pkcs1",
        "raw-n",
    ],
    "ES256": [
        "pem-spki",
        "pem-spki-no-newline",
        "der-spki",
        "openssh",
        "jwk-json",
        "jwk-json-compact",
        "raw-point",
        "raw-x",
    ],
    "EdDSA": [
        "pem-spki",
        "pem-spki-no-newline",
        "der-spki",
        "openssh",
        "jwk-json",
        "jwk-json-compact",
        "raw-x",
    ],
}
_HMAC_CASES = [(key_alg, spelling) for key_alg, names in _SPELLINGS.items() for spelling in names]


@pytest.mark.parametrize("hs", HMAC)
@pytest.mark.parametrize(("key_alg", "spelling"), _HMAC_CASES)
def test_hmac_keyed_with_the_issuers_public_key(
    server: AuthServer, check: Driver, hs: str, key_alg: str, spelling: str
) -> None:
    """RFC 8725 §2.1/§3.1; CVE-2015-9235 and CVE-2016-10555 (HS256 with the RSA public key
    as secret), CVE-2017-11424 (PyJWT, PKCS#1 PEM), CVE-2022-29217 (PyJWT, OpenSSH keys),
    CVE-2024-33663 (python-jose, EC keys)."""
    jwk = published(server, key_alg)
    secret = forge.hmac_key_spellings(jwk)[spelling]
    strict = guard_for(server)
    # A misconfigured policy that allows HMAC still has no HMAC key from the network.
    lenient = guard_for(server, algorithms=[key_alg, *HMAC])
    for header in (
        {"alg": hs, "typ": "at+jwt", "kid": jwk["kid"]},
        {"alg": hs, "typ": "at+jwt"},
    ):
        token = forge.compact(header, claims(server), key=secret)
        rejected(check, strict, token, InvalidSignature)
        rejected(check, lenient, token, InvalidSignature)


def test_symmetric_key_published_in_the_jwks_is_never_used(
    server: AuthServer, check: Driver
) -> None:
    """RFC 8725 §3.1/§3.2: an ``oct`` key served by the JWKS endpoint (an attacker able to
    inject one, or a server publishing its HMAC secret) is not a verification key."""
    secret = b"s" * 64
    evil = {"kty": "oct", "k": forge.b64url(secret), "kid": "evil", "alg": "HS256", "use": "sig"}
    keys = server.jwks()["keys"]
    server.set_failure("jwks", 200, {"keys": [*keys, evil]})
    guard = guard_for(server, algorithms=["RS256", *HMAC])
    token = forge.compact(
        {"alg": "HS256", "typ": "at+jwt", "kid": "evil"}, claims(server), key=secret
    )
    rejected(check, guard, token, InvalidSignature)
    accepted(check, guard, server.issue_jwt())  # the same key set still verifies RS256


@pytest.mark.parametrize(("alg", "length"), [("HS384", 32), ("HS512", 32), ("HS512", 48)])
def test_hmac_with_a_key_shorter_than_the_hash(
    server: AuthServer, check: Driver, alg: str, length: int
) -> None:
    """RFC 7518 §3.2 (an HMAC key must be at least as long as the hash output), RFC 8725
    §3.5: a locally configured short ``oct`` key verifies only the HMACs it is long enough
    for."""
    secret = bytes(range(length))
    jwks = {"keys": [{"kty": "oct", "k": forge.b64url(secret), "kid": "local"}]}
    guard = guard_for(server, issuer={"static_jwks": jwks, "client_auth": None}, algorithms=HMAC)
    header = {"alg": alg, "typ": "at+jwt", "kid": "local"}
    rejected(check, guard, forge.compact(header, claims(server), key=secret), InvalidSignature)
    control = {"alg": "HS256", "typ": "at+jwt", "kid": "local"}
    accepted(check, guard, forge.compact(control, claims(server), key=secret))


# -- algorithm outside the policy / not fitting the key --------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA"])
def test_algorithm_not_in_the_policy(server: AuthServer, check: Driver, alg: str) -> None:
    """RFC 8725 §3.1 (the verifier, not the token, chooses the algorithms): a genuine token
    with an algorithm outside the policy's allow-list is refused before any key fetch."""
    guard = guard_for(server, algorithms=["ES256"])
    rejected(check, guard, server.issue_jwt(alg=alg), InvalidSignature)
    no_network(server)


_MISMATCHES = [
    ("RS256", "ES256"),
    ("RS256", "PS256"),
    ("RS256", "EdDSA"),
    ("RS256", "RS512"),
    ("PS256", "RS256"),
    ("PS256", "PS512"),
    ("ES256", "RS256"),
    ("ES256", "ES384"),
    ("ES256", "ES512"),
    ("ES256", "ES256K"),
    ("ES256", "EdDSA"),
    ("EdDSA", "ES256"),
    ("EdDSA", "RS256"),
]


@pytest.mark.parametrize(("signed_with", "claimed"), _MISMATCHES)
def test_alg_header_that_does_not_fit_the_key(
    server: AuthServer, check: Driver, signed_with: str, claimed: str
) -> None:
    """RFC 8725 §3.1 (a key is used with one algorithm), RFC 7518 §3.4 (each ES* algorithm
    has its own curve); CVE-2022-29217. Signed by the issuer's real ``signed_with`` key,
    the header claims ``claimed``."""
    guard = guard_for(server, algorithms=ASYMMETRIC)
    token = server.issue_jwt(alg=signed_with, header={"alg": claimed})
    rejected(check, guard, token, InvalidSignature)


@pytest.mark.parametrize(
    ("signed_with", "claimed"),
    [("RS256", "PS256"), ("PS256", "RS256"), ("ES256", "ES384"), ("ES256", "EdDSA")],
)
def test_alg_swap_when_the_jwks_names_no_algorithm(
    server: AuthServer, check: Driver, signed_with: str, claimed: str
) -> None:
    """RFC 7517 §4.4 (``alg`` is optional in a JWK), RFC 8725 §3.1: without the JWK's
    ``alg``, the key's type and curve still bind it to its algorithms."""
    stripped = [{k: v for k, v in jwk.items() if k != "alg"} for jwk in server.jwks()["keys"]]
    server.set_failure("jwks", 200, {"keys": stripped})
    guard = guard_for(server, algorithms=ASYMMETRIC)
    rejected(
        check, guard, server.issue_jwt(alg=signed_with, header={"alg": claimed}), InvalidSignature
    )
    accepted(check, guard, server.issue_jwt(alg=signed_with))


@pytest.mark.parametrize(
    "alg",
    [
        pytest.param(None, id="missing"),
        pytest.param("null", id="null"),
        pytest.param(256, id="int"),
        pytest.param(True, id="bool"),
        pytest.param(["RS256"], id="list"),
        pytest.param({"RS256": True}, id="object"),
    ],
)
def test_alg_of_the_wrong_type(server: AuthServer, check: Driver, alg: Any) -> None:
    """RFC 7515 §4.1.1: ``alg`` is a required string."""
    genuine = server.issue_jwt()
    header = {"typ": "at+jwt", "kid": published(server, "RS256")["kid"]}
    if alg is not None:
        header["alg"] = None if alg == "null" else alg
    token = forge.reencode(genuine, header=header)
    rejected(check, guard_for(server), token, MalformedToken)
    no_network(server)


@pytest.mark.parametrize(
    "alg", ["", "rs256", "Rs256", "RS256 ", " RS256", "RS256\u0000", "RSA256", "RS-256", "RS256K"]
)
def test_alg_near_miss_spellings(server: AuthServer, check: Driver, alg: str) -> None:
    """RFC 7515 §4.1.1 (``alg`` values are case-sensitive), RFC 8725 §3.1."""
    token = forge.reencode(server.issue_jwt(), header={"alg": alg, "typ": "at+jwt"})
    rejected(check, guard_for(server), token, InvalidSignature)
    no_network(server)


# -- impossible signatures --------------------------------------------------------------------

_ECDSA = {
    "r0-s0 (64 zero bytes)": forge.ecdsa_raw(0, 0),
    "r0-s1": forge.ecdsa_raw(0, 1),
    "r1-s0": forge.ecdsa_raw(1, 0),
    "r=n s=n": forge.ecdsa_raw(P256_N, P256_N),
    "r=n s=1": forge.ecdsa_raw(P256_N, 1),
    "r=1 s=n": forge.ecdsa_raw(1, P256_N),
    "r=n+1 s=1": forge.ecdsa_raw(P256_N + 1, 1),
    "r=n-1 s=n-1": forge.ecdsa_raw(P256_N - 1, P256_N - 1),
    "all-ff": b"\xff" * 64,
    "1 byte": b"\x00",
    "32 bytes": b"\x00" * 32,
    "63 bytes": b"\x01" * 63,
    "65 bytes": b"\x01" * 65,
    "96 bytes (P-384 size)": b"\x01" * 96,
    "132 bytes (P-521 size)": b"\x01" * 132,
}


@pytest.mark.parametrize("signature", list(_ECDSA), ids=list(_ECDSA))
def test_psychic_and_malformed_ecdsa_signatures(
    server: AuthServer, check: Driver, signature: str
) -> None:
    """CVE-2022-21449 (Java accepted r = s = 0 for any message), RFC 7518 §3.4 (exactly
    64 bytes ``r || s`` for ES256), SEC 1 §4.1.4 (0 < r, s < n)."""
    kid = published(server, "ES256")["kid"]
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    token = forge.compact(header, claims(server), signature=_ECDSA[signature])
    guard = guard_for(server)
    rejected(check, guard, token, InvalidSignature)
    # Without kid the signature is tried against every ES256 key: still refused.
    token = forge.compact(
        {"alg": "ES256", "typ": "at+jwt"}, claims(server), signature=_ECDSA[signature]
    )
    rejected(check, guard, token, InvalidSignature)


@pytest.mark.parametrize("shape", ["der", "der-plus-byte", "raw-plus-byte", "raw-truncated"])
def test_genuine_ecdsa_signature_in_another_shape(
    server: AuthServer, check: Driver, shape: str
) -> None:
    """RFC 7518 §3.4: the JWS form of an ECDSA signature is fixed-length ``r || s``; the DER
    form of the same (valid) signature is refused."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    h64, p64, s64 = forge.split(server.issue_jwt(alg="ES256"))
    raw = forge.b64url_decode(s64)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    signature = {
        "der": der,
        "der-plus-byte": der + b"\x00",
        "raw-plus-byte": raw + b"\x00",
        "raw-truncated": raw[:-1],
    }[shape]
    rejected(check, guard_for(server), f"{h64}.{p64}.{forge.b64url(signature)}", InvalidSignature)


def test_ecdsa_high_s_twin_is_a_valid_signature(server: AuthServer, check: Driver) -> None:
    """Informational (not an attack on validity): ECDSA ``(r, n - s)`` verifies whenever
    ``(r, s)`` does, and RFC 7518 §3.4 has no low-S rule, so the twin of a genuine token
    is accepted. It carries the same claims; only the cache key differs."""
    h64, p64, s64 = forge.split(server.issue_jwt(alg="ES256"))
    raw = forge.b64url_decode(s64)
    twin = forge.ecdsa_raw(
        int.from_bytes(raw[:32], "big"), P256_N - int.from_bytes(raw[32:], "big")
    )
    info = accepted(check, guard_for(server), f"{h64}.{p64}.{forge.b64url(twin)}")
    assert info.issuer == server.issuer


@pytest.mark.parametrize("claimed", ["ES384", "ES512", "ES256K"])
def test_wrong_curve(
    server: AuthServer, check: Driver, attacker_keys: dict[str, Any], claimed: str
) -> None:
    """RFC 7518 §3.4, RFC 8725 §3.4: ES384/ES512/ES256K named on the issuer's P-256 key,
    signed by an attacker's P-384 key of the size the header suggests."""
    kid = published(server, "ES256")["kid"]
    header = {"alg": claimed, "typ": "at+jwt", "kid": kid}
    token = forge.compact(header, claims(server), key=attacker_keys["ec384"], alg="ES384")
    rejected(check, guard_for(server, algorithms=ASYMMETRIC), token, InvalidSignature)


_RSA = ["zeros-256", "one", "255 bytes", "257 bytes", "leading-zero", "modulus", "512 bytes"]


@pytest.mark.parametrize("shape", _RSA)
def test_malformed_rsa_signatures(server: AuthServer, check: Driver, shape: str) -> None:
    """RFC 8017 §8.2.2 (the signature is exactly k bytes, 0 <= s < n), RFC 7518 §3.3."""
    h64, p64, s64 = forge.split(server.issue_jwt(alg="RS256"))
    raw = forge.b64url_decode(s64)
    modulus = forge.b64url_decode(published(server, "RS256")["n"])
    signature = {
        "zeros-256": b"\x00" * 256,
        "one": b"\x01",
        "255 bytes": raw[1:],
        "257 bytes": raw + b"\x00",
        "leading-zero": b"\x00" + raw,
        "modulus": modulus,
        "512 bytes": raw + raw,
    }[shape]
    rejected(check, guard_for(server), f"{h64}.{p64}.{forge.b64url(signature)}", InvalidSignature)


_EDDSA = ["zeros-64", "identity-R-zero-S", "63 bytes", "65 bytes", "S-plus-L", "R-of-other"]


@pytest.mark.parametrize("shape", _EDDSA)
def test_malformed_eddsa_signatures(server: AuthServer, check: Driver, shape: str) -> None:
    """RFC 8032 §5.1.7 (64-byte signatures, S < L: the S + L twin of a genuine signature
    is refused, unlike ECDSA's high-S twin), RFC 8037 §3.1."""
    h64, p64, s64 = forge.split(server.issue_jwt(alg="EdDSA"))
    raw = forge.b64url_decode(s64)
    s_value = int.from_bytes(raw[32:], "little")
    signature = {
        "zeros-64": b"\x00" * 64,
        "identity-R-zero-S": b"\x01" + b"\x00" * 63,
        "63 bytes": raw[:-1],
        "65 bytes": raw + b"\x00",
        "S-plus-L": raw[:32] + (s_value + ED25519_L).to_bytes(32, "little"),
        "R-of-other": forge.b64url_decode(forge.split(server.issue_jwt(alg="EdDSA"))[2])[:32]
        + raw[32:],
    }[shape]
    rejected(check, guard_for(server), f"{h64}.{p64}.{forge.b64url(signature)}", InvalidSignature)
