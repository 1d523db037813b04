"""Helpers shared by the unit tests: keys, hand-built tokens, JWKs."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

ALGORITHMS = get_default_algorithms()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    """base64url(JSON) of ``value``, or of the raw bytes/str given."""
    if isinstance(value, bytes):
        return b64url(value)
    if isinstance(value, str):
        return b64url(value.encode("utf-8"))
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def sign(alg: str, key: Any, signing_input: bytes) -> bytes:
    algorithm = ALGORITHMS[alg]
    return algorithm.sign(signing_input, algorithm.prepare_key(key))


def make_token(
    header: Any,
    payload: Any,
    *,
    key: Any = None,
    alg: str | None = None,
    signature: bytes | None = None,
) -> str:
    """A compact JWS built by hand: ``header``/``payload`` may be dicts, str or bytes.

    With ``key``, the signature is computed with ``alg`` (default: the header's alg);
    with ``signature``, that exact signature is used; otherwise a dummy one.
    """
    h64, p64 = segment(header), segment(payload)
    signing_input = f"{h64}.{p64}".encode("ascii")
    if signature is None:
        if key is not None:
            name = alg or header["alg"]
            signature = sign(name, key, signing_input)
        else:
            signature = b"\x01" * 32
    return f"{h64}.{p64}.{b64url(signature)}"


def public_jwk(private_key: Any, **extra: Any) -> dict[str, Any]:
    """The public JWK (dict) of a cryptography private key."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = json.loads(ALGORITHMS["RS256"].to_jwk(private_key.public_key()))
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        jwk = json.loads(ALGORITHMS["ES256"].to_jwk(private_key.public_key()))
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        jwk = json.loads(ALGORITHMS["EdDSA"].to_jwk(private_key.public_key()))
    else:  # pragma: no cover - helper misuse
        raise TypeError(type(private_key))
    jwk.update(extra)
    return jwk


def private_jwk(private_key: Any, **extra: Any) -> dict[str, Any]:
    """The JWK (dict) of a private key, private members included."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = json.loads(ALGORITHMS["RS256"].to_jwk(private_key))
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        jwk = json.loads(ALGORITHMS["ES256"].to_jwk(private_key))
    else:
        jwk = json.loads(ALGORITHMS["EdDSA"].to_jwk(private_key))
    jwk.update(extra)
    return jwk


def oct_jwk(secret: bytes, **extra: Any) -> dict[str, Any]:
    return {"kty": "oct", "k": b64url(secret), **extra}
