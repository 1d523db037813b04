"""Encoding attacks: base64url variants, duplicate JSON members, deep nesting, huge tokens,
other character encodings, JWE and nested JWTs, odd segment counts, and signatures over a
different encoding of the same header.

Most tokens are validly signed by an insider key the guard trusts, so a refusal can only
come from the encoding. Each token is validated under two policies of one guard: ``jwt``
(local verification only) and ``hybrid`` (opaque-looking strings are introspected). A
string that does not look like a JOSE object at all is routed as an opaque token: refused
as such under ``jwt`` and answered "inactive" by the authorization server under ``hybrid``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tokenguard import (
    InactiveToken,
    InvalidClaims,
    InvalidSignature,
    MalformedToken,
    MissingToken,
    Policy,
    TokenGuard,
    TokenInfo,
    UnsupportedToken,
)
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for
from . import forge
from .conftest import Insider
from .support import accepted, outcome, rejected

OPAQUE = "opaque"  # routed as an opaque token: UnsupportedToken (jwt), InactiveToken (hybrid)


def _build(server: AuthServer, insider: Insider, settings: dict[str, Any]) -> TokenGuard:
    return guard_for(
        server,
        Policy(name="jwt", audience=AUDIENCE, mode="jwt"),
        Policy(name="hybrid", audience=AUDIENCE, mode="hybrid", inactive_cache_ttl=0),
        settings=settings or None,
        issuer={"static_jwks": insider.jwks, "jwks_uri": server.jwks_uri},
    )


class Kit:
    """What a case builder needs: the server, the insider signer and a valid payload."""

    def __init__(self, server: AuthServer, insider: Insider) -> None:
        self.server = server
        self.insider = insider
        # "???>>>" makes base64url "-" and "_" appear in the payload and header segments.
        self.claims = forge.claims_for(server.issuer, AUDIENCE, note="???>>>???>>>")
        self.header = insider.header(note="???>>>")

    def sign(self, header: Any = None, payload: Any = None) -> str:
        return self.insider.sign(
            self.header if header is None else header, self.claims if payload is None else payload
        )

    @property
    def token(self) -> str:
        return self.sign()


def _pad_to(value: dict[str, Any], rem: int) -> dict[str, Any]:
    """``value`` with a filler member so that its base64url segment length % 4 == rem."""
    for n in range(8):
        padded = {**value, "fill": "x" * n}
        if len(forge.segment(padded)) % 4 == rem:
            return padded
    raise AssertionError("unreachable")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _non_canonical(segment: str) -> str:
    """The same bytes with non-zero padding bits in the last character (RFC 4648 §3.5)."""
    assert len(segment) % 4 in (2, 3)
    return segment[:-1] + _ALPHABET[_ALPHABET.index(segment[-1]) + 1]


def _replace(token: str, index: int, new: Callable[[str], str]) -> str:
    parts = token.split(".")
    parts[index] = new(parts[index])
    return ".".join(parts)


def _len_1_mod_4(segment: str) -> str:
    """A segment of impossible length (RFC 4648: 1 character cannot encode a byte)."""
    return segment + "A" * ((1 - len(segment)) % 4 or 4)


def _std_alphabet(segment: str) -> str:
    assert "-" in segment or "_" in segment, segment
    return segment.replace("-", "+").replace("_", "/")


def _dup(first: bytes, name: bytes, value: bytes) -> bytes:
    """JSON object text ``first`` with a second ``name`` member appended."""
    return first[:-1] + b',"' + name + b'":' + value + b"}"


def _noncanonical_case(index: int) -> Callable[[Kit], str]:
    def build(kit: Kit) -> str:
        header = _pad_to(kit.header, 2) if index == 0 else kit.header
        claims = _pad_to(kit.claims, 3) if index == 1 else kit.claims
        return _replace(kit.sign(header, claims), index, _non_canonical)

    return build


def _utf(encoding: str, part: str) -> Callable[[Kit], str]:
    def build(kit: Kit) -> str:
        header, payload = forge.raw_json(kit.header), forge.raw_json(kit.claims)
        if part == "header":
            header = header.decode().encode(encoding)
        else:
            payload = payload.decode().encode(encoding)
        return kit.sign(header, payload)

    return build


def _bom(part: str) -> Callable[[Kit], str]:
    def build(kit: Kit) -> str:
        header, payload = forge.raw_json(kit.header), forge.raw_json(kit.claims)
        if part == "header":
            header = b"\xef\xbb\xbf" + header
        else:
            payload = b"\xef\xbb\xbf" + payload
        return kit.sign(header, payload)

    return build


def _deep(part: str, shape: str) -> Callable[[Kit], str]:
    """10,000 unclosed "[" (bare) or 5,000 balanced levels inside a member: both far past
    any recursion limit, both within the 16 KiB token limit."""

    def build(kit: Kit) -> str:
        if shape == "bare":
            text = b"[" * 10_000
            return kit.sign(text, None) if part == "header" else kit.sign(None, text)
        nested = b"[" * 5_000 + b"]" * 5_000
        if part == "header":
            return kit.sign(b'{"alg":"RS256","x":' + nested + b"}", None)
        return kit.sign(None, _dup(forge.raw_json(kit.claims), b"x", nested))

    return build


def _jwe(header: dict[str, Any], *, empty_key: bool = False) -> Callable[[Kit], str]:
    def build(kit: Kit) -> str:
        key = "" if empty_key else forge.b64url(b"k" * 256)
        return ".".join(
            [
                forge.segment(header),
                key,
                forge.b64url(b"i" * 12),
                forge.b64url(b"c" * 64),
                forge.b64url(b"t" * 16),
            ]
        )

    return build


def _reencode_header(style: str) -> Callable[[Kit], str]:
    def build(kit: Kit) -> str:
        token = kit.token
        header = dict(kit.header)
        text = {
            "spaces": json.dumps(header, indent=1).encode(),
            "reordered": forge.raw_json(dict(reversed(list(header.items())))),
            "escaped": forge.raw_json(header).replace(b'"alg"', b'"\\u0061lg"'),
            "ascii-escaped": json.dumps(header, ensure_ascii=True, separators=(",", ":"))
            .replace('"at+jwt"', '"at\\u002bjwt"')
            .encode(),
        }[style]
        return forge.reencode(token, header=text)

    return build


def _reencode_payload(kit: Kit) -> str:
    return forge.reencode(kit.token, payload=forge.raw_json(dict(reversed(kit.claims.items()))))


# name -> (builder, expected under jwt mode, expected under hybrid mode)
M = MalformedToken
CASES: dict[str, tuple[Callable[[Kit], str], Any, Any]] = {
    # base64url form: RFC 7515 §2 and §7.1 (unpadded base64url), RFC 4648 §3.5 (canonical)
    "padding-header": (lambda k: _replace(k.token, 0, lambda s: s + "="), M, M),
    "padding-payload": (lambda k: _replace(k.token, 1, lambda s: s + "=="), M, M),
    "padding-signature": (lambda k: _replace(k.token, 2, lambda s: s + "=="), M, M),
    "std-alphabet-header": (lambda k: _replace(k.token, 0, _std_alphabet), M, M),
    "std-alphabet-payload": (lambda k: _replace(k.token, 1, _std_alphabet), M, M),
    "std-alphabet-signature": (
        lambda k: _replace(_sig_with_dash(k), 2, _std_alphabet),
        M,
        M,
    ),
    "space-before": (lambda k: " " + k.token, M, M),
    "space-after": (lambda k: k.token + " ", M, M),
    "newline-after": (lambda k: k.token + "\n", M, M),
    "crlf-inside-payload": (
        lambda k: _replace(k.token, 1, lambda s: s[:10] + "\r\n" + s[10:]),
        M,
        M,
    ),
    "tab-inside-signature": (lambda k: _replace(k.token, 2, lambda s: s[:5] + "\t" + s[5:]), M, M),
    "space-after-dot": (lambda k: k.token.replace(".", ". ", 1), M, M),
    "nul-after": (lambda k: k.token + "\x00", M, M),
    "nul-inside-payload": (lambda k: _replace(k.token, 1, lambda s: s[:4] + "\x00" + s[4:]), M, M),
    "non-ascii-letter": (lambda k: _replace(k.token, 1, lambda s: s[:4] + "é" + s[4:]), M, M),
    "fullwidth-dot": (lambda k: k.token.replace(".", "\uff0e", 1), M, M),
    "non-canonical-header": (_noncanonical_case(0), M, M),
    "non-canonical-payload": (_noncanonical_case(1), M, M),
    "non-canonical-signature": (_noncanonical_case(2), M, M),
    "length-1-mod-4-signature": (lambda k: _replace(k.token, 2, _len_1_mod_4), M, M),
    # duplicate members: RFC 7515 §5.2 step 4 / RFC 7519 §4 (reject or take the last),
    # RFC 8725 §2.6 (one token, several readings)
    "dup-header-alg-none-first": (
        lambda k: k.sign(
            _dup(b'{"alg":"none"}', b"alg", b'"RS256"')[:-1]
            + b',"typ":"at+jwt","kid":"insider-rsa"}',
            None,
        ),
        M,
        M,
    ),
    "dup-header-alg-none-last": (
        lambda k: k.sign(_dup(forge.raw_json(k.header), b"alg", b'"none"'), None),
        M,
        M,
    ),
    "dup-header-kid": (
        lambda k: k.sign(_dup(forge.raw_json(k.header), b"kid", b'"other"'), None),
        M,
        M,
    ),
    "dup-header-typ": (
        lambda k: k.sign(
            _dup(forge.raw_json({**k.header, "typ": "JWT"}), b"typ", b'"at+jwt"'), None
        ),
        M,
        M,
    ),
    "dup-header-escaped-name": (
        lambda k: k.sign(_dup(forge.raw_json(k.header), b"\\u0061lg", b'"none"'), None),
        M,
        M,
    ),
    "dup-payload-iss-evil-last": (
        lambda k: k.sign(None, _dup(forge.raw_json(k.claims), b"iss", b'"https://evil.example"')),
        M,
        M,
    ),
    "dup-payload-iss-good-last": (
        lambda k: k.sign(
            None,
            _dup(
                forge.raw_json({**k.claims, "iss": "https://evil.example"}),
                b"iss",
                json.dumps(k.server.issuer).encode(),
            ),
        ),
        M,
        M,
    ),
    "dup-payload-aud": (
        lambda k: k.sign(None, _dup(forge.raw_json(k.claims), b"aud", b'"urn:other"')),
        M,
        M,
    ),
    "dup-payload-exp": (lambda k: k.sign(None, _dup(forge.raw_json(k.claims), b"exp", b"1")), M, M),
    "dup-payload-scope": (
        lambda k: k.sign(None, _dup(forge.raw_json(k.claims), b"scope", b'"orders:admin"')),
        M,
        M,
    ),
    "dup-payload-escaped-name": (
        lambda k: k.sign(
            None, _dup(forge.raw_json(k.claims), b"\\u0069ss", b'"https://evil.example"')
        ),
        M,
        M,
    ),
    # nesting: RFC 8259 §9 (implementations may limit depth), RFC 8725 §3.4
    "deep-bare-header": (_deep("header", "bare"), OPAQUE, OPAQUE),
    "deep-header-member": (_deep("header", "member"), M, M),
    "deep-bare-payload": (_deep("payload", "bare"), M, M),
    "deep-payload-member": (_deep("payload", "member"), M, M),
    # character encoding: RFC 7515 §5.1/§7.1 and RFC 8259 §8.1 (UTF-8, no BOM), RFC 8725 §3.7
    "payload-invalid-utf8": (
        lambda k: k.sign(None, forge.raw_json(k.claims)[:-1] + b',"x":"\xff"}'),
        M,
        M,
    ),
    "payload-overlong-utf8": (
        lambda k: k.sign(None, forge.raw_json(k.claims)[:-1] + b',"x":"\xc0\xaf"}'),
        M,
        M,
    ),
    "payload-utf8-surrogate": (
        lambda k: k.sign(None, forge.raw_json(k.claims)[:-1] + b',"x":"\xed\xa0\x80"}'),
        M,
        M,
    ),
    "payload-latin1": (
        lambda k: k.sign(
            None,
            forge.raw_json({**k.claims, "x": "\u00e9"}).decode("unicode_escape").encode("latin-1"),
        ),
        M,
        M,
    ),
    "payload-utf16le": (_utf("utf-16-le", "payload"), M, M),
    "payload-utf16-bom": (_utf("utf-16", "payload"), M, M),
    "payload-utf16be": (_utf("utf-16-be", "payload"), M, M),
    "payload-utf32": (_utf("utf-32", "payload"), M, M),
    "payload-utf8-bom": (_bom("payload"), M, M),
    "header-utf16le": (_utf("utf-16-le", "header"), M, M),
    "header-utf16-bom": (_utf("utf-16", "header"), OPAQUE, OPAQUE),
    "header-utf8-bom": (_bom("header"), OPAQUE, OPAQUE),
    # not a JWS: RFC 7516 §9 (telling JWS from JWE), RFC 8725 §2.8; CVE-2023-51774 (json-jwt)
    "jwe-rsa-oaep": (
        _jwe({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "insider-rsa"}),
        UnsupportedToken,
        InactiveToken,
    ),
    "jwe-dir-empty-key": (
        _jwe({"alg": "dir", "enc": "A128CBC-HS256"}, empty_key=True),
        UnsupportedToken,
        InactiveToken,
    ),
    "jwe-zip-deflate": (
        _jwe({"alg": "RSA-OAEP", "enc": "A256GCM", "zip": "DEF"}),
        UnsupportedToken,
        InactiveToken,
    ),
    "jwe-header-on-jws": (
        lambda k: k.sign({"alg": "RSA-OAEP", "enc": "A256GCM"}, None),
        InvalidSignature,
        InvalidSignature,
    ),
    "jws-with-two-extra-segments": (
        lambda k: k.token + ".AAAA.AAAA",
        UnsupportedToken,
        InactiveToken,
    ),
    # segment counts: RFC 7515 §7.1 (exactly three segments), §7.2.1
    "3-dots": (lambda k: k.token + ".AAAA", OPAQUE, OPAQUE),
    "3-dots-trailing": (lambda k: k.token + ".", OPAQUE, OPAQUE),
    "1-dot": (lambda k: k.token.rsplit(".", 1)[0], OPAQUE, OPAQUE),
    "empty-header": (lambda k: "." + k.token.split(".", 1)[1], OPAQUE, OPAQUE),
    "empty-payload": (lambda k: _replace(k.token, 1, lambda s: ""), M, M),
    "empty-signature": (
        lambda k: _replace(k.token, 2, lambda s: ""),
        InvalidSignature,
        InvalidSignature,
    ),
    "only-dots-2": (lambda k: "..", OPAQUE, OPAQUE),
    "only-dots-4": (lambda k: "....", OPAQUE, OPAQUE),
    "4-dots-empty-tail": (lambda k: k.token + "..", M, M),
    # header or payload that is JSON but not an object: RFC 7515 §4, RFC 7519 §7.2 step 10
    "header-array": (lambda k: k.sign(b"[]", None), OPAQUE, OPAQUE),
    "header-null": (lambda k: k.sign(b"null", None), OPAQUE, OPAQUE),
    "header-string": (lambda k: k.sign(b'"RS256"', None), OPAQUE, OPAQUE),
    "payload-array": (lambda k: k.sign(None, b"[]"), M, M),
    "payload-null": (lambda k: k.sign(None, b"null"), M, M),
    "payload-number": (lambda k: k.sign(None, b"1"), M, M),
    "payload-string-of-json": (
        lambda k: k.sign(None, json.dumps(json.dumps(k.claims)).encode()),
        M,
        M,
    ),
    "payload-empty-bytes": (lambda k: k.sign(None, b""), M, M),
    "payload-trailing-garbage": (lambda k: k.sign(None, forge.raw_json(k.claims) + b"x"), M, M),
    "payload-two-objects": (lambda k: k.sign(None, forge.raw_json(k.claims) * 2), M, M),
    # the signature covers the exact bytes: RFC 7515 §5.2 step 8, RFC 8725 §2.6
    "header-reencoded-spaces": (_reencode_header("spaces"), InvalidSignature, InvalidSignature),
    "header-reencoded-reordered": (
        _reencode_header("reordered"),
        InvalidSignature,
        InvalidSignature,
    ),
    "header-reencoded-escaped": (_reencode_header("escaped"), InvalidSignature, InvalidSignature),
    "header-reencoded-ascii-escape": (
        _reencode_header("ascii-escaped"),
        InvalidSignature,
        InvalidSignature,
    ),
    "payload-reencoded-reordered": (_reencode_payload, InvalidSignature, InvalidSignature),
}


def _sig_with_dash(kit: Kit) -> str:
    """A valid token whose signature segment contains "-" or "_" (re-signed until so)."""
    for i in range(64):
        token = kit.sign(None, {**kit.claims, "jti": f"jti-{i}"})
        if "-" in token.split(".")[2] or "_" in token.split(".")[2]:
            return token
    raise AssertionError("no signature with - or _")


@pytest.mark.parametrize("case", list(CASES))
def test_encoding_attacks(server: AuthServer, check: Driver, insider: Insider, case: str) -> None:
    """See the comment above each group of ``CASES`` for its source."""
    build, under_jwt, under_hybrid = CASES[case]
    kit = Kit(server, insider)
    guard = _build(server, insider, {})
    accepted(check, guard, kit.token, "jwt")  # control: the unmodified token is valid
    token = build(kit)
    assert token != kit.token
    if under_jwt == OPAQUE:
        under_jwt, under_hybrid = UnsupportedToken, InactiveToken
    rejected(check, guard, token, under_jwt, "jwt")
    before = server.request_count("introspection")
    rejected(check, guard, token, under_hybrid, "hybrid")
    # Only a string routed as opaque (or JWE) reaches the introspection endpoint.
    asked = server.request_count("introspection") - before
    assert asked == (1 if under_hybrid is InactiveToken else 0)


@pytest.mark.parametrize("length", ["max+1", "1 MB", "1 MB (limit raised)"])
def test_very_long_tokens(server: AuthServer, check: Driver, insider: Insider, length: str) -> None:
    """RFC 8725 §3.4 / resource exhaustion: a token over ``max_token_length`` (16 KiB) is
    refused before any parsing or network traffic; with the limit raised to its maximum
    (1 MiB) a 1 MB forged token is still refused quickly."""
    kit = Kit(server, insider)
    h64, p64, s64 = kit.token.split(".")
    settings: dict[str, Any] = {}
    if length == "1 MB (limit raised)":
        settings = {"max_token_length": 1_048_576}
        filler = forge.segment({**kit.claims, "pad": "A" * 750_000})  # ~1,000,400 chars
        token, expected = f"{h64}.{filler}.{s64}", InvalidSignature
    else:
        target = 16_385 if length == "max+1" else 1_000_000
        token = f"{h64}.{p64}{'A' * (target - len(kit.token))}.{s64}"
        assert len(token) == target
        expected = MalformedToken
    guard = _build(server, insider, settings)
    started = time.perf_counter()
    result = outcome(check, guard, token, "hybrid")
    elapsed = time.perf_counter() - started
    assert type(result) is expected, result
    if expected is MalformedToken:  # refused before any work
        assert server.request_count("introspection") == 0
        assert server.request_count("jwks") == 0
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(None, MissingToken, id="None"),
        pytest.param("", MissingToken, id="empty"),
        pytest.param(b"eyJhbGciOiJub25lIn0.e30.", MalformedToken, id="bytes"),
        pytest.param(123, MalformedToken, id="int"),
        pytest.param(["a.b.c"], MalformedToken, id="list"),
        pytest.param(bytearray(b"abc"), MalformedToken, id="bytearray"),
    ],
)
def test_token_of_the_wrong_python_type(
    server: AuthServer, check: Driver, insider: Insider, token: Any, expected: type
) -> None:
    """RFC 6750 §2.1 (a bearer token is a string; none at all is 401 without an error code).
    Frameworks hand over whatever the header parser produced."""
    rejected(check, _build(server, insider, {}), token, expected, "hybrid")


@pytest.mark.parametrize("depth", [31, 40, 600, 990])
def test_deeply_nested_claim_in_a_valid_token(
    server: AuthServer, check: Driver, insider: Insider, depth: int
) -> None:
    """RFC 8259 §9 (a parser may limit nesting; it must then refuse, not crash), RFC 8725
    §3.4. A validly signed token with a claim nested ``depth`` levels: it passes, or it is
    refused with a 401 (malformed or invalid claims), never a RecursionError. (Regression:
    from ~500 levels models.freeze() raised RecursionError; bounded in 0a27c82.)"""
    kit = Kit(server, insider)
    nested = b"[" * depth + b"]" * depth
    token = kit.sign(None, _dup(forge.raw_json(kit.claims), b"x", nested))
    result = outcome(check, _build(server, insider, {}), token, "jwt")
    assert isinstance(result, TokenInfo | MalformedToken | InvalidClaims), result
