"""Compact JWS parsing (RFC 7515 §7.1) and signature verification. No I/O.

Parsing is strict: base64url without padding and in canonical form, UTF-8 JSON
objects without duplicate member names or non-finite numbers. The JOSE header only
names an algorithm and, optionally, a ``kid``; key-carrying headers (``jku``, ``x5u``,
``jwk``, ``x5c``) are never used to find a key (RFC 8725 §3.10).
"""

from __future__ import annotations

import binascii
import json
from sys import intern
from typing import Any, NamedTuple

from ..errors import InvalidSignature, MalformedToken, UnsupportedToken
from .algorithms import REGISTRY, JWSAlgorithm

__all__ = ["JWS", "b64url_decode", "parse_json_object", "parse_jws", "strict_json"]

_MAX_KID_LENGTH = 256
# The last character of a base64url string carries 4 (length % 4 == 2) or 2
# (length % 4 == 3) bits of data followed by zero bits; anything else is a second
# spelling of the same bytes, which we refuse so one token has one encoding.
_CANONICAL_LAST = {
    2: frozenset("AQgw"),
    3: frozenset("AEIMQUYcgkosw048"),
}
# "-_" become "+/"; a "+" or "/" in the input becomes "!", which strict decoding refuses.
_TO_STANDARD = bytes.maketrans(b"-_+/", b"+/!!")
_PADDING = {0: b"", 2: b"==", 3: b"="}
_TYP_AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
_TYP_PLAIN = frozenset({"jwt", "application/jwt"})


def b64url_decode(segment: str) -> bytes:
    """Decode an unpadded, canonical base64url segment (characters already checked)."""
    rem = len(segment) % 4
    if rem == 1:
        raise MalformedToken("A token segment has an invalid base64url length")
    if rem and segment[-1] not in _CANONICAL_LAST[rem]:
        raise MalformedToken("A token segment is not canonical base64url")
    try:
        return binascii.a2b_base64(
            segment.encode("ascii").translate(_TO_STANDARD) + _PADDING[rem], strict_mode=True
        )
    except (ValueError, binascii.Error):
        raise MalformedToken("A token segment is not valid base64url") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Member names are interned, and so are the values of claims that repeat from token
    # to token (issuer, audience, client, scope): a cache of 100,000 validated tokens
    # then holds one copy of each instead of 100,000.
    obj = {
        intern(name): intern(value) if name in _SHARED and type(value) is str else value
        for name, value in pairs
    }
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


_SHARED = frozenset(
    {"iss", "aud", "azp", "client_id", "scope", "scp", "typ", "alg", "token_type", "acr"}
)


def _no_constant(name: str) -> Any:
    raise ValueError("non-finite number")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def strict_json(data: bytes) -> Any:
    """Parse UTF-8 JSON text; duplicate member names and NaN/Infinity are refused.
    Raises ValueError."""
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Strict JSON (see :func:`strict_json`) that must be an object, for token parts."""
    try:
        value = strict_json(data)
    except ValueError:
        raise MalformedToken(f"The token {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"The token {what} is not a JSON object")
    return value


class JWS(NamedTuple):
    """A parsed compact JWS whose header passed the structural checks."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    algorithm: JWSAlgorithm
    kid: str | None
    typ: str | None


def parse_jws(token: str, allowed_algorithms: frozenset[str]) -> JWS:
    """Parse a compact JWS and check its header against the allowed algorithms.

    The header checks run here, before any key is looked up: ``alg`` must be one of
    ``allowed_algorithms`` (``none`` never is), ``crit`` and ``b64`` (RFC 7797) are
    refused because no extension is understood, and a nested JWT (``cty: JWT``) is
    refused. Raises :class:`MalformedToken`, :class:`InvalidSignature` or
    :class:`UnsupportedToken`.
    """
    signed, _, s64 = token.rpartition(".")
    h64, _, p64 = signed.partition(".")
    header = parse_json_object(b64url_decode(h64), "header")

    alg = header.get("alg")
    if not isinstance(alg, str):
        raise MalformedToken("The token header has no valid alg")
    if alg not in allowed_algorithms:
        raise InvalidSignature("The token signing algorithm is not allowed")
    if "crit" in header:
        raise UnsupportedToken("The token uses critical header extensions")
    if "b64" in header:
        raise UnsupportedToken("Unencoded JWS payloads are not accepted")
    # A header parameter that is present must be a string: null is not "absent".
    cty = header.get("cty")
    if "cty" in header and (not isinstance(cty, str) or cty.lower() in _TYP_PLAIN):
        raise UnsupportedToken("Nested JWTs are not accepted")
    kid = header.get("kid")
    if "kid" in header and (not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID_LENGTH):
        raise MalformedToken("The token header has an invalid kid")
    typ = header.get("typ")
    if "typ" in header and not isinstance(typ, str):
        raise MalformedToken("The token header has an invalid typ")

    signature = b64url_decode(s64)
    if not signature:
        raise InvalidSignature("The token is not signed")
    claims = parse_json_object(b64url_decode(p64), "payload")
    return JWS(
        header=header,
        claims=claims,
        signing_input=signed.encode("ascii"),
        signature=signature,
        algorithm=REGISTRY[alg],
        kid=kid,
        typ=typ,
    )


def check_typ(typ: str | None, *, accept_plain_jwt: bool) -> bool:
    """RFC 9068 §4: the ``typ`` header must be ``at+jwt`` (or ``application/at+jwt``).

    With ``accept_plain_jwt`` a missing ``typ`` and ``JWT`` are accepted too, for
    authorization servers that do not (yet) type their access tokens. Any other type
    (an ID token's, a logout token's, a DPoP proof's...) is always refused. Returns
    whether the token is typed as an RFC 9068 access token.
    """
    if typ is not None and typ.lower() in _TYP_AT_JWT:
        return True
    if accept_plain_jwt and (typ is None or typ.lower() in _TYP_PLAIN):
        return False
    raise UnsupportedToken("The token is not an access token (typ)")


def verify_signature(jws: JWS, keys: tuple[Any, ...]) -> Any:
    """Return the first of ``keys`` (VerificationKey) whose key verifies ``jws``.

    ``keys`` were already filtered to fit the algorithm's key type and curve.
    Raises :class:`InvalidSignature` if none does.
    """
    verifier = jws.algorithm.verifier
    for key in keys:
        try:
            if verifier.verify(jws.signing_input, key.key, jws.signature):
                return key
        except (ValueError, TypeError):  # a signature of an impossible shape for this key
            continue
    raise InvalidSignature()
