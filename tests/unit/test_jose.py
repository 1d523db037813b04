"""jose.py: strict compact-JWS parsing, typ checks and signature verification."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokenguard.core import jose
from tokenguard.core.algorithms import DEFAULT_ALGORITHMS, REGISTRY
from tokenguard.core.jose import (
    JWS,
    b64url_decode,
    check_typ,
    parse_json_object,
    parse_jws,
    verify_signature,
)
from tokenguard.core.jwks import VerificationKey
from tokenguard.errors import InvalidSignature, MalformedToken, UnsupportedToken

from ._support import b64url, make_token, segment

ALLOWED = frozenset(DEFAULT_ALGORITHMS) | {"HS256"}
HEADER = {"alg": "RS256", "typ": "at+jwt", "kid": "k1"}
PAYLOAD = {"iss": "https://as.example", "sub": "alice"}


def parse(token: str, allowed: frozenset[str] = ALLOWED) -> JWS:
    return parse_jws(token, allowed)


# -- b64url_decode ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("", b""),
        ("AA", b"\x00"),
        ("AAA", b"\x00\x00"),
        ("AAAA", b"\x00\x00\x00"),
        ("_-8", b"\xff\xef"),
    ],
)
def test_b64url_decode_canonical(encoded: str, decoded: bytes) -> None:
    assert b64url_decode(encoded) == decoded


@pytest.mark.parametrize("encoded", ["A", "AAAAA", "abcde"])
def test_b64url_decode_length_1_mod_4(encoded: str) -> None:
    with pytest.raises(MalformedToken, match="invalid base64url length"):
        b64url_decode(encoded)


@pytest.mark.parametrize("encoded", ["AB", "AR", "Ah", "Ax", "AAB", "AAF", "AA9", "AA_"])
def test_b64url_decode_non_canonical_last_char(encoded: str) -> None:
    # Same bytes as the canonical spelling, but with non-zero padding bits.
    with pytest.raises(MalformedToken, match="not canonical"):
        b64url_decode(encoded)


@pytest.mark.parametrize("encoded", ["ab+c", "ab/c", "a+/A", "ab=c", "ab c", "ab.c", "abc\n"])
def test_b64url_decode_refuses_non_base64url_chars(encoded: str) -> None:
    # parse_jws may be called without detect(): '+', '/', '=' and others are refused here too.
    with pytest.raises(MalformedToken, match=r"not valid base64url|invalid base64url length"):
        b64url_decode(encoded)


def test_parse_jws_with_extra_dot_is_malformed() -> None:
    h64, p64 = segment(HEADER), segment(PAYLOAD)
    with pytest.raises(MalformedToken):
        parse(f"{h64}.{p64}.c2ln.c2ln")


@pytest.mark.parametrize("length", [2, 3])
def test_every_canonical_last_char_round_trips(length: int) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    accepted = set()
    for ch in alphabet:
        try:
            data = b64url_decode("A" * (length - 1) + ch)
        except MalformedToken:
            continue
        accepted.add(ch)
        assert b64url(data) == "A" * (length - 1) + ch
    assert len(accepted) == (4 if length == 2 else 16)


# -- parse_json_object --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":1,"a":2}', "not valid JSON"),
        (b'{"a":{"b":1,"b":1}}', "not valid JSON"),
        (b'{"a":NaN}', "not valid JSON"),
        (b'{"a":Infinity}', "not valid JSON"),
        (b'{"a":-Infinity}', "not valid JSON"),
        (b'{"a":"\xff"}', "not valid JSON"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # UTF-8 BOM
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not valid JSON"),
        (b'{"a":1' + b"0" * 5000 + b"}", "not valid JSON"),  # int beyond the digit limit
        (b"[]", "not a JSON object"),
        (b'"x"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"1", "not a JSON object"),
    ],
)
def test_parse_json_object_refuses(data: bytes, message: str) -> None:
    with pytest.raises(MalformedToken, match=message) as info:
        parse_json_object(data, "payload")
    assert "payload" in info.value.description


def test_parse_json_object_accepts_whitespace_and_unicode() -> None:
    data = ' \n{"n": "é", "x": [1, 2.5, true, null]} '.encode()
    assert parse_json_object(data, "header") == {"n": "é", "x": [1, 2.5, True, None]}


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 400 + b".5"])
def test_parse_json_object_huge_exponent_is_inf_not_error(number: bytes) -> None:
    # 1e400 is valid JSON; it becomes inf and the claim checks refuse it later.
    assert abs(parse_json_object(b'{"exp":' + number + b"}", "payload")["exp"]) == float("inf")


def test_parse_json_object_keeps_large_integers_exact() -> None:
    big = 10**30 + 1
    assert parse_json_object(b'{"x":%d}' % big, "payload")["x"] == big


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":"\\ud800"}',  # a lone high surrogate
        b'{"a":"\\udc00x"}',  # a lone low surrogate
        b'{"\\ud800":1}',
    ],
)
def test_parse_json_object_refuses_lone_surrogates(data: bytes) -> None:
    # A lone surrogate is no Unicode character: a str holding one cannot be encoded back.
    with pytest.raises(MalformedToken, match="not valid JSON"):
        parse_json_object(data, "payload")


@pytest.mark.parametrize(
    "data",
    [
        b'{"a\\u003a":1,"a\\u003a":2}',  # duplicates spelled with an escaped colon
        b'{"a":"\\u003a","a":"\\u003A"}',
        b'{"x":"\\u003a:","y":{"b":1,"b":2}}',
        b'{"a:":1,"a\\u003a":2}',  # one name, two spellings
    ],
)
def test_duplicates_found_when_colons_are_escaped(data: bytes) -> None:
    with pytest.raises(MalformedToken, match="not valid JSON"):
        parse_json_object(data, "payload")


@pytest.mark.parametrize(
    "data",
    [
        b'{"a\\u003a":1,"b":"x:y"}',
        b'{"url":"https:\\/\\/as.example","n":"\\u00e9:"}',
        b'{"a":{"b":{"c":[{"d":1},{"d":2}]}},"e":":::"}',
    ],
)
def test_colon_count_accepts_what_has_no_duplicates(data: bytes) -> None:
    assert parse_json_object(data, "payload")


# -- parse_jws: structure -------------------------------------------------------------


def test_parse_valid(keys: SimpleNamespace) -> None:
    token = make_token(HEADER, PAYLOAD, key=keys.rsa)
    jws = parse(token)
    h64, p64, s64 = token.split(".")
    assert jws.header == HEADER
    assert jws.claims == PAYLOAD
    assert jws.kid == "k1"
    assert jws.typ == "at+jwt"
    assert jws.algorithm is REGISTRY["RS256"]
    assert jws.signing_input == f"{h64}.{p64}".encode()
    assert b64url(jws.signature) == s64


def test_parse_without_kid_and_typ() -> None:
    jws = parse(make_token({"alg": "ES256"}, PAYLOAD))
    assert jws.kid is None
    assert jws.typ is None


@pytest.mark.parametrize(
    "token",
    [
        make_token(HEADER, PAYLOAD)[:-1] + "B",  # signature length%4 == 3 -> non-canonical
        segment(HEADER) + "B." + segment(PAYLOAD) + ".c2ln",  # header length%4 change
    ],
)
def test_parse_non_canonical_or_bad_length(token: str) -> None:
    with pytest.raises(MalformedToken):
        parse(token)


def test_parse_non_canonical_header() -> None:
    h64 = segment('{"alg":"RS256"} ')  # 16 bytes -> 22 chars, length % 4 == 2
    assert len(h64) % 4 == 2
    assert h64[-1] in "AQgw"
    bad = h64[:-1] + {"A": "B", "Q": "R", "g": "h", "w": "x"}[h64[-1]]
    with pytest.raises(MalformedToken, match="not canonical"):
        parse(f"{bad}.{segment(PAYLOAD)}.c2ln")


def test_parse_non_canonical_payload() -> None:
    p64 = segment({"sub": "a"})  # 11 bytes -> 15 chars, length % 4 == 3
    assert len(p64) % 4 == 3
    bad = p64[:-1] + chr(ord(p64[-1]) + 1)
    with pytest.raises(MalformedToken, match="not canonical"):
        parse(f"{segment(HEADER)}.{bad}.c2ln")


def test_parse_length_1_mod_4_signature() -> None:
    token = make_token(HEADER, PAYLOAD, signature=b"abc")  # 4 chars
    token = token + "A"  # 5 chars
    with pytest.raises(MalformedToken, match="length"):
        parse(token)


@pytest.mark.parametrize(
    ("header", "payload", "error", "message"),
    [
        ('{"alg":"RS256","alg":"none"}', PAYLOAD, MalformedToken, "header is not valid JSON"),
        # The same name spelled with an escape is still a duplicate.
        ('{"alg":"RS256","\\u0061lg":"none"}', PAYLOAD, MalformedToken, "header is not valid"),
        (HEADER, '{"sub":"a","sub":"b"}', MalformedToken, "payload is not valid JSON"),
        ('{"alg":"RS256","x":NaN}', PAYLOAD, MalformedToken, "header is not valid JSON"),
        (HEADER, '{"exp":Infinity}', MalformedToken, "payload is not valid JSON"),
        (b'{"alg":"RS256","x":"\xc3"}', PAYLOAD, MalformedToken, "header is not valid JSON"),
        (HEADER, b'{"sub":"\xff"}', MalformedToken, "payload is not valid JSON"),
        ([{"alg": "RS256"}], PAYLOAD, MalformedToken, "header is not a JSON object"),
        ('"RS256"', PAYLOAD, MalformedToken, "header is not a JSON object"),
        (HEADER, [1], MalformedToken, "payload is not a JSON object"),
        (HEADER, "null", MalformedToken, "payload is not a JSON object"),
        (HEADER, '{"a":' * 5000 + "1" + "}" * 5000, MalformedToken, "payload is not valid JSON"),
        ('{"alg":"RS256","x":' + "[" * 5000 + "]" * 5000 + "}", PAYLOAD, MalformedToken, "header"),
        ({"typ": "at+jwt"}, PAYLOAD, MalformedToken, "no valid alg"),
        ({"alg": None}, PAYLOAD, MalformedToken, "no valid alg"),
        ({"alg": 256}, PAYLOAD, MalformedToken, "no valid alg"),
        ({"alg": ["RS256"]}, PAYLOAD, MalformedToken, "no valid alg"),
        ({"alg": "none"}, PAYLOAD, InvalidSignature, "algorithm is not allowed"),
        ({"alg": "None"}, PAYLOAD, InvalidSignature, "algorithm is not allowed"),
        ({"alg": "rs256"}, PAYLOAD, InvalidSignature, "algorithm is not allowed"),
        ({"alg": "HS512"}, PAYLOAD, InvalidSignature, "algorithm is not allowed"),
        ({"alg": "RSA-OAEP"}, PAYLOAD, InvalidSignature, "algorithm is not allowed"),
        ({"alg": "RS256", "crit": ["exp"]}, PAYLOAD, UnsupportedToken, "critical"),
        ({"alg": "RS256", "crit": []}, PAYLOAD, UnsupportedToken, "critical"),
        ({"alg": "RS256", "b64": True}, PAYLOAD, UnsupportedToken, "Unencoded"),
        ({"alg": "RS256", "b64": False}, PAYLOAD, UnsupportedToken, "Unencoded"),
        ({"alg": "RS256", "cty": "JWT"}, PAYLOAD, UnsupportedToken, "Nested"),
        ({"alg": "RS256", "cty": "jwt"}, PAYLOAD, UnsupportedToken, "Nested"),
        ({"alg": "RS256", "cty": "application/jwt"}, PAYLOAD, UnsupportedToken, "Nested"),
        ({"alg": "RS256", "cty": 1}, PAYLOAD, UnsupportedToken, "Nested"),
        ({"alg": "RS256", "kid": 1}, PAYLOAD, MalformedToken, "invalid kid"),
        ({"alg": "RS256", "kid": ["a"]}, PAYLOAD, MalformedToken, "invalid kid"),
        ({"alg": "RS256", "kid": ""}, PAYLOAD, MalformedToken, "invalid kid"),
        ({"alg": "RS256", "kid": "k" * 257}, PAYLOAD, MalformedToken, "invalid kid"),
        ({"alg": "RS256", "typ": 1}, PAYLOAD, MalformedToken, "invalid typ"),
        ({"alg": "RS256", "typ": ["at+jwt"]}, PAYLOAD, MalformedToken, "invalid typ"),
    ],
)
def test_parse_refuses(header: Any, payload: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        parse(make_token(header, payload))
    assert type(info.value) is error


def test_parse_accepts_other_cty_and_max_kid() -> None:
    jws = parse(make_token({"alg": "RS256", "cty": "application/json", "kid": "k" * 256}, PAYLOAD))
    assert jws.kid == "k" * 256


def test_parse_alg_checked_against_allow_list() -> None:
    token = make_token({"alg": "ES384"}, PAYLOAD)
    assert parse(token, frozenset({"ES384"})).algorithm.name == "ES384"
    with pytest.raises(InvalidSignature, match="not allowed"):
        parse(token, frozenset({"ES256"}))


def test_parse_empty_signature() -> None:
    token = make_token(HEADER, PAYLOAD, signature=b"")
    assert token.endswith(".")
    with pytest.raises(InvalidSignature, match="not signed"):
        parse(token)


def test_header_checked_before_payload() -> None:
    # A bad header is reported even though the payload is not JSON either.
    with pytest.raises(InvalidSignature, match="not allowed"):
        parse(make_token({"alg": "none"}, b"not json"))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "jku": "https://evil.example/jwks"},
        {"alg": "RS256", "x5u": "https://evil.example/cert"},
        {"alg": "RS256", "jwk": {"kty": "oct", "k": "AAAA"}},
        {"alg": "RS256", "x5c": ["AAAA"]},
    ],
)
def test_key_carrying_headers_are_ignored_not_used(header: dict[str, Any]) -> None:
    # Parsed fine (the header is data) but nothing but kid is taken from it.
    jws = parse(make_token(header, PAYLOAD))
    assert jws.kid is None


# -- check_typ ------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
@pytest.mark.parametrize("plain", [True, False])
def test_check_typ_access_token(typ: str, plain: bool) -> None:
    check_typ(typ, accept_plain_jwt=plain)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "application/jwt"])
def test_check_typ_plain(typ: str | None) -> None:
    check_typ(typ, accept_plain_jwt=True)
    with pytest.raises(UnsupportedToken, match="not an access token"):
        check_typ(typ, accept_plain_jwt=False)


@pytest.mark.parametrize(
    "typ", ["", "dpop+jwt", "logout+jwt", "secevent+jwt", "JOSE", "at+jwt ", "application/at+jwt2"]
)
@pytest.mark.parametrize("plain", [True, False])
def test_check_typ_other_types(typ: str, plain: bool) -> None:
    with pytest.raises(UnsupportedToken, match="not an access token"):
        check_typ(typ, accept_plain_jwt=plain)


# -- verify_signature -------------------------------------------------------------------


def vkey(key: Any, kty: str, kid: str | None = None) -> VerificationKey:
    public = key if isinstance(key, bytes) else key.public_key()
    return VerificationKey(kid=kid, kty=kty, algorithms=frozenset(REGISTRY), key=public)


CASES = [
    ("RS256", "rsa", "rsa_other", "RSA"),
    ("RS384", "rsa", "rsa_other", "RSA"),
    ("RS512", "rsa", "rsa_other", "RSA"),
    ("PS256", "rsa", "rsa_other", "RSA"),
    ("PS384", "rsa", "rsa_other", "RSA"),
    ("PS512", "rsa", "rsa_other", "RSA"),
    ("ES256", "p256", "p256_other", "EC"),
    ("ES384", "p384", "p256", "EC"),
    ("EdDSA", "ed25519", "ed25519_other", "OKP"),
]


@pytest.mark.parametrize(("alg", "good", "bad", "kty"), CASES)
def test_verify_right_and_wrong_key(
    keys: SimpleNamespace, alg: str, good: str, bad: str, kty: str
) -> None:
    token = make_token({"alg": alg}, PAYLOAD, key=getattr(keys, good))
    jws = parse(token)
    right = vkey(getattr(keys, good), kty, "right")
    wrong = vkey(getattr(keys, bad), kty, "wrong")
    assert verify_signature(jws, (right,)) is right
    assert verify_signature(jws, (wrong, right)) is right
    with pytest.raises(InvalidSignature):
        verify_signature(jws, (wrong,))
    with pytest.raises(InvalidSignature):
        verify_signature(jws, ())


def test_verify_hs256(keys: SimpleNamespace) -> None:
    token = make_token({"alg": "HS256"}, PAYLOAD, key=keys.hmac)
    jws = parse(token)
    right = vkey(keys.hmac, "oct")
    assert verify_signature(jws, (right,)) is right
    with pytest.raises(InvalidSignature):
        verify_signature(jws, (vkey(b"x" * 32, "oct"),))


@pytest.mark.parametrize(("alg", "good"), [(c[0], c[1]) for c in CASES])
def test_verify_tampered_payload(keys: SimpleNamespace, alg: str, good: str) -> None:
    token = make_token({"alg": alg}, PAYLOAD, key=getattr(keys, good))
    h64, _, s64 = token.split(".")
    forged = f"{h64}.{segment({'iss': 'https://as.example', 'sub': 'mallory'})}.{s64}"
    kty = {"rsa": "RSA", "p256": "EC", "p384": "EC", "ed25519": "OKP"}[good]
    with pytest.raises(InvalidSignature):
        verify_signature(parse(forged), (vkey(getattr(keys, good), kty),))


def test_verify_alg_swapped_header(keys: SimpleNamespace) -> None:
    # RS256-signed input presented as PS256: the PS256 verifier refuses it.
    token = make_token({"alg": "PS256"}, PAYLOAD, key=keys.rsa, alg="RS256")
    with pytest.raises(InvalidSignature):
        verify_signature(parse(token), (vkey(keys.rsa, "RSA"),))


def _ecdsa_token(keys: SimpleNamespace, alg: str, signature: bytes) -> JWS:
    return parse(make_token({"alg": alg}, PAYLOAD, signature=signature))


@pytest.mark.parametrize(
    ("alg", "key", "size"),
    [("ES256", "p256", 32), ("ES384", "p384", 48)],
)
def test_verify_ecdsa_bad_shapes(keys: SimpleNamespace, alg: str, key: str, size: int) -> None:
    good = make_token({"alg": alg}, PAYLOAD, key=getattr(keys, key))
    jws = parse(good)
    signature = jws.signature
    assert len(signature) == 2 * size
    k = vkey(getattr(keys, key), "EC")
    h64, p64, _ = good.split(".")

    def variant(sig: bytes) -> JWS:
        return parse(f"{h64}.{p64}.{b64url(sig)}")

    zero = b"\x00" * size
    for sig in (
        signature[:-1],  # one byte short
        signature + b"\x00",  # one byte long
        signature[: size - 1] + signature[size:],
        zero + signature[size:],  # r = 0
        signature[:size] + zero,  # s = 0
        zero + zero,
        b"\xff" * (2 * size),  # r, s >= n
        b"\x01",
    ):
        with pytest.raises(InvalidSignature):
            verify_signature(variant(sig), (k,))
    assert verify_signature(jws, (k,)) is k


def test_verify_der_encoded_ecdsa_refused(keys: SimpleNamespace) -> None:
    # JWS ECDSA signatures are raw r||s (RFC 7518 §3.4); a DER signature is refused.
    from cryptography.hazmat.primitives import hashes

    h64, p64 = segment({"alg": "ES256"}), segment(PAYLOAD)
    der = keys.p256.sign(f"{h64}.{p64}".encode(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        verify_signature(parse(f"{h64}.{p64}.{b64url(der)}"), (vkey(keys.p256, "EC"),))


def test_verify_skips_key_of_impossible_shape(keys: SimpleNamespace) -> None:
    # A verifier that raises (TypeError/ValueError) for one key moves on to the next.
    jws = parse(make_token({"alg": "HS256"}, PAYLOAD, key=keys.hmac))
    odd = VerificationKey(kid=None, kty="oct", algorithms=frozenset({"HS256"}), key="str key")
    right = vkey(keys.hmac, "oct")
    assert verify_signature(jws, (odd, right)) is right
    with pytest.raises(InvalidSignature):
        verify_signature(jws, (odd,))


def test_verify_eddsa_wrong_length(keys: SimpleNamespace) -> None:
    jws = parse(make_token({"alg": "EdDSA"}, PAYLOAD, signature=b"\x00" * 63))
    with pytest.raises(InvalidSignature):
        verify_signature(jws, (vkey(keys.ed25519, "OKP"),))


def test_invalid_signature_default_description() -> None:
    with pytest.raises(InvalidSignature) as info:
        verify_signature(parse(make_token({"alg": "RS256"}, PAYLOAD)), ())
    assert info.value.description == "The access token signature is invalid"
    assert info.value.status_code == 401


def test_types_are_exercised(keys: SimpleNamespace) -> None:
    # Sanity for the fixtures: the key types are what the cases claim.
    assert isinstance(keys.rsa, rsa.RSAPrivateKey)
    assert keys.rsa.key_size == 2048
    assert isinstance(keys.p384.curve, ec.SECP384R1)
    assert isinstance(keys.ed25519, ed25519.Ed25519PrivateKey)
    assert json.loads(b64url_decode(segment(HEADER))) == HEADER


# -- the memo of verified headers -------------------------------------------------------


@pytest.fixture
def headers(monkeypatch: pytest.MonkeyPatch) -> dict[bytes, Any]:
    """The memo of verified headers, empty for the test (and restored after it)."""
    memo: dict[bytes, Any] = {}
    monkeypatch.setattr(jose, "_HEADERS", memo)
    return memo


def test_header_remembered_only_once_a_trusted_key_verified_it(
    keys: SimpleNamespace, headers: dict[bytes, Any]
) -> None:
    token = make_token(HEADER, PAYLOAD, key=keys.rsa)
    forged = make_token(HEADER, {"sub": "mallory"}, key=keys.rsa_other)
    with pytest.raises(InvalidSignature):
        verify_signature(parse(forged), (vkey(keys.rsa, "RSA"),))
    with pytest.raises(InvalidSignature):
        verify_signature(parse(token), (vkey(keys.rsa_other, "RSA"),))
    with pytest.raises(InvalidSignature):
        verify_signature(parse(token), ())
    assert headers == {}  # nothing kept of a token that did not verify
    fresh = parse(token)
    verify_signature(fresh, (vkey(keys.rsa, "RSA"),))
    assert len(headers) == 1
    again = parse(token)  # from the memo now: the same parse as a fresh one
    assert again == fresh
    assert (again.algorithm.name, again.kid, again.typ) == ("RS256", "k1", "at+jwt")


def test_remembered_header_still_answers_to_the_allow_list(
    keys: SimpleNamespace, headers: dict[bytes, Any]
) -> None:
    token = make_token(HEADER, PAYLOAD, key=keys.rsa)
    verify_signature(parse(token), (vkey(keys.rsa, "RSA"),))
    assert headers
    with pytest.raises(InvalidSignature, match="not allowed"):
        parse(token, frozenset({"ES256"}))


def test_remembered_header_does_not_excuse_the_rest_of_the_token(
    keys: SimpleNamespace, headers: dict[bytes, Any]
) -> None:
    token = make_token(HEADER, PAYLOAD, key=keys.rsa)
    verify_signature(parse(token), (vkey(keys.rsa, "RSA"),))
    h64, p64, s64 = token.split(".")
    duplicate = segment(b'{"a":1,"a":2}')
    with pytest.raises(MalformedToken):
        parse(f"{h64}.{duplicate}.{s64}")
    with pytest.raises(MalformedToken):
        parse(f"{h64}.{p64}.{s64}AAA")  # a signature of an invalid length (1 mod 4)
    with pytest.raises(InvalidSignature, match="not signed"):
        parse(f"{h64}.{p64}.")
    with pytest.raises(InvalidSignature):
        verify_signature(parse(f"{h64}.{segment({'sub': 'x'})}.{s64}"), (vkey(keys.rsa, "RSA"),))


def test_header_memo_is_bounded(
    keys: SimpleNamespace, headers: dict[bytes, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jose, "_HEADERS_MAX", 4)
    right = (vkey(keys.hmac, "oct"),)
    for n in range(10):
        header = {"alg": "HS256", "kid": f"k{n}"}
        verify_signature(parse(make_token(header, PAYLOAD, key=keys.hmac)), right)
        assert len(headers) <= 4
    long = {"alg": "HS256", "kid": "k" * 256, "x": "y" * 1000}  # a segment over the bound
    headers.clear()
    verify_signature(parse(make_token(long, PAYLOAD, key=keys.hmac)), right)
    assert headers == {}
