"""The JWS algorithm registry: which algorithm may be used with which kind of key.

An algorithm is only ever tried with a key of the type it is defined for (RFC 8725
§3.1, §3.2): RSA algorithms with RSA keys of at least 2048 bits, each ECDSA algorithm
with its own curve, EdDSA with an OKP key, HMAC only with a symmetric key that was
configured locally. ``none`` is not in the registry at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jwt.algorithms import get_default_algorithms

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_DPOP_ALGORITHMS",
    "REGISTRY",
    "JWSAlgorithm",
]

_PYJWT = get_default_algorithms()


@dataclass(frozen=True, slots=True)
class JWSAlgorithm:
    """One JWS ``alg`` value bound to the key type (and curve) it may be used with."""

    name: str
    kty: str
    curves: frozenset[str] | None
    verifier: Any  # a pyjwt Algorithm: .verify(msg, key, sig) -> bool
    pyjwt_name: str  # the pyjwt name of this signature scheme (for loading JWKs)

    def fits(self, kty: str, crv: str | None) -> bool:
        """Whether a key of this ``kty``/``crv`` may verify this algorithm."""
        if kty != self.kty:
            return False
        return self.curves is None or crv in self.curves


def _alg(
    name: str, kty: str, curves: tuple[str, ...] | None = None, pyjwt_name: str | None = None
) -> JWSAlgorithm:
    pyjwt_name = pyjwt_name or name
    return JWSAlgorithm(
        name, kty, frozenset(curves) if curves else None, _PYJWT[pyjwt_name], pyjwt_name
    )


REGISTRY: dict[str, JWSAlgorithm] = {
    a.name: a
    for a in (
        _alg("RS256", "RSA"),
        _alg("RS384", "RSA"),
        _alg("RS512", "RSA"),
        _alg("PS256", "RSA"),
        _alg("PS384", "RSA"),
        _alg("PS512", "RSA"),
        _alg("ES256", "EC", ("P-256",)),
        _alg("ES384", "EC", ("P-384",)),
        _alg("ES512", "EC", ("P-521",)),
        _alg("ES256K", "EC", ("secp256k1",)),
        _alg("EdDSA", "OKP", ("Ed25519", "Ed448")),
        # RFC 9864's fully specified names for the same signatures.
        _alg("Ed25519", "OKP", ("Ed25519",), pyjwt_name="EdDSA"),
        _alg("Ed448", "OKP", ("Ed448",), pyjwt_name="EdDSA"),
        _alg("HS256", "oct"),
        _alg("HS384", "oct"),
        _alg("HS512", "oct"),
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
