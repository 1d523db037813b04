"""DPoP proofs at a resource server (RFC 9449 §4.3, §7.1). No I/O.

A proof is checked in two steps around the validation of the token it comes with:

* :func:`read_proof`, before the token and without any cryptography: exactly one
  well-formed compact JWS of type ``dpop+jwt``, an allowed asymmetric ``alg`` that fits
  the public ``jwk`` in its header, and claims ``jti``, ``htm`` (the request method),
  ``htu`` (the request URI without query and fragment, compared after RFC 3986 §6
  normalisation), ``iat`` (within the policy window) and ``ath`` (the token's hash).
* :func:`verify_proof`, once the token validated and its ``cnf.jkt`` equals the RFC 7638
  thumbprint of the proof's key: the signature, with that key.

Parsing reuses :func:`~tokenguard.core.jose.parse_jws` (strict base64url and JSON, no
``crit``/``b64``, ``alg`` from an allow-list) and the algorithm registry's binding of each
algorithm to its key type; a key that carries private members is refused outright.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string
from typing import Any

from ..errors import InvalidDPoPProof, InvalidSignature, TokenGuardError
from .algorithms import JWSAlgorithm
from .jose import JWS, b64url_decode, parse_json_object, parse_jws
from .jwks import PRIVATE_MEMBERS, VerificationKey, usable_key
from .urls import normalize_http_uri

__all__ = [
    "DPoPProof",
    "DPoPRules",
    "KnownHeader",
    "Proof",
    "access_token_hash",
    "b64url_encode",
    "jwk_thumbprint",
    "read_proof",
    "verify_proof",
]

_DPOP_TYPES = frozenset({"dpop+jwt", "application/dpop+jwt"})
# RFC 7638 §3.2: the members of each key type's thumbprint input, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
# Private key material of any key type, "k" included (a symmetric key is all secret).
_SECRET_MEMBERS = PRIVATE_MEMBERS | {"k"}
_MAX_JTI_LENGTH = 256
_HTTP_PREFIXES = ("https://", "http://")


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """What a request offers to prove possession of a DPoP-bound token (RFC 9449 §7.1).

    Attributes:
        proof: the ``DPoP`` header value, ``None`` when the request had none, or every
            value when the header occurred more than once (then refused).
        method: the request's HTTP method (``htm``).
        url: the request's absolute URL as the client addressed it (``htu``); a query or
            fragment is ignored. Behind a proxy, build it from forwarded headers you
            trust, never by default.
        scheme: the ``Authorization`` scheme that carried the token, ``"DPoP"`` or
            ``"Bearer"`` (RFC 9449 §7.1-§7.2: a DPoP-bound token sent as ``Bearer`` is
            refused). ``None``: ``"DPoP"`` when there is a proof, else ``"Bearer"``.
    """

    proof: str | Sequence[str] | None = field(repr=False)
    method: str
    url: str
    scheme: str | None = None


@dataclass(frozen=True, slots=True)
class DPoPRules:
    """A policy's DPoP settings, compiled."""

    mode: str  # "disabled" | "allowed" | "required"
    algorithms: frozenset[str]
    algs: tuple[str, ...]  # the same, in the policy's order (the challenge's algs)
    max_age: float
    nonce: bool


@dataclass(slots=True)
class Proof:
    """A proof that passed :func:`read_proof`; ``key`` is set once its signature
    verified (:func:`verify_proof`)."""

    jws: JWS = field(repr=False)
    jwk: dict[str, Any] = field(repr=False)
    thumbprint: str
    jti: str = field(repr=False)
    iat: float
    key: VerificationKey | None = field(default=None, repr=False)
    segment: str = field(default="", repr=False)  # the header segment as sent


@dataclass(frozen=True, slots=True)
class KnownHeader:
    """What :func:`read_proof` learnt from a proof header segment, every check of which
    depends on the segment alone (but the policy's algorithm list): a client sends the
    same header with each proof. Remembered only for a proof whose request passed."""

    header: dict[str, Any] = field(repr=False)
    algorithm: JWSAlgorithm
    typ: str | None
    jwk: dict[str, Any] = field(repr=False)
    thumbprint: str


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url of the SHA-256 of the token's ASCII bytes."""
    return b64url_encode(hashlib.sha256(token.encode("ascii")).digest())


def jwk_thumbprint(jwk: dict[str, Any]) -> str | None:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, or None if it lacks a required
    member (or one is not a string)."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if type(kty) is str else None
    if members is None:
        return None
    values: list[Any] = [jwk.get(name) for name in members]
    if not all(type(v) is str for v in values):
        return None
    # Required members only, sorted, no whitespace (RFC 7638 §3.3), each value a JSON
    # string (escaped as JSON requires).
    canonical = ",".join(f'"{m}":{_json_string(v)}' for m, v in zip(members, values, strict=True))
    return b64url_encode(hashlib.sha256(("{" + canonical + "}").encode("utf-8")).digest())


def _one_value(value: str | Sequence[str] | None) -> str:
    if value is None:
        raise InvalidDPoPProof("A DPoP proof is required")
    if not isinstance(value, str):
        values = list(value)
        if len(values) != 1 or not isinstance(values[0], str):
            raise InvalidDPoPProof("The request must carry exactly one DPoP header")
        value = values[0]
    # Several header lines folded into one value are joined by commas, which a compact
    # JWS never contains (RFC 9449 §4.3 check 1).
    if "," in value:
        raise InvalidDPoPProof("The request must carry exactly one DPoP header")
    return value.strip(" \t")


def _with_known_header(text: str, parts: list[str], known: KnownHeader) -> JWS:
    """The JWS of a proof whose header segment is known: only its payload and signature
    are decoded (with the same strict rules as :func:`parse_jws`)."""
    try:
        signature = b64url_decode(parts[2])
        claims = parse_json_object(b64url_decode(parts[1]), "payload")
    except TokenGuardError:
        raise InvalidDPoPProof("The DPoP proof is malformed") from None
    signing_input = text[: len(parts[0]) + len(parts[1]) + 1].encode("ascii")
    return JWS(known.header, claims, signing_input, signature, known.algorithm, None, known.typ)


def _read_header(text: str, rules: DPoPRules) -> tuple[JWS, dict[str, Any], str]:
    """Parse a proof and check its header (RFC 9449 §4.3 checks 2, 4-7 short of the
    signature): the JWS, its public ``jwk`` and that key's RFC 7638 thumbprint."""
    try:
        jws = parse_jws(text, rules.algorithms)
    except InvalidSignature:
        raise InvalidDPoPProof("The DPoP proof algorithm is not allowed") from None
    except TokenGuardError:
        raise InvalidDPoPProof("The DPoP proof is malformed") from None
    if jws.typ is None or jws.typ.lower() not in _DPOP_TYPES:
        raise InvalidDPoPProof("The DPoP proof type must be dpop+jwt")
    header = jws.header
    jwk = header.get("jwk")
    if type(jwk) is not dict:
        raise InvalidDPoPProof("The DPoP proof header carries no jwk")
    if _SECRET_MEMBERS.intersection(jwk):
        raise InvalidDPoPProof("The DPoP proof jwk contains a private key")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if (
        type(kty) is not str
        or (crv is not None and type(crv) is not str)
        or not jws.algorithm.fits(kty, crv)
    ):
        raise InvalidDPoPProof("The DPoP proof jwk does not fit its algorithm")
    thumbprint = jwk_thumbprint(jwk)
    if thumbprint is None:
        raise InvalidDPoPProof("The DPoP proof jwk is incomplete")
    return jws, jwk, thumbprint


def read_proof(
    value: str | Sequence[str] | None,
    *,
    method: str,
    url: str,
    token: str,
    rules: DPoPRules,
    max_length: int,
    now: float,
    known_headers: Mapping[str, KnownHeader] | None = None,
) -> Proof:
    """Every check of RFC 9449 §4.3 that needs neither the token's binding nor a
    signature verification. Raises :class:`InvalidDPoPProof` (nonces are checked by the
    caller, which issues them). ``known_headers``: header segments of proofs that passed
    before, by segment (their checks are not run again, but the policy's algorithms)."""
    text = _one_value(value)
    if len(text) > max_length:
        raise InvalidDPoPProof("The DPoP proof is too large")
    parts = text.split(".")
    if len(parts) != 3 or not all(parts):  # the segments' characters: parse_jws
        raise InvalidDPoPProof("The DPoP proof is not a compact JWS")
    known = known_headers.get(parts[0]) if known_headers else None
    if known is not None:
        if known.algorithm.name not in rules.algorithms:
            raise InvalidDPoPProof("The DPoP proof algorithm is not allowed")
        jws = _with_known_header(text, parts, known)
        jwk, thumbprint = known.jwk, known.thumbprint
    else:
        jws, jwk, thumbprint = _read_header(text, rules)

    claims = jws.claims
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if type(jti) is not str or not 0 < len(jti) <= _MAX_JTI_LENGTH:
        raise InvalidDPoPProof("The DPoP proof has no valid jti")
    if type(iat) is not int and type(iat) is not float:
        raise InvalidDPoPProof("The DPoP proof has no valid iat")
    if type(htm) is not str or htm != method:
        raise InvalidDPoPProof("The DPoP proof is for another HTTP method")
    # RFC 9449 §4.2: htu is the target URI "without query and fragment parts"; one that
    # has them is refused rather than cut. The request's are ignored (§4.3 check 9).
    if type(htu) is not str:
        raise InvalidDPoPProof("The DPoP proof has no valid htu")
    if htu != url.partition("#")[0].partition("?")[0] or not htu.startswith(_HTTP_PREFIXES):
        # Not the very same string: compare after RFC 3986 §6.2.2-6.2.3 normalisation.
        target = normalize_http_uri(htu, strip_query=False)
        if target is None:
            raise InvalidDPoPProof("The DPoP proof has no valid htu")
        if target != normalize_http_uri(url, strip_query=True):
            raise InvalidDPoPProof("The DPoP proof is for another URL")
    if not now - rules.max_age <= iat <= now + rules.max_age:
        raise InvalidDPoPProof("The DPoP proof is too old or issued in the future")
    ath = claims.get("ath")
    if type(ath) is not str or not hmac.compare_digest(ath, access_token_hash(token)):
        raise InvalidDPoPProof("The DPoP proof is not for this access token")
    nonce = claims.get("nonce")
    if nonce is not None and type(nonce) is not str:
        raise InvalidDPoPProof("The DPoP proof nonce must be a string")
    return Proof(jws=jws, jwk=jwk, thumbprint=thumbprint, jti=jti, iat=float(iat), segment=parts[0])


def verify_proof(proof: Proof, known: VerificationKey | None = None) -> None:
    """Verify the proof's signature with the public key it carries (RFC 9449 §4.3
    checks 6-7), or with ``known``, the key an earlier verified proof with the same
    thumbprint carried. Sets ``proof.key``. Raises :class:`InvalidDPoPProof`."""
    jws = proof.jws
    key = known or usable_key(proof.jwk, allow_symmetric=False)
    if key is None or jws.algorithm.name not in key.algorithms:
        raise InvalidDPoPProof("The DPoP proof key is not usable")
    try:
        valid = jws.algorithm.verify(key.key, jws.signing_input, jws.signature)
    except (ValueError, TypeError):  # a signature of an impossible shape for this key
        valid = False
    if not valid:
        raise InvalidDPoPProof("The DPoP proof signature is invalid")
    proof.key = key
