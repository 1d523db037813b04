"""Hand-built JOSE objects for the attack suite: compact JWS from raw bytes, any signature.

Nothing here goes through a JWT library's encoder (PyJWT refuses ``alg: none``, HMAC with
a PEM public key, duplicate members...). Headers and payloads are raw bytes, a string or a
JSON value, base64url-encoded by hand, and signatures are made directly with
``cryptography`` (or HMAC with arbitrary key bytes), so any malformed or forged token an
attacker could send can be built.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509.oid import NameOID

__all__ = [
    "HASHES",
    "b64url",
    "b64url_decode",
    "claims_for",
    "compact",
    "der_to_raw_ecdsa",
    "dpop_proof",
    "ecdsa_raw",
    "hmac_key_spellings",
    "jwk_of",
    "jwk_thumbprint",
    "public_key_of",
    "raw_json",
    "reencode",
    "segment",
    "self_signed_certificate",
    "self_signed_x5c",
    "sign",
    "split",
]

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVE_SIZES = {"P-256": 32, "P-384": 48, "P-521": 66}
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
# The order n of each NIST curve (FIPS 186-4, D.1.2).
CURVE_ORDER = {
    "P-256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "P-384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}


# -- encoding -------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Lenient decoding for tests: padding added, no canonical check."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_json(value: Any) -> bytes:
    """Compact JSON bytes of ``value`` (``allow_nan`` so NaN/Infinity can be forged)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode("utf-8")


def segment(value: bytes | str | Mapping[str, Any] | Any) -> str:
    """base64url of raw bytes, of a str's UTF-8, or of a JSON value's compact encoding."""
    if isinstance(value, bytes):
        return b64url(value)
    if isinstance(value, str):
        return b64url(value.encode("utf-8"))
    return b64url(raw_json(value))


def split(token: str) -> tuple[str, str, str]:
    """The three segments of a compact JWS."""
    h64, p64, s64 = token.split(".")
    return h64, p64, s64


def reencode(token: str, *, header: Any = None, payload: Any = None) -> str:
    """``token`` with its header and/or payload replaced, signature kept as is."""
    h64, p64, s64 = split(token)
    if header is not None:
        h64 = segment(header)
    if payload is not None:
        p64 = segment(payload)
    return f"{h64}.{p64}.{s64}"


# -- signing --------------------------------------------------------------------------


def sign(alg: str, key: Any, data: bytes) -> bytes:
    """A JWS signature over ``data`` with ``key`` as ``alg`` says, made with cryptography.

    ``key`` is a cryptography private key, or bytes for HMAC (any bytes at all: this is
    how a public key is turned into an HMAC secret in algorithm-confusion attacks).
    """
    family, bits = alg[:2], alg[-3:]
    if family == "HS":
        digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[bits]
        return hmac.new(key, data, digest).digest()
    if family == "RS":
        return key.sign(data, padding.PKCS1v15(), HASHES[bits]())
    if family == "PS":
        algorithm = HASHES[bits]()
        pss = padding.PSS(padding.MGF1(algorithm), algorithm.digest_size)
        return key.sign(data, pss, algorithm)
    if family == "ES":
        size = (key.curve.key_size + 7) // 8
        der = key.sign(data, ec.ECDSA(HASHES[bits]()))
        return der_to_raw_ecdsa(der, size)
    if alg == "EdDSA":
        return key.sign(data)
    raise ValueError(f"cannot sign {alg}")


def compact(
    header: Any,
    payload: Any,
    *,
    key: Any = None,
    alg: str | None = None,
    signature: bytes | str | None = None,
) -> str:
    """A compact JWS ``header.payload.signature`` built by hand.

    ``header``/``payload`` are raw bytes, a str or a JSON value. With ``key`` the
    signature is computed over the exact segments (``alg`` defaults to the header's);
    with ``signature`` that exact value is used (a str is taken as the encoded segment);
    otherwise the signature segment is empty.
    """
    h64, p64 = segment(header), segment(payload)
    signing_input = f"{h64}.{p64}".encode("ascii")
    if isinstance(signature, str):
        s64 = signature
    elif signature is not None:
        s64 = b64url(signature)
    elif key is not None:
        s64 = b64url(sign(alg or header["alg"], key, signing_input))
    else:
        s64 = ""
    return f"{h64}.{p64}.{s64}"


def der_to_raw_ecdsa(der: bytes, size: int) -> bytes:
    """DER ECDSA-Sig-Value to the JWS ``r || s`` form (RFC 7518 §3.4)."""
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_raw(r: int, s: int, size: int = 32) -> bytes:
    """A raw ``r || s`` signature with chosen integers (for psychic-signature attacks)."""
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# -- keys -----------------------------------------------------------------------------


def _int(value: str) -> int:
    return int.from_bytes(b64url_decode(value), "big")


def public_key_of(jwk: Mapping[str, Any]) -> Any:
    """A cryptography public key from a public JWK (RSA, EC, OKP/Ed25519)."""
    kty = jwk["kty"]
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    if kty == "EC":
        curve = _CURVES[jwk["crv"]]
        return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve).public_key()
    if kty == "OKP" and jwk["crv"] == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    raise ValueError(f"unsupported JWK {kty}")


def _uint(value: int, size: int | None = None) -> str:
    size = size or max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def jwk_of(key: Any, **extra: Any) -> dict[str, Any]:
    """The public JWK of a cryptography key (private or public)."""
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    elif isinstance(public, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[public.curve.name]
        numbers = public.public_numbers()
        size = _CURVE_SIZES[crv]
        jwk = {"kty": "EC", "crv": crv, "x": _uint(numbers.x, size), "y": _uint(numbers.y, size)}
    elif isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    else:  # pragma: no cover - only the key types above are generated
        raise TypeError(type(public).__name__)
    return {**jwk, **extra}


def hmac_key_spellings(jwk: Mapping[str, Any]) -> dict[str, bytes]:
    """Every byte string a confused verifier might use as an HMAC secret for this public
    key: PEM (SPKI and PKCS#1), DER, OpenSSH, the JWK JSON, and the raw key bytes."""
    key = public_key_of(jwk)
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    spellings = {
        "pem-spki": key.public_bytes(pem, spki),
        "pem-spki-no-newline": key.public_bytes(pem, spki).rstrip(b"\n"),
        "der-spki": key.public_bytes(der, spki),
        "openssh": key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "jwk-json": json.dumps(dict(jwk)).encode(),
        "jwk-json-compact": raw_json(dict(jwk)),
    }
    if jwk["kty"] == "RSA":
        pkcs1 = serialization.PublicFormat.PKCS1
        spellings["pem-pkcs1"] = key.public_bytes(pem, pkcs1)
        spellings["der-pkcs1"] = key.public_bytes(der, pkcs1)
        spellings["raw-n"] = b64url_decode(jwk["n"])
    elif jwk["kty"] == "EC":
        point = serialization.PublicFormat.UncompressedPoint
        spellings["raw-point"] = key.public_bytes(serialization.Encoding.X962, point)
        spellings["raw-x"] = b64url_decode(jwk["x"])
    else:
        spellings["raw-x"] = b64url_decode(jwk["x"])
    return spellings


def self_signed_certificate(private_key: Any, name: str = "attacker.example") -> x509.Certificate:
    """A self-signed X.509 certificate for ``private_key``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(private_key, algorithm)
    )


def self_signed_x5c(private_key: Any, name: str = "attacker.example") -> list[str]:
    """An ``x5c`` chain (RFC 7515 §4.1.6): one self-signed certificate for ``private_key``."""
    certificate = self_signed_certificate(private_key, name)
    der = certificate.public_bytes(serialization.Encoding.DER)
    return [base64.b64encode(der).decode("ascii")]  # x5c is standard base64, not base64url


def claims_for(issuer: str, audience: str, *, lifetime: int = 300, **extra: Any) -> dict[str, Any]:
    """A complete, valid RFC 9068 payload; ``extra`` adds or (``None``) removes members."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": "user-1",
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "jti": "forged-jti",
        "client_id": "tokenguard-test-client",
        "scope": "orders:read",
    }
    for name, value in extra.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


# -- DPoP (RFC 9449) ------------------------------------------------------------------


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, computed here independently of tokenguard."""
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    return b64url(hashlib.sha256(raw_json(dict(sorted(members.items())))).digest())


def dpop_proof(
    key: Any,
    *,
    htm: str = "GET",
    htu: str = "https://api.example/orders",
    token: str | None = None,
    alg: str | None = None,
    header: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
    signing_key: Any = None,
) -> str:
    """A DPoP proof JWT (RFC 9449 §4.2) built by hand: ``typ`` ``dpop+jwt``, the public
    ``jwk`` of ``key``, a fresh ``jti`` and ``iat``, ``ath`` of ``token``. ``header`` and
    ``claims`` add or (``None``) remove members; ``signing_key`` signs with another key
    than the one in the header (bytes for HMAC)."""
    if alg is None:
        if isinstance(key, rsa.RSAPrivateKey):
            alg = "PS256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            alg = "EdDSA"
        else:
            alg = "ES256"
    jose: dict[str, Any] = {"typ": "dpop+jwt", "alg": alg, "jwk": jwk_of(key)}
    payload: dict[str, Any] = {
        "jti": b64url(secrets.token_bytes(16)),
        "htm": htm,
        "htu": htu,
        "iat": int(time.time()),
    }
    if token is not None:
        payload["ath"] = b64url(hashlib.sha256(token.encode("ascii")).digest())
    for target, changes in ((jose, header), (payload, claims)):
        for name, value in (changes or {}).items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    return compact(jose, payload, key=signing_key if signing_key is not None else key, alg=alg)
