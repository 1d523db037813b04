"""The JWS algorithm registry: which algorithm may be used with which kind of key.

An algorithm is only ever tried with a key of the type it is defined for (RFC 8725
§3.1, §3.2): RSA algorithms with RSA keys of at least 2048 bits, each ECDSA algorithm
with its own curve, EdDSA with an OKP key, HMAC only with a symmetric key that was
configured locally. ``none`` is not in the registry at all.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_DPOP_ALGORITHMS",
    "REGISTRY",
    "JWSAlgorithm",
]

#: ``verify(key, signing_input, signature)``: whether the signature is good. May raise
#: ValueError or TypeError for a signature of a shape the key cannot have.
Verify = Callable[[Any, bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class JWSAlgorithm:
    """One JWS ``alg`` value bound to the key type (and curve) it may be used with."""

    name: str
    kty: str
    curves: frozenset[str] | None
    verify: Verify
    pyjwt_name: str  # the pyjwt name of this signature scheme (for loading JWKs)

    def fits(self, kty: str, crv: str | None) -> bool:
        """Whether a key of this ``kty``/``crv`` may verify this algorithm."""
        if kty != self.kty:
            return False
        return self.curves is None or crv in self.curves


# The verifiers call cryptography directly, with their padding and hash objects built
# once: this is the one step of a first-seen token that cannot be avoided, so nothing
# is added to it.


def _rsa(pad: padding.AsymmetricPadding, digest: hashes.HashAlgorithm) -> Verify:
    def verify(key: Any, message: bytes, signature: bytes) -> bool:
        try:
            key.verify(signature, message, pad, digest)
        except InvalidSignature:
            return False
        return True

    return verify


def _pkcs1(digest: hashes.HashAlgorithm) -> Verify:
    return _rsa(padding.PKCS1v15(), digest)


def _pss(digest: hashes.HashAlgorithm) -> Verify:
    # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
    return _rsa(padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size), digest)


def _ecdsa(digest: hashes.HashAlgorithm, size: int) -> Verify:
    algorithm = ec.ECDSA(digest)

    def verify(key: Any, message: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: R and S, each exactly ``size`` bytes (never DER).
        if len(signature) != 2 * size:
            return False
        der = encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
        try:
            key.verify(der, message, algorithm)
        except InvalidSignature:
            return False
        return True

    return verify


def _eddsa(key: Any, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _hmac(digest: str) -> Verify:
    def verify(key: Any, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(hmac.digest(key, message, digest), signature)

    return verify


def _alg(
    name: str,
    kty: str,
    verify: Verify,
    curves: tuple[str, ...] | None = None,
    pyjwt_name: str | None = None,
) -> JWSAlgorithm:
    return JWSAlgorithm(
        name, kty, frozenset(curves) if curves else None, verify, pyjwt_name or name
    )


REGISTRY: dict[str, JWSAlgorithm] = {
    a.name: a
    for a in (
        _alg("RS256", "RSA", _pkcs1(hashes.SHA256())),
        _alg("RS384", "RSA", _pkcs1(hashes.SHA384())),
        _alg("RS512", "RSA", _pkcs1(hashes.SHA512())),
        _alg("PS256", "RSA", _pss(hashes.SHA256())),
        _alg("PS384", "RSA", _pss(hashes.SHA384())),
        _alg("PS512", "RSA", _pss(hashes.SHA512())),
        _alg("ES256", "EC", _ecdsa(hashes.SHA256(), 32), ("P-256",)),
        _alg("ES384", "EC", _ecdsa(hashes.SHA384(), 48), ("P-384",)),
        _alg("ES512", "EC", _ecdsa(hashes.SHA512(), 66), ("P-521",)),
        _alg("ES256K", "EC", _ecdsa(hashes.SHA256(), 32), ("secp256k1",)),
        _alg("EdDSA", "OKP", _eddsa, ("Ed25519", "Ed448")),
        # RFC 9864's fully specified names for the same signatures.
        _alg("Ed25519", "OKP", _eddsa, ("Ed25519",), pyjwt_name="EdDSA"),
        _alg("Ed448", "OKP", _eddsa, ("Ed448",), pyjwt_name="EdDSA"),
        _alg("HS256", "oct", _hmac("sha256")),
        _alg("HS384", "oct", _hmac("sha384")),
        _alg("HS512", "oct", _hmac("sha512")),
    )
}

ASYMMETRIC_ALGORITHMS = frozenset(name for name, a in REGISTRY.items() if a.kty != "oct")

#: The algorithms a policy accepts unless told otherwise: every asymmetric one that
#: authorization servers commonly use. HMAC is never on by default.
DEFAULT_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)

#: The algorithms a DPoP proof may use unless the policy says otherwise (RFC 9449 §4.3:
#: asymmetric only), in the order the ``algs`` challenge parameter lists them.
DEFAULT_DPOP_ALGORITHMS: tuple[str, ...] = (
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
)
