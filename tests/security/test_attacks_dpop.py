"""DPoP attacks (RFC 9449): proofs replayed, moved to another request, stale, forged,
signed by another key, carrying a private key; bound tokens downgraded to Bearer; nonces
missing or stale. One case per check of RFC 9449 §4.3 / §7.1 / §9, each run through both
shells against a real loopback authorization server, asserting the exact error class,
status and the check that refused it.

Proofs are built by hand (``forge.dpop_proof``): raw JOSE, signatures from
``cryptography``, so anything a client or an attacker could send can be sent.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from freezegun import freeze_time

from tokenguard import (
    DPoPProof,
    InvalidClaims,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidTokenBinding,
    Policy,
    TokenGuard,
    UnsupportedToken,
    UseDPoPNonce,
)
from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer

from ..conftest import Driver, guard_for
from . import forge, support
from .support import accepted, rejected

URL = "https://api.example/orders"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """The legitimate client's keys (one per family) and an attacker's."""
    return {
        "es256": ec.generate_private_key(ec.SECP256R1()),
        "ps256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "eddsa": ed25519.Ed25519PrivateKey.generate(),
        "attacker": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "rsa1024": rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
    }


def jkt(key: Any) -> str:
    return forge.jwk_thumbprint(forge.jwk_of(key))


def bound_jwt(server: AuthServer, key: Any, **claims: Any) -> str:
    return server.issue_jwt(scopes=["orders:read"], claims={"cnf": {"jkt": jkt(key)}, **claims})


def bound_opaque(server: AuthServer, key: Any) -> str:
    return server.issue_opaque(
        scopes=["orders:read"], extra={"token_type": "DPoP", "cnf": {"jkt": jkt(key)}}
    )


def with_proof(
    check: Driver,
    proof: Any,
    *,
    method: str = "GET",
    url: str = URL,
    scheme: str | None = None,
) -> Callable[..., Any]:
    """``check`` with the request's DPoP context; the proof is watched for leaks too."""
    for value in [proof] if isinstance(proof, str) else list(proof or ()):
        support.SEEN.append(value)
    return functools.partial(check, dpop=DPoPProof(proof, method, url, scheme))


def refused_proof(
    check: Driver,
    guard: TokenGuard,
    token: str,
    proof: Any,
    reason: str,
    policy: str | None = None,
    **request: Any,
) -> None:
    error = rejected(with_proof(check, proof, **request), guard, token, InvalidDPoPProof, policy)
    assert reason in error.description, error.description
    header = error.www_authenticate()
    assert 'DPoP error="invalid_dpop_proof"' in header, header


# -- controls -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "alg"), [("es256", None), ("ps256", None), ("eddsa", None)])
def test_bound_jwt_passes_with_a_valid_proof(
    server: AuthServer, check: Driver, keys: dict[str, Any], name: str, alg: str | None
) -> None:
    """RFC 9449 §7.1: under a default policy, no opt-in needed once the proof checks."""
    key = keys[name]
    token = bound_jwt(server, key)
    guard = guard_for(server)
    info = accepted(with_proof(check, forge.dpop_proof(key, token=token)), guard, token)
    assert info.cnf == {"jkt": jkt(key)}
    # Seen again (verified-token cache): a new proof is still required and checked.
    again = accepted(with_proof(check, forge.dpop_proof(key, token=token)), guard, token)
    assert again.cached


def test_bound_opaque_token_passes_with_a_valid_proof(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """RFC 9449 §6.2: introspection answers token_type DPoP and cnf.jkt."""
    token = bound_opaque(server, keys["es256"])
    info = accepted(
        with_proof(check, forge.dpop_proof(keys["es256"], token=token)), guard_for(server), token
    )
    assert info.source == "introspection"
    assert info.token_type == "DPoP"


def test_htu_compared_after_normalisation(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """RFC 9449 §4.3 (RFC 3986 §6.2.2-6.2.3 normalisation); the request's query is
    ignored (check 9)."""
    key = keys["es256"]
    guard = guard_for(server)
    token = bound_jwt(server, key)
    for htu, url in [
        ("HTTPS://API.Example:443/orders", URL),
        ("https://api.example/%6Frders", "https://api.example/orders?page=2#top"),
        ("https://api.example/x/../orders", "https://api.example:443/orders"),
    ]:
        proof = forge.dpop_proof(key, htu=htu, token=token)
        accepted(with_proof(check, proof, url=url), guard, token)


# -- one case per check ---------------------------------------------------------------------

NOW = int(time.time())
_PROOF_CASES: dict[str, tuple[dict[str, Any], str]] = {
    # RFC 9449 §4.3 check 4: typ
    "typ-JWT": ({"header": {"typ": "JWT"}}, "type must be dpop+jwt"),
    "typ-absent": ({"header": {"typ": None}}, "type must be dpop+jwt"),
    "typ-at+jwt": ({"header": {"typ": "at+jwt"}}, "type must be dpop+jwt"),
    # check 5: an asymmetric alg from the allow-list, fit for the key
    "alg-none": ({"header": {"alg": "none"}}, "algorithm is not allowed"),
    "alg-HS256": ({"header": {"alg": "HS256"}}, "algorithm is not allowed"),
    "alg-ES384-on-P-256": ({"header": {"alg": "ES384"}}, "does not fit its algorithm"),
    "alg-RS256-on-EC": ({"header": {"alg": "RS256"}}, "does not fit its algorithm"),
    # checks 6-7: a public jwk
    "jwk-absent": ({"header": {"jwk": None}}, "carries no jwk"),
    "jwk-string": ({"header": {"jwk": "key"}}, "carries no jwk"),
    "jwk-incomplete": ({"header": {"jwk": {"kty": "EC", "crv": "P-256"}}}, "incomplete"),
    # check 8: htm
    "htm-other": ({"claims": {"htm": "POST"}}, "another HTTP method"),
    "htm-lowercase": ({"claims": {"htm": "get"}}, "another HTTP method"),
    "htm-absent": ({"claims": {"htm": None}}, "another HTTP method"),
    # check 9: htu
    "htu-other-path": ({"claims": {"htu": "https://api.example/admin"}}, "another URL"),
    "htu-other-host": ({"claims": {"htu": "https://evil.example/orders"}}, "another URL"),
    "htu-http": ({"claims": {"htu": "http://api.example/orders"}}, "another URL"),
    "htu-other-port": ({"claims": {"htu": "https://api.example:8443/orders"}}, "another URL"),
    "htu-with-query": ({"claims": {"htu": URL + "?id=1"}}, "no valid htu"),
    "htu-with-fragment": ({"claims": {"htu": URL + "#x"}}, "no valid htu"),
    "htu-relative": ({"claims": {"htu": "/orders"}}, "no valid htu"),
    "htu-userinfo": ({"claims": {"htu": "https://u:p@api.example/orders"}}, "no valid htu"),
    "htu-number": ({"claims": {"htu": 1}}, "no valid htu"),
    # check 11: iat within the window (60 s)
    "iat-stale": ({"claims": {"iat": NOW - 3600}}, "too old"),
    "iat-future": ({"claims": {"iat": NOW + 3600}}, "issued in the future"),
    "iat-absent": ({"claims": {"iat": None}}, "no valid iat"),
    "iat-string": ({"claims": {"iat": str(NOW)}}, "no valid iat"),
    "iat-bool": ({"claims": {"iat": True}}, "no valid iat"),
    # §4.2: jti
    "jti-absent": ({"claims": {"jti": None}}, "no valid jti"),
    "jti-empty": ({"claims": {"jti": ""}}, "no valid jti"),
    "jti-number": ({"claims": {"jti": 7}}, "no valid jti"),
    # check 12: ath
    "ath-other-token": ({"claims": {"ath": forge.b64url(b"\x00" * 32)}}, "not for this access"),
    "ath-absent": ({"claims": {"ath": None}}, "not for this access token"),
    # §4.2: nonce must be a string when present
    "nonce-number": ({"claims": {"nonce": 5}}, "nonce must be a string"),
    # RFC 7515 §4.1.11: no extension is understood
    "crit": ({"header": {"crit": ["exp"], "exp": 1}}, "malformed"),
}


@pytest.mark.parametrize("case", list(_PROOF_CASES))
def test_each_proof_check(
    server: AuthServer, check: Driver, keys: dict[str, Any], case: str
) -> None:
    """RFC 9449 §4.3: each check refuses its broken twin (validly signed by the key the
    token is bound to, so only the named defect can refuse it)."""
    changes, reason = _PROOF_CASES[case]
    key = keys["es256"]
    token = bound_jwt(server, key)
    proof = forge.dpop_proof(key, token=token, **changes)
    refused_proof(check, guard_for(server), token, proof, reason)
    # The proof is refused before the token is looked at: no key fetched for it.
    assert server.request_count("jwks") == 0


def test_replayed_proof(server: AuthServer, check: Driver, keys: dict[str, Any]) -> None:
    """RFC 9449 §11.1: a jti is accepted once within the window (cached token and
    first-seen token alike), whatever encoding of the signature is replayed."""
    key = keys["es256"]
    for guard in (guard_for(server), guard_for(server, verified_cache_ttl=0)):
        token = bound_jwt(server, key)
        proof = forge.dpop_proof(key, token=token)
        accepted(with_proof(check, proof), guard, token)
        refused_proof(check, guard, token, proof, "already used")
        # ECDSA malleability: (r, n - s) is another valid signature of the same proof.
        h64, p64, s64 = forge.split(proof)
        sig = forge.b64url_decode(s64)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        twin = f"{h64}.{p64}.{forge.b64url(forge.ecdsa_raw(r, forge.CURVE_ORDER['P-256'] - s))}"
        refused_proof(check, guard, token, twin, "already used")


def test_a_refused_request_leaves_no_jti_behind(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """A proof's jti is remembered only once the proof verified and the token validated:
    a request refused for another reason cannot burn it (nor fill the cache)."""
    key = keys["es256"]
    guard = guard_for(server, required_scopes=["orders:write"])
    token = bound_jwt(server, key)
    proof = forge.dpop_proof(key, token=token)
    from tokenguard import InsufficientScope

    rejected(with_proof(check, proof), guard, token, InsufficientScope)
    assert len(guard._engine.binder.replay) == 0
    assert not guard._engine.binder._keys  # nor its public key
    assert not guard._engine.binder._headers  # nor its header


def test_proof_signed_by_another_key(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """RFC 9449 §4.3 check 12: the attacker has the token, not the key. A valid proof of
    the attacker's own key, and a proof carrying the victim's public key but signed by the
    attacker, are both refused."""
    victim, attacker = keys["es256"], keys["attacker"]
    guard = guard_for(server)
    token = bound_jwt(server, victim)
    # The victim's key is known (a request of theirs passed): no shortcut for forgeries.
    accepted(with_proof(check, forge.dpop_proof(victim, token=token)), guard, token)
    assert jkt(victim) in guard._engine.binder._keys
    own = forge.dpop_proof(attacker, token=token)
    refused_proof(check, guard, token, own, "not the one the token is bound to")
    stolen_jwk = forge.dpop_proof(victim, token=token, signing_key=attacker)
    refused_proof(check, guard, token, stolen_jwk, "signature is invalid")
    garbage = forge.reencode(stolen_jwk)[:-10] + "AAAAAAAAAA"
    refused_proof(check, guard, token, garbage, "signature is invalid")


def test_a_known_proof_header_still_checks_the_rest(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """A client's proof header (same typ, alg and jwk each time) is remembered once one of
    its requests passed, and not parsed again: everything else still is. With the
    victim's header known, a proof signed by another key, a broken payload or signature,
    a proof for another request and one under a policy that does not list its algorithm
    are refused exactly as before."""
    victim = keys["es256"]
    guard = guard_for(
        server,
        Policy(name="es", audience=DEFAULT_AUDIENCE, dpop_algorithms=["ES256"]),
        Policy(name="ed", audience=DEFAULT_AUDIENCE, dpop_algorithms=["EdDSA"]),
    )
    token = bound_jwt(server, victim)
    first = forge.dpop_proof(victim, token=token)
    accepted(with_proof(check, first), guard, token, "es")
    segment = first.partition(".")[0]
    assert segment in guard._engine.binder._headers
    again = forge.dpop_proof(victim, token=token)
    assert again.partition(".")[0] == segment  # the known-header path
    accepted(with_proof(check, again), guard, token, "es")

    forged = forge.dpop_proof(victim, token=token, signing_key=keys["attacker"])
    assert forged.partition(".")[0] == segment
    refused_proof(check, guard, token, forged, "signature is invalid", policy="es")
    h64, p64, s64 = forge.split(forge.dpop_proof(victim, token=token))
    for broken, reason in [
        (f"{h64}.{p64[:-2]}.{s64}", "malformed"),
        (f"{h64}.{forge.segment(b'[1]')}.{s64}", "malformed"),
        (f"{h64}.{p64}.{s64[:-4]}AAAA", "signature is invalid"),
        (f"{h64}.{p64}.{s64}x", "malformed"),
    ]:
        refused_proof(check, guard, token, broken, reason, policy="es")
    post = forge.dpop_proof(victim, token=token, htm="POST")
    refused_proof(check, guard, token, post, "another HTTP method", policy="es")
    other_policy = forge.dpop_proof(victim, token=token)
    refused_proof(check, guard, token, other_policy, "algorithm is not allowed", policy="ed")
    assert list(guard._engine.binder._headers) == [segment]


def test_private_key_in_jwk(server: AuthServer, check: Driver, keys: dict[str, Any]) -> None:
    """RFC 9449 §4.3 check 7; also a symmetric key (all secret) with an HMAC proof."""
    key = keys["es256"]
    token = bound_jwt(server, key)
    private = forge.jwk_of(key)
    private["d"] = forge.b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    proof = forge.dpop_proof(key, token=token, header={"jwk": private})
    refused_proof(check, guard_for(server), token, proof, "contains a private key")
    secret = b"s" * 32
    oct_jwk = {"kty": "oct", "k": forge.b64url(secret)}
    hmac_proof = forge.dpop_proof(
        key, token=token, alg="HS256", header={"jwk": oct_jwk}, signing_key=secret
    )
    refused_proof(check, guard_for(server), token, hmac_proof, "algorithm is not allowed")


def test_weak_key_refused(server: AuthServer, check: Driver, keys: dict[str, Any]) -> None:
    """RFC 8725 §3.5 applies to proofs too: a 1024-bit RSA key never verifies, even when
    the token is bound to it."""
    weak = keys["rsa1024"]
    token = bound_jwt(server, weak)
    refused_proof(check, guard_for(server), token, forge.dpop_proof(weak, token=token), "usable")


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("two-values", "exactly one DPoP header"),
        ("joined", "exactly one DPoP header"),
        ("oversized", "too large"),
        ("empty", "not a compact JWS"),
        ("not-jws", "not a compact JWS"),
        ("unsigned", "not a compact JWS"),
        ("bad-base64", "malformed"),
        ("header-not-json", "malformed"),
        ("header-duplicate-member", "malformed"),
    ],
)
def test_malformed_dpop_header(
    server: AuthServer, check: Driver, keys: dict[str, Any], shape: str, reason: str
) -> None:
    """RFC 9449 §4.3 checks 1-2: one DPoP header, one well-formed JWT, bounded in size."""
    key = keys["es256"]
    token = bound_jwt(server, key)
    good = forge.dpop_proof(key, token=token)
    value: Any = {
        "two-values": [good, forge.dpop_proof(key, token=token)],
        "joined": f"{good}, {forge.dpop_proof(key, token=token)}",
        "oversized": forge.dpop_proof(key, token=token, claims={"pad": "x" * 9000}),
        "empty": "",
        "not-jws": "not-a-proof",
        "unsigned": good.rpartition(".")[0] + ".",
        "bad-base64": "eyJ!" + good[4:],
        "header-not-json": forge.segment(b"{not json") + good[good.index(".") :],
        "header-duplicate-member": forge.segment(b'{"typ":"dpop+jwt","alg":"ES256","alg":"none"}')
        + good[good.index(".") :],
    }[shape]
    refused_proof(check, guard_for(server), token, value, reason)


# -- scheme rules (RFC 9449 §7.1-7.2) -------------------------------------------------------


def test_bound_token_downgraded_to_bearer(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """RFC 9449 §7.2: "MUST reject a DPoP-bound access token received as a bearer token",
    with or without a DPoP header, and when the caller passes no request context at all.
    Refused before any key is fetched."""
    key = keys["es256"]
    guard = guard_for(server)
    token = bound_jwt(server, key)
    proof = forge.dpop_proof(key, token=token)
    error = rejected(with_proof(check, proof, scheme="Bearer"), guard, token, InvalidTokenBinding)
    assert "DPoP scheme" in error.description
    assert error.www_authenticate().startswith('Bearer error="invalid_token"')
    rejected(with_proof(check, None, scheme="bearer"), guard, token, InvalidTokenBinding)
    rejected(check, guard, token, InvalidTokenBinding)  # validate(token): no context
    assert server.request_count("jwks") == 0


def test_bound_token_without_a_proof(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """RFC 9449 §7.1: the DPoP scheme needs a DPoP proof."""
    token = bound_jwt(server, keys["es256"])
    refused_proof(check, guard_for(server), token, None, "required", scheme="DPoP")


def test_unbound_token_with_the_dpop_scheme(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """A client presenting a bearer token under the DPoP scheme believes it proves
    possession: refused, nothing is bound. The same token as Bearer passes, a stray
    DPoP header ignored (RFC 6750 semantics under the default policy)."""
    key = keys["es256"]
    guard = guard_for(server)
    token = server.issue_jwt(scopes=["orders:read"])
    proof = forge.dpop_proof(key, token=token)
    error = rejected(with_proof(check, proof), guard, token, InvalidTokenBinding)
    assert "not DPoP-bound" in error.description
    accepted(with_proof(check, "garbage", scheme="Bearer"), guard, token)
    accepted(with_proof(check, None), guard, token)


def test_policy_requiring_dpop(server: AuthServer, check: Driver, keys: dict[str, Any]) -> None:
    """Policy(dpop="required"): bearer tokens are refused, challenges offer DPoP only."""
    key = keys["es256"]
    guard = guard_for(server, dpop="required", dpop_algorithms=["ES256", "EdDSA"])
    bearer = server.issue_jwt(scopes=["orders:read"])
    error = rejected(with_proof(check, None), guard, bearer, InvalidTokenBinding)
    assert error.www_authenticate(realm="api") == (
        'DPoP realm="api", error="invalid_token", '
        'error_description="This resource requires DPoP-bound access tokens", algs="ES256 EdDSA"'
    )
    rejected(check, guard, bearer, InvalidTokenBinding)
    token = bound_jwt(server, key)
    accepted(with_proof(check, forge.dpop_proof(key, token=token)), guard, token)
    # Only the listed algorithms.
    ps = keys["ps256"]
    token = bound_jwt(server, ps)
    refused_proof(check, guard, token, forge.dpop_proof(ps, token=token), "not allowed")


def test_policy_disabling_dpop(server: AuthServer, check: Driver, keys: dict[str, Any]) -> None:
    """Policy(dpop="disabled"): a resource server that does not do DPoP refuses bound
    tokens (as tokenguard did before) and challenges with Bearer only."""
    key = keys["es256"]
    guard = guard_for(server, dpop="disabled")
    token = bound_jwt(server, key)
    error = rejected(
        with_proof(check, forge.dpop_proof(key, token=token)), guard, token, UnsupportedToken
    )
    assert error.www_authenticate().startswith("Bearer error=")
    assert "algs=" not in error.www_authenticate()


def test_unknown_authorization_scheme(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    token = bound_jwt(server, keys["es256"])
    rejected(with_proof(check, None, scheme="Basic"), guard_for(server), token, InvalidRequest)


# -- server nonces (RFC 9449 §9) ------------------------------------------------------------


def test_nonce_missing_stale_or_foreign(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """A policy demanding nonces answers a proof without one (or with one it did not
    issue, or issued too long ago) with 401 use_dpop_nonce and a fresh DPoP-Nonce."""
    key = keys["es256"]
    secret = {"dpop_nonce_secret": "fleet-wide nonce secret, 32 bytes"}
    guard = guard_for(server, dpop_nonce=True, settings=secret)
    token = bound_jwt(server, key)

    def nonce_refused(proof: str) -> str:
        error = rejected(with_proof(check, proof), guard, token, UseDPoPNonce)
        assert isinstance(error, UseDPoPNonce)
        headers = error.headers()
        assert headers["DPoP-Nonce"] == error.nonce
        assert 'DPoP error="use_dpop_nonce"' in headers["WWW-Authenticate"]
        return error.nonce

    nonce = nonce_refused(forge.dpop_proof(key, token=token))
    assert nonce == guard.dpop_nonce()
    accepted(
        with_proof(check, forge.dpop_proof(key, token=token, claims={"nonce": nonce})), guard, token
    )
    nonce_refused(forge.dpop_proof(key, token=token, claims={"nonce": "made-up"}))
    other = guard_for(server, dpop_nonce=True)  # another random nonce key
    nonce_refused(forge.dpop_proof(key, token=token, claims={"nonce": other.dpop_nonce()}))
    # Another process with the same secret issued it: accepted.
    sibling = guard_for(server, dpop_nonce=True, settings=secret)
    fleet_nonce = sibling.dpop_nonce()
    proof = forge.dpop_proof(key, token=token, claims={"nonce": fleet_nonce})
    accepted(with_proof(check, proof), guard, token)
    # Stale: issued ten minutes ago.
    with freeze_time(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)):
        old = guard.dpop_nonce()
    nonce_refused(forge.dpop_proof(key, token=token, claims={"nonce": old}))
    other.close()
    sibling.close()


# -- mutual TLS (RFC 8705 §3) ---------------------------------------------------------------


def test_certificate_bound_tokens(server: AuthServer, check: Driver, keys: dict[str, Any]) -> None:
    """cnf["x5t#S256"] must be the SHA-256 of the request's client certificate, given as
    PEM (text or bytes), DER or a parsed certificate; none, another one, or something that
    is not a certificate is refused. Also for an introspected token."""
    from cryptography.hazmat.primitives.serialization import Encoding

    mine = forge.self_signed_certificate(keys["es256"], "client.example")
    theirs = forge.self_signed_certificate(keys["attacker"], "client.example")
    der = mine.public_bytes(Encoding.DER)
    x5t = forge.b64url(__import__("hashlib").sha256(der).digest())
    guard = guard_for(server)
    jwt_token = server.issue_jwt(scopes=["orders:read"], claims={"cnf": {"x5t#S256": x5t}})
    opaque = server.issue_opaque(scopes=["orders:read"], extra={"cnf": {"x5t#S256": x5t}})
    pem = mine.public_bytes(Encoding.PEM)
    for token in (jwt_token, opaque):
        for form in (pem, pem.decode(), der, mine):
            accepted(functools.partial(check, client_certificate=form), guard, token)
        rejected(check, guard, token, InvalidTokenBinding)
        other = functools.partial(check, client_certificate=theirs.public_bytes(Encoding.PEM))
        error = rejected(other, guard, token, InvalidTokenBinding)
        assert "not the one the token is bound to" in error.description
        junk = functools.partial(check, client_certificate=b"\x30\x03\x02\x01\x01")
        rejected(junk, guard, token, InvalidTokenBinding)
        # A DPoP request context without the certificate does not prove it either.
        rejected(with_proof(check, None), guard, token, InvalidTokenBinding)


@pytest.mark.parametrize(
    ("cnf", "expected"),
    [
        ({"x5t#S256": "not-a-thumbprint"}, InvalidClaims),
        ({"x5t#S256": "A" * 43 + "="}, InvalidClaims),  # padded: not base64url of SHA-256
        ({"x5t#S256": 7}, InvalidClaims),
        ({"x5t": "A" * 27}, UnsupportedToken),  # a SHA-1 thumbprint: not RFC 8705's member
    ],
    ids=["x5t-short", "x5t-padded", "x5t-number", "x5t-sha1"],
)
def test_malformed_certificate_binding(
    server: AuthServer, check: Driver, keys: dict[str, Any], cnf: dict[str, Any], expected: Any
) -> None:
    """A certificate binding tokenguard cannot check is refused, never ignored, with the
    certificate at hand or not, for a JWT (before any key fetch) and an introspected token."""
    from cryptography.hazmat.primitives.serialization import Encoding

    der = forge.self_signed_certificate(keys["es256"]).public_bytes(Encoding.DER)
    guard = guard_for(server)
    jwt_token = server.issue_jwt(scopes=["orders:read"], claims={"cnf": cnf})
    opaque = server.issue_opaque(scopes=["orders:read"], extra={"cnf": cnf})
    for token in (jwt_token, opaque):
        rejected(functools.partial(check, client_certificate=der), guard, token, expected)
        rejected(check, guard, token, expected)
    assert server.request_count("jwks") == 0


def test_token_bound_twice_needs_both(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    key = keys["es256"]
    cert = forge.self_signed_certificate(key)
    der = cert.public_bytes(Encoding.DER)
    x5t = forge.b64url(__import__("hashlib").sha256(der).digest())
    token = server.issue_jwt(
        scopes=["orders:read"], claims={"cnf": {"jkt": jkt(key), "x5t#S256": x5t}}
    )
    guard = guard_for(server)
    proof = forge.dpop_proof(key, token=token)
    rejected(with_proof(check, proof), guard, token, InvalidTokenBinding)
    both = functools.partial(
        check,
        dpop=DPoPProof(forge.dpop_proof(key, token=token), "GET", URL),
        client_certificate=der,
    )
    accepted(both, guard, token)


def test_deprecated_allow_sender_constrained(
    server: AuthServer, check: Driver, keys: dict[str, Any]
) -> None:
    """The old flag keeps its old meaning only for calls that pass no request context
    (the caller checks the binding); a call with a proof is checked all the same."""
    key = keys["es256"]
    with pytest.warns(DeprecationWarning, match="allow_sender_constrained"):
        guard = guard_for(server, allow_sender_constrained=True)
    token = bound_jwt(server, key)
    assert accepted(check, guard, token).cnf == {"jkt": jkt(key)}
    proof = forge.dpop_proof(keys["attacker"], token=token)
    refused_proof(check, guard, token, proof, "not the one the token is bound to")
