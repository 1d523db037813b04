"""Fixtures for the pure-core unit tests: real keys, generated once per session."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


@pytest.fixture(scope="session")
def keys() -> SimpleNamespace:
    """One private key per key type tokenguard verifies, plus spares for "wrong key" tests."""
    return SimpleNamespace(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa_other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        # A weak key on purpose: published RSA keys under 2048 bits must be refused.
        rsa_1024=rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
        p256=ec.generate_private_key(ec.SECP256R1()),
        p256_other=ec.generate_private_key(ec.SECP256R1()),
        p384=ec.generate_private_key(ec.SECP384R1()),
        ed25519=ed25519.Ed25519PrivateKey.generate(),
        ed25519_other=ed25519.Ed25519PrivateKey.generate(),
        hmac=b"k" * 32,
    )
