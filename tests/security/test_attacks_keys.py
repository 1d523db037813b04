"""Key-selection attacks: headers that carry or point to a key (``jku``, ``x5u``, ``jwk``,
``x5c``), hostile ``kid`` values, another issuer's keys, and key sets reached through a
redirect or an impostor metadata document.

The "attacker" is a second loopback HTTP server serving the attacker's own JWKS; every
test asserts it never received a request.
"""

from __future__ import annotations

import gzip
import time
import zlib
from typing import Any

import httpx
import pytest

from tokenguard import (
    InvalidSignature,
    Issuer,
    MalformedToken,
    Policy,
    TokenGuard,
    UntrustedIssuer,
    ValidationUnavailable,
)
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for
from . import forge
from .conftest import Attacker, Insider, Reply
from .support import accepted, rejected, rejected_unknown_key


def _claims(server: AuthServer, **extra: Any) -> dict[str, Any]:
    return forge.claims_for(server.issuer, AUDIENCE, **extra)


def _serve_attacker_keys(attacker: Attacker, keys: dict[str, Any]) -> dict[str, Any]:
    """The attacker publishes its RSA key (kid "attacker") and returns its JWK."""
    jwk = forge.jwk_of(keys["rsa"], kid="attacker", alg="RS256", use="sig")
    attacker.reply = Reply(body=forge.raw_json({"keys": [jwk]}))
    return jwk


def _key_headers(attacker: Attacker, jwk: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    return {
        "jku": {"jku": attacker.url("/jwks.json")},
        "jku+kid": {"jku": attacker.url("/jwks.json"), "kid": "attacker"},
        "x5u": {"x5u": attacker.url("/cert.pem")},
        "jwk": {"jwk": jwk},
        "jwk+kid": {"jwk": jwk, "kid": "attacker"},
        "x5c": {"x5c": forge.self_signed_x5c(keys["rsa"])},
        "x5c+x5t": {"x5c": forge.self_signed_x5c(keys["rsa"]), "x5t#S256": "AAAA"},
        "all-at-once": {
            "jku": attacker.url("/jwks.json"),
            "x5u": attacker.url("/cert.pem"),
            "jwk": jwk,
            "x5c": forge.self_signed_x5c(keys["rsa"]),
        },
    }


_KEY_HEADERS = ["jku", "jku+kid", "x5u", "jwk", "jwk+kid", "x5c", "x5c+x5t", "all-at-once"]


@pytest.mark.parametrize("kid", ["absent", "issuer's"])
@pytest.mark.parametrize("variant", _KEY_HEADERS)
def test_key_carrying_headers_are_never_used(
    server: AuthServer,
    check: Driver,
    attacker: Attacker,
    attacker_keys: dict[str, Any],
    variant: str,
    kid: str,
) -> None:
    """RFC 8725 §3.10 and §2.9 (jku/x5u SSRF), RFC 7515 §4.1.2-§4.1.6; CVE-2018-0114
    (node-jose trusted an embedded ``jwk``). Signed by the attacker's key."""
    jwk = _serve_attacker_keys(attacker, attacker_keys)
    header = {
        "alg": "RS256",
        "typ": "at+jwt",
        **_key_headers(attacker, jwk, attacker_keys)[variant],
    }
    if kid == "issuer's" and "kid" not in header:
        header["kid"] = next(k for k in server.jwks()["keys"] if k["alg"] == "RS256")["kid"]
    token = forge.compact(header, _claims(server), key=attacker_keys["rsa"])
    rejected(check, guard_for(server), token, InvalidSignature)
    assert attacker.hits == 0, attacker.requests


@pytest.mark.parametrize("variant", ["jku", "x5u", "jwk", "x5c"])
def test_key_headers_on_a_genuine_token_are_ignored(
    server: AuthServer,
    check: Driver,
    attacker: Attacker,
    attacker_keys: dict[str, Any],
    variant: str,
) -> None:
    """Control for the test above, RFC 8725 §3.10: the headers are ignored, not fatal. A
    token genuinely signed by the issuer verifies with the issuer's key, and the attacker's
    URL is still never fetched."""
    jwk = _serve_attacker_keys(attacker, attacker_keys)
    header = _key_headers(attacker, jwk, attacker_keys)[variant]
    accepted(check, guard_for(server), server.issue_jwt(header=header))
    assert attacker.hits == 0, attacker.requests


_HOSTILE_KIDS: dict[str, tuple[Any, type]] = {
    "path-traversal": ("../../../../../../dev/null", InvalidSignature),
    "absolute-path": ("/etc/passwd", InvalidSignature),
    "windows-traversal": ("..\\..\\..\\windows\\win.ini", InvalidSignature),
    "file-url": ("file:///dev/null", InvalidSignature),
    "attacker-url": ("http://127.0.0.1:1/jwks.json", InvalidSignature),
    "sql-injection": ("' OR '1'='1' --", InvalidSignature),
    "sql-union": ("x' UNION SELECT 'c2VjcmV0' --", InvalidSignature),
    "ldap-injection": ("*)(kid=*", InvalidSignature),
    "shell": ("$(curl 127.0.0.1:1)|id;`id`", InvalidSignature),
    "crlf": ("kid\r\nX-Injected: 1", InvalidSignature),
    "nul": ("kid\u0000.pem", InvalidSignature),
    "unicode": ("\u202ekid\ufeff\U0001f511", InvalidSignature),
    "256 chars": ("k" * 256, InvalidSignature),
    "257 chars": ("k" * 257, MalformedToken),
    "huge (10k chars)": ("k" * 10_000, MalformedToken),
    "empty": ("", MalformedToken),
    "int": (1, MalformedToken),
    "zero": (0, MalformedToken),
    "bool": (True, MalformedToken),
    "float": (1.5, MalformedToken),
    "list": (["kid"], MalformedToken),
    "object": ({"kid": "x"}, MalformedToken),
    "null": (None, MalformedToken),
}


@pytest.mark.parametrize("case", list(_HOSTILE_KIDS))
def test_hostile_kid_values(
    server: AuthServer, check: Driver, attacker_keys: dict[str, Any], case: str
) -> None:
    """RFC 8725 §3.10 (kid used in a file path or database query), RFC 7515 §4.1.4 (kid is
    a string). Signed by the attacker; kids that are not strings of 1..256 characters are
    refused as malformed before any key lookup."""
    kid, expected = _HOSTILE_KIDS[case]
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    token = forge.compact(header, _claims(server), key=attacker_keys["rsa"])
    guard = guard_for(server, settings={"max_token_length": 32_768})
    rejected(check, guard, token, expected)
    if expected is MalformedToken:
        assert server.request_count("jwks") == 0


def test_null_kid_is_malformed_even_when_validly_signed(
    server: AuthServer, check: Driver, insider: Insider
) -> None:
    """RFC 7515 §4.1.4: ``kid`` is a string. With a validly signed token (insider key) only
    the type error can make it fail. (Regression: kid: null used to read as "no kid";
    fixed in 0a27c82.)"""
    guard = insider.guard(server)
    accepted(check, guard, insider.sign(insider.header(), _claims(server)))  # control
    rejected(check, guard, insider.sign(insider.header(kid=None), _claims(server)), MalformedToken)


def test_unknown_kids_cannot_make_the_guard_hammer_the_jwks(
    server: AuthServer, check: Driver, attacker_keys: dict[str, Any]
) -> None:
    """RFC 8725 §3.10 / resource exhaustion: 30 hostile (unknown) kids cause at most one key
    set fetch plus one refresh inside the cooldown."""
    guard = guard_for(server)
    for i in range(30):
        header = {"alg": "RS256", "typ": "at+jwt", "kid": f"' OR 1=1 -- {i}"}
        token = forge.compact(header, _claims(server), key=attacker_keys["rsa"])
        rejected_unknown_key(check, guard, token)  # 401, or 503 + Retry-After (fresh token)
    # One fetch, one refresh per cooldown, early refreshes >= 1 s apart (doubling).
    assert server.request_count("jwks") <= 3


def test_kid_of_another_issuers_key(
    server: AuthServer, other_server: AuthServer, check: Driver
) -> None:
    """RFC 8725 §3.8 and §2.7 (substitution), RFC 9068 §4 (the signature is checked with
    the keys of the issuer named in ``iss``): a token signed by issuer B's key, with B's
    kid and claiming ``iss`` A, is refused by a guard trusting A, and by one trusting both
    A and B (keys never cross issuers)."""
    forged = [
        other_server.issue_jwt(claims={"iss": server.issuer}),
        other_server.issue_jwt(alg="ES256", claims={"iss": server.issuer}),
        other_server.issue_jwt(claims={"iss": server.issuer}, header={"kid": None}),
    ]
    only_a = guard_for(server)
    both = TokenGuard(
        issuers=[
            Issuer(server.issuer, allow_insecure_http=True),
            Issuer(other_server.issuer, allow_insecure_http=True),
        ],
        policies=[Policy(name="api", audience=AUDIENCE)],
    )
    for token in forged:
        rejected_unknown_key(check, only_a, token)
        rejected_unknown_key(check, both, token)
    accepted(check, both, other_server.issue_jwt())  # control: B's own tokens pass
    accepted(check, both, server.issue_jwt())


def test_issuer_trusted_only_by_another_policy(
    server: AuthServer, other_server: AuthServer, check: Driver
) -> None:
    """RFC 9068 §4 / RFC 8725 §3.8: ``iss`` selects among the issuers *this* policy trusts;
    a genuine token of an issuer the guard knows for another policy is refused."""
    guard = TokenGuard(
        issuers=[
            Issuer(server.issuer, allow_insecure_http=True),
            Issuer(other_server.issuer, allow_insecure_http=True),
        ],
        policies=[
            Policy(name="a-only", audience=AUDIENCE, issuers=[server.issuer]),
            Policy(name="b-only", audience=AUDIENCE, issuers=[other_server.issuer]),
        ],
    )
    token = other_server.issue_jwt()
    accepted(check, guard, token, "b-only")
    rejected(check, guard, token, UntrustedIssuer, "a-only")
    rejected(check, guard, server.issue_jwt(), UntrustedIssuer, "b-only")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", ["jwks", "metadata"])
@pytest.mark.parametrize("client", ["own", "caller-follows-redirects"])
def test_key_set_redirect_to_the_attacker(
    server: AuthServer,
    check: Driver,
    attacker: Attacker,
    attacker_keys: dict[str, Any],
    status: int,
    endpoint: str,
    client: str,
) -> None:
    """RFC 8725 §2.9 (SSRF), RFC 8414 §3.3: a redirect from the JWKS or metadata endpoint is
    never followed, not even through a caller's httpx client configured to follow
    redirects; the token signed by the attacker's key is refused with 503 (no keys)."""
    jwk = _serve_attacker_keys(attacker, attacker_keys)
    target = attacker.url("/jwks.json" if endpoint == "jwks" else "/.well-known/x")
    server.set_failure(endpoint, status, "", headers={"Location": target})
    server.set_failure("openid_configuration", status, "", headers={"Location": target})
    clients: dict[str, Any] = {}
    if client != "own":
        clients = {
            "http_client": httpx.Client(follow_redirects=True),
            "async_http_client": httpx.AsyncClient(follow_redirects=True),
        }
    guard = TokenGuard(
        issuers=[Issuer(server.issuer, allow_insecure_http=True)],
        policies=[Policy(name="api", audience=AUDIENCE)],
        **clients,
    )
    header = {"alg": "RS256", "typ": "at+jwt", "kid": jwk["kid"]}
    token = forge.compact(header, _claims(server), key=attacker_keys["rsa"])
    try:
        rejected(check, guard, token, ValidationUnavailable)
    finally:
        if clients:
            clients["http_client"].close()
            if check.loop is not None:
                check.loop.run_until_complete(clients["async_http_client"].aclose())
    assert attacker.hits == 0, attacker.requests


def test_impostor_metadata_pointing_at_the_attackers_keys(
    server: AuthServer, check: Driver, attacker: Attacker, attacker_keys: dict[str, Any]
) -> None:
    """RFC 8414 §3.3 (the metadata ``issuer`` must equal the issuer), OpenID Connect
    Discovery §4.3: a metadata document naming another issuer is not used, so its
    ``jwks_uri`` (the attacker's) is never fetched."""
    jwk = _serve_attacker_keys(attacker, attacker_keys)
    impostor = {"issuer": "https://evil.example", "jwks_uri": attacker.url("/jwks.json")}
    server.set_failure("metadata", 200, impostor)
    server.set_failure("openid_configuration", 200, impostor)
    header = {"alg": "RS256", "typ": "at+jwt", "kid": jwk["kid"]}
    token = forge.compact(header, _claims(server), key=attacker_keys["rsa"])
    rejected(check, guard_for(server), token, ValidationUnavailable)
    assert attacker.hits == 0, attacker.requests


@pytest.mark.parametrize("kid", ["attacker", "absent"])
def test_token_signed_by_an_unknown_key(
    server: AuthServer, check: Driver, attacker_keys: dict[str, Any], kid: str
) -> None:
    """RFC 7515 §5.2 (baseline): a well-formed token signed by a key the issuer never
    published, with or without a kid, for each key type."""
    guard = guard_for(server)
    for alg, key in (("RS256", "rsa"), ("PS256", "rsa"), ("ES256", "ec")):
        header = {"alg": alg, "typ": "at+jwt"} | ({"kid": kid} if kid != "absent" else {})
        token = forge.compact(header, _claims(server), key=attacker_keys[key])
        if kid == "absent":
            rejected(check, guard, token, InvalidSignature)
        else:
            rejected_unknown_key(check, guard, token)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_key_set_decompression_bomb(server: AuthServer, check: Driver, encoding: str) -> None:
    """Resource exhaustion (docs/concepts.md Transport: a compressed answer is decoded with
    its output bounded by the 512 KiB JWKS cap): a ~100 KiB body that inflates to 64 MiB
    gives no keys (503), quickly."""
    document = forge.raw_json({"keys": server.jwks()["keys"], "pad": " " * 64 * 1_048_576})
    body = gzip.compress(document) if encoding == "gzip" else zlib.compress(document)
    server.set_failure(
        "jwks", 200, body, content_type="application/json", headers={"Content-Encoding": encoding}
    )
    started = time.perf_counter()
    rejected(check, guard_for(server), server.issue_jwt(), ValidationUnavailable)
    assert time.perf_counter() - started < 2.0
