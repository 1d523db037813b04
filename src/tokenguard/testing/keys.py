"""Signing keys of the test authorization server: generation, JWKS export and rotation."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import Algorithm, get_default_algorithms

__all__ = ["SUPPORTED_ALGORITHMS", "KeyRing", "SigningKey", "b64url", "generate_key"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}
_RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")

#: JWS algorithms the server can sign with (one key type each; RSA keys are 2048 bits).
SUPPORTED_ALGORITHMS: Final[tuple[str, ...]] = (*_RSA_ALGORITHMS, *_CURVES, "EdDSA")

# RFC 7638 §3.2: the members that make up the thumbprint of each key type.
_THUMBPRINT_MEMBERS: Final = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _algorithm(alg: str) -> Algorithm:
    if alg not in SUPPORTED_ALGORITHMS:
        raise ValueError(
            f"unsupported signing algorithm {alg!r}; use one of {SUPPORTED_ALGORITHMS}"
        )
    return get_default_algorithms()[alg]


@dataclass(frozen=True)
class SigningKey:
    """One asymmetric signing key.

    Attributes:
        kid: the key id, the RFC 7638 JWK thumbprint of the public key.
        alg: the JWS algorithm this key is bound to.
        public_jwk: the public JWK as published (``kty``, key material, ``kid``, ``alg``,
            ``use="sig"``).
    """

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    _private_key: PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """Return the JWS signature of ``data`` (raw ``r || s`` for ECDSA)."""
        return _algorithm(self.alg).sign(data, self._private_key)


def generate_key(alg: str) -> SigningKey:
    """Generate a fresh key for ``alg`` (one of :data:`SUPPORTED_ALGORITHMS`)."""
    algorithm = _algorithm(alg)
    private_key: PrivateKey
    if alg in _RSA_ALGORITHMS:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg in _CURVES:
        private_key = ec.generate_private_key(_CURVES[alg])
    else:
        private_key = ed25519.Ed25519PrivateKey.generate()
    jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.pop("key_ops", None)  # "use" is published instead (RFC 7517 §4.3)
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = b64url(hashlib.sha256(canonical).digest())
    return SigningKey(kid, alg, {**jwk, "kid": kid, "alg": alg, "use": "sig"}, private_key)


class KeyRing:
    """The server's published keys: the newest key of each algorithm signs new tokens.

    Thread-safe; rotation is visible to the next JWKS request and the next token.
    """

    def __init__(self, algorithms: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = [generate_key(alg) for alg in dict.fromkeys(algorithms)]

    def signing_key(self, alg: str | None = None, kid: str | None = None) -> SigningKey:
        """Return the key with id ``kid``, or else the current key for ``alg``.

        Raises:
            ValueError: no such key is published (or ``kid`` is bound to another alg).
        """
        with self._lock:
            keys = list(self._keys)
        if kid is not None:
            key = next((k for k in keys if k.kid == kid), None)
            if key is None:
                raise ValueError(f"no published key has kid {kid!r}")
            if alg is not None and key.alg != alg:
                raise ValueError(f"key {kid!r} is bound to {key.alg}, not {alg}")
            return key
        alg = alg or "RS256"
        for key in reversed(keys):
            if key.alg == alg:
                return key
        raise ValueError(f"no {alg} key is published; call rotate_keys({alg!r}) first")

    def rotate(self, alg: str, *, keep_old: bool) -> SigningKey:
        """Publish a new key for ``alg``; drop the older ``alg`` keys unless ``keep_old``."""
        key = generate_key(alg)
        with self._lock:
            if not keep_old:
                self._keys = [k for k in self._keys if k.alg != alg]
            self._keys.append(key)
        return key

    def retire(self, alg: str) -> None:
        """Stop publishing every ``alg`` key but the newest (the one that signs)."""
        with self._lock:
            newest = next((k for k in reversed(self._keys) if k.alg == alg), None)
            self._keys = [k for k in self._keys if k.alg != alg or k is newest]

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Return the public JWK Set document."""
        with self._lock:
            return {"keys": [dict(k.public_jwk) for k in self._keys]}
