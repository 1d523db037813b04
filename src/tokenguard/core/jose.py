"""Compact JWS parsing (RFC 7515 §7.1) and signature verification. No I/O.

Parsing is strict: base64url without padding and in canonical form, UTF-8 JSON
objects without duplicate member names, non-finite or out-of-range numbers, lone
surrogates, or more than :data:`MAX_JSON_DEPTH` levels of nesting. The JOSE header only
names an algorithm and, optionally, a ``kid``; key-carrying headers (``jku``, ``x5u``,
``jwk``, ``x5c``) are never used to find a key (RFC 8725 §3.10).

How the strictness stays cheap: the JSON is parsed by msgspec (RFC 8259 in C: UTF-8
only, no NaN/Infinity, numbers in range, surrogates paired), and the two rules it does
not enforce are checked around it. Nesting is bounded by tokenguard itself, before
parsing, so the outcome never depends on an interpreter's recursion limit. A duplicate
member is found by counting: every member of a JSON object has exactly one ``:`` outside
strings, and msgspec re-encodes the parsed value with every string's colons written
literally, so the text and its re-encoding hold the same number of ``:`` unless a
member was dropped as a duplicate. (A colon written as the escape ``\\u003a`` would
break that count: text with such an escape is checked member by member instead.)

Nothing parsed here outlives the call unless the caller keeps it: no interning and no
memo is fed from a token before its signature is verified (docs/security.md, rule 1).
The one memo here holds the JOSE headers of tokens whose signature verified with a
trusted key (:func:`verify_signature`): the header of an issuer's tokens is the same
from token to token, so a first-seen token from a known issuer skips decoding and
checking it again. A request only ever reads the memo.
"""

from __future__ import annotations

import binascii
import json
import re
from binascii import a2b_base64
from typing import Any, NamedTuple

import msgspec

from ..errors import InvalidSignature, MalformedToken, UnsupportedToken
from .algorithms import REGISTRY, JWSAlgorithm

__all__ = [
    "JWS",
    "MAX_JSON_DEPTH",
    "b64url_decode",
    "parse_json_object",
    "parse_jws",
    "strict_json",
]

#: How deeply JSON may nest, counting the outermost object or array: a token's claims
#: object and 32 levels inside it (``models.MAX_DEPTH``). Deeper text is malformed,
#: whatever the interpreter's recursion limit (RFC 8259 §9 lets a parser set one).
MAX_JSON_DEPTH = 33

_MAX_KID_LENGTH = 256
# The last character of a base64url string carries 4 (length % 4 == 2) or 2
# (length % 4 == 3) bits of data followed by zero bits; anything else is a second
# spelling of the same bytes, which we refuse so one token has one encoding.
# Indexed by length % 4 (1 never occurs: refused before).
_CANONICAL_LAST: tuple[frozenset[int], ...] = (
    frozenset(),
    frozenset(),
    frozenset(b"AQgw"),
    frozenset(b"AEIMQUYcgkosw048"),
)
# "-_" become "+/"; "+", "/" and "=" in the input become "!", which strict decoding
# refuses (so does any other character outside the alphabet).
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")
_TYP_AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
_TYP_PLAIN = frozenset({"jwt", "application/jwt"})

# float_hook: a JSON number beyond double range (1e400) reads as infinity, as with the
# standard library, and the claim checks refuse it where a number matters.
_decode = msgspec.json.Decoder(float_hook=float).decode
_encode = msgspec.json.Encoder().encode
_INVALID: Any = object()
# A JSON string (used to skip strings when measuring the nesting of bracket-heavy text).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _b64(segment: bytes) -> bytes:
    # ``segment`` is already translated to the standard alphabet (_TO_STANDARD).
    rem = len(segment) & 3
    if rem:
        if rem == 1:
            raise MalformedToken("A token segment has an invalid base64url length")
        if segment[-1] not in _CANONICAL_LAST[rem]:
            raise MalformedToken("A token segment is not canonical base64url")
        segment += _PADDING[rem]
    try:
        return a2b_base64(segment, strict_mode=True)
    except binascii.Error:
        pass
    # Raised outside the handler: the error keeps no context (rule 6).
    raise MalformedToken("A token segment is not valid base64url")


def b64url_decode(segment: str) -> bytes:
    """Decode an unpadded, canonical base64url segment. Raises :class:`MalformedToken`."""
    if not segment.isascii():
        raise MalformedToken("A token segment is not valid base64url")
    return _b64(segment.encode("ascii").translate(_TO_STANDARD))


def _too_deep(data: bytes) -> bool:
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


_MEMBERWISE = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _has_duplicates_memberwise(data: bytes) -> bool:
    try:
        _MEMBERWISE.decode(data.decode("utf-8"))
    except ValueError:
        return True
    return False


def _parse(data: bytes) -> Any:
    """Strict JSON, or _INVALID. Never raises, so no error carries ``data``."""
    # More brackets than the bound (a cheap over-count: brackets in strings count too)
    # is when the real nesting must be measured.
    if data.count(b"{") + data.count(b"[") > MAX_JSON_DEPTH and _too_deep(data):
        return _INVALID
    try:
        value = _decode(data)
    except msgspec.DecodeError:
        return _INVALID
    colons = data.count(b":")
    if colons:
        if b"\\" in data and b"\\u003" in data:  # a colon may hide in an escape
            if _has_duplicates_memberwise(data):
                return _INVALID
        elif _encode(value).count(b":") != colons:
            return _INVALID
    return value


def strict_json(data: bytes) -> Any:
    """Parse UTF-8 JSON text strictly (see the module docstring). Raises ValueError,
    which carries nothing of ``data``."""
    value = _parse(data)
    if value is _INVALID:
        raise ValueError("not strict JSON")
    return value


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Strict JSON (see :func:`strict_json`) that must be an object, for token parts.
    Raises :class:`MalformedToken` without context (nothing of ``data`` is kept)."""
    value = _parse(data)
    if type(value) is dict:
        return value
    if value is _INVALID:
        raise MalformedToken(f"The token {what} is not valid JSON")
    raise MalformedToken(f"The token {what} is not a JSON object")


class JWS(NamedTuple):
    """A parsed compact JWS whose header passed the structural checks."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    algorithm: JWSAlgorithm
    kid: str | None
    typ: str | None
    #: The header segment as parsed (mapped to the standard base64 alphabet): the key
    #: under which :func:`verify_signature` remembers a verified header.
    header_segment: bytes = b""


# The checked headers of verified tokens, by their segment (see the module docstring):
# (header, algorithm, kid, typ). Filled only by verify_signature, after a trusted key
# verified the token; bounded in count and in segment length, cleared when full.
_HEADERS: dict[bytes, tuple[dict[str, Any], JWSAlgorithm, str | None, str | None]] = {}
_HEADERS_MAX = 256
_HEADER_MEMO_LENGTH = 1024
_new_jws = tuple.__new__


def parse_jws(token: str, allowed_algorithms: frozenset[str]) -> JWS:
    """Parse a compact JWS and check its header against the allowed algorithms.

    The header checks run here, before any key is looked up: ``alg`` must be one of
    ``allowed_algorithms`` (``none`` never is), ``crit`` and ``b64`` (RFC 7797) are
    refused because no extension is understood, and a nested JWT (``cty: JWT``) is
    refused. Raises :class:`MalformedToken`, :class:`InvalidSignature` or
    :class:`UnsupportedToken`.
    """
    if not token.isascii():
        raise MalformedToken()
    raw = token.encode("ascii")
    # One pass maps the whole token to the standard base64 alphabet (and anything
    # outside base64url to a character strict decoding refuses).
    parts = raw.translate(_TO_STANDARD).split(b".")
    if len(parts) != 3:
        raise MalformedToken("A token segment is not valid base64url")
    head = parts[0]
    known = _HEADERS.get(head)
    if known is None:
        header, algorithm, kid, typ = _read_header(head, allowed_algorithms)
    else:
        # A header that verified before passed every check below but the policy's own.
        header, algorithm, kid, typ = known
        if algorithm.name not in allowed_algorithms:
            raise InvalidSignature("The token signing algorithm is not allowed")

    signature = _b64(parts[2])
    if not signature:
        raise InvalidSignature("The token is not signed")
    claims = parse_json_object(_b64(parts[1]), "payload")
    # tuple.__new__ directly: the NamedTuple's own __new__ is a Python-level call.
    signing_input = raw[: len(head) + len(parts[1]) + 1]
    return _new_jws(JWS, (header, claims, signing_input, signature, algorithm, kid, typ, head))


def _read_header(
    segment: bytes, allowed_algorithms: frozenset[str]
) -> tuple[dict[str, Any], JWSAlgorithm, str | None, str | None]:
    header = parse_json_object(_b64(segment), "header")
    alg = header.get("alg")
    if type(alg) is not str:
        raise MalformedToken("The token header has no valid alg")
    if alg not in allowed_algorithms:
        raise InvalidSignature("The token signing algorithm is not allowed")
    if "crit" in header:
        raise UnsupportedToken("The token uses critical header extensions")
    if "b64" in header:
        raise UnsupportedToken("Unencoded JWS payloads are not accepted")
    # A header parameter that is present must be a string: null is not "absent".
    get = header.get
    cty = get("cty", _INVALID)
    if cty is not _INVALID and (type(cty) is not str or cty.lower() in _TYP_PLAIN):
        raise UnsupportedToken("Nested JWTs are not accepted")
    kid = get("kid", _INVALID)
    if kid is _INVALID:
        kid = None
    elif type(kid) is not str or not 0 < len(kid) <= _MAX_KID_LENGTH:
        raise MalformedToken("The token header has an invalid kid")
    typ = get("typ", _INVALID)
    if typ is _INVALID:
        typ = None
    elif type(typ) is not str:
        raise MalformedToken("The token header has an invalid typ")
    return header, REGISTRY[alg], kid, typ


def check_typ(typ: str | None, *, accept_plain_jwt: bool) -> bool:
    """RFC 9068 §4: the ``typ`` header must be ``at+jwt`` (or ``application/at+jwt``).

    With ``accept_plain_jwt`` a missing ``typ`` and ``JWT`` are accepted too, for
    authorization servers that do not (yet) type their access tokens. Any other type
    (an ID token's, a logout token's, a DPoP proof's...) is always refused. Returns
    whether the token is typed as an RFC 9068 access token.
    """
    if typ == "at+jwt" or (typ is not None and typ.lower() in _TYP_AT_JWT):
        return True
    if accept_plain_jwt and (typ is None or typ.lower() in _TYP_PLAIN):
        return False
    raise UnsupportedToken("The token is not an access token (typ)")


def verify_signature(jws: JWS, keys: tuple[Any, ...]) -> Any:
    """Return the first of ``keys`` (VerificationKey) whose key verifies ``jws``.

    ``keys`` were already filtered to fit the algorithm's key type and curve, and are
    trusted keys (an issuer's, a transmitter's, configured ones): never a key the token
    or the request carries itself (a DPoP proof's ``jwk``), because a verified header is
    remembered for the next token (see the module docstring).
    Raises :class:`InvalidSignature` if none does.
    """
    verify = jws.algorithm.verify
    for key in keys:
        try:
            if verify(key.key, jws.signing_input, jws.signature):
                break
        except (ValueError, TypeError):  # a signature of an impossible shape for this key
            continue
    else:
        raise InvalidSignature()
    segment = jws.header_segment
    if segment and segment not in _HEADERS and len(segment) <= _HEADER_MEMO_LENGTH:
        if len(_HEADERS) >= _HEADERS_MAX:
            _HEADERS.clear()
        _HEADERS[segment] = (jws.header, jws.algorithm, jws.kid, jws.typ)
    return key
