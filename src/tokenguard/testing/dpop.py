"""A DPoP client key for tests (RFC 9449): proofs for requests, and the thumbprint that
tokens are bound to."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from tokenguard.testing.keys import SUPPORTED_ALGORITHMS, b64url, generate_key

__all__ = ["DPoPKey"]

_KEY_MEMBERS = ("kty", "crv", "x", "y", "n", "e")


class DPoPKey:
    """A client's DPoP key pair: it makes DPoP proofs, and its :attr:`thumbprint` is what
    a DPoP-bound token's ``cnf.jkt`` names.

    Example::

        key = DPoPKey()
        token = auth_server.issue_jwt(claims={"cnf": key.cnf})
        proof = key.proof("GET", "https://api.example/orders", access_token=token)
        guard.validate(token, dpop=DPoPProof(proof, "GET", "https://api.example/orders"))
    """

    def __init__(self, alg: str = "ES256") -> None:
        if alg not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported DPoP algorithm {alg!r}")
        self._key = generate_key(alg)
        self.alg = alg
        self.jwk: dict[str, Any] = {
            k: v for k, v in self._key.public_jwk.items() if k in _KEY_MEMBERS
        }

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 thumbprint of the public key (``cnf.jkt``)."""
        return self._key.kid  # the test server's keys are named by their thumbprint

    @property
    def cnf(self) -> dict[str, str]:
        """The ``cnf`` claim of a token bound to this key."""
        return {"jkt": self.thumbprint}

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
    ) -> str:
        """A DPoP proof for one request: ``htm``/``htu`` from ``method``/``url`` (query
        and fragment dropped), ``ath`` when an access token goes with it, a fresh ``jti``
        and ``iat`` unless given."""
        htu = url.split("#", 1)[0].split("?", 1)[0]
        claims: dict[str, Any] = {
            "jti": jti or b64url(secrets.token_bytes(16)),
            "htm": method,
            "htu": htu,
            "iat": int(time.time() if iat is None else iat),
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        return f"{signing_input}.{b64url(self._key.sign(signing_input.encode('ascii')))}"

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, thumbprint={self.thumbprint!r})"
