"""Minting access tokens (RFC 9068 JWTs and opaque strings) and remembering them."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tokenguard.testing.keys import KeyRing, b64url

__all__ = ["TokenFactory", "TokenRecord", "TokenStore"]


class _HasClientId(Protocol):
    def get_client_id(self) -> str: ...


@dataclass
class TokenRecord:
    """What the server knows about a token it issued.

    Implements the parts of authlib's ``TokenMixin`` that introspection and revocation use.

    Attributes:
        claims: the token's claims (for a JWT exactly those it carries); introspection of an
            active token answers with them.
        revoked: whether the token was revoked.
    """

    claims: dict[str, Any]
    revoked: bool = False

    def is_expired(self) -> bool:
        """Whether ``exp`` has been reached (a token without ``exp`` never expires)."""
        exp = self.claims.get("exp")
        return isinstance(exp, int | float) and time.time() >= exp

    def is_revoked(self) -> bool:
        """Whether the token was revoked."""
        return self.revoked

    def check_client(self, client: _HasClientId) -> bool:
        """Whether the token was issued to ``client`` (RFC 7009 §2.1)."""
        return self.claims.get("client_id") == client.get_client_id()

    def introspection(self) -> dict[str, Any]:
        """The RFC 7662 response for this (not expired, not revoked) token."""
        nbf = self.claims.get("nbf")
        if isinstance(nbf, int | float) and time.time() < nbf:
            return {"active": False}
        return {"active": True, "token_type": "Bearer", **self.claims}


class TokenStore:
    """Thread-safe map from issued token strings to their records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}

    def add(self, token: str, record: TokenRecord) -> None:
        """Remember ``token``."""
        with self._lock:
            self._records[token] = record

    def get(self, token: str) -> TokenRecord | None:
        """Return the record of ``token`` if this server issued it."""
        with self._lock:
            return self._records.get(token)

    def revoke(self, token: str) -> bool:
        """Mark ``token`` revoked; return whether this server issued it."""
        with self._lock:
            record = self._records.get(token)
            if record is not None:
                record.revoked = True
            return record is not None


def _b64url_json(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _apply(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``overrides`` into ``base``; an override of ``None`` removes the member."""
    for name, value in (overrides or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


class TokenFactory:
    """Mints tokens for one issuer and records them in a :class:`TokenStore`.

    Attributes:
        default_lifetime: the lifetime in seconds of tokens minted without one.
    """

    def __init__(
        self,
        *,
        issuer: str,
        keyring: KeyRing,
        store: TokenStore,
        default_client_id: str,
        default_lifetime: int,
    ) -> None:
        self._issuer = issuer
        self._keyring = keyring
        self._store = store
        self._default_client_id = default_client_id
        self.default_lifetime = default_lifetime

    def _claims(
        self,
        *,
        subject: str,
        scopes: Iterable[str],
        audience: str | Sequence[str] | None,
        lifetime: int | None,
        client_id: str | None,
        issued_at: float | None,
        not_before: float | None,
    ) -> dict[str, Any]:
        iat = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience if audience is None or isinstance(audience, str) else list(audience),
            "exp": iat + (self.default_lifetime if lifetime is None else lifetime),
            "iat": iat,
            "nbf": None if not_before is None else int(not_before),
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id or self._default_client_id,
            "scope": (scopes if isinstance(scopes, str) else " ".join(scopes)) or None,
        }
        return {name: value for name, value in claims.items() if value is not None}

    def jwt(
        self,
        *,
        subject: str,
        scopes: Iterable[str],
        audience: str | Sequence[str] | None,
        lifetime: int | None = None,
        alg: str | None = None,
        kid: str | None = None,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        typ: str | None = "at+jwt",
        client_id: str | None = None,
        issued_at: float | None = None,
        not_before: float | None = None,
    ) -> str:
        """Mint a JWS-compact JWT access token (see ``AuthServer.issue_jwt``)."""
        payload = _apply(
            self._claims(
                subject=subject,
                scopes=scopes,
                audience=audience,
                lifetime=lifetime,
                client_id=client_id,
                issued_at=issued_at,
                not_before=not_before,
            ),
            claims,
        )
        if alg == "none":
            key = None
            jws_header: dict[str, Any] = {"alg": "none"}
        else:
            key = self._keyring.signing_key(alg, kid)
            jws_header = {"alg": key.alg, "kid": key.kid}
        _apply(jws_header, {"typ": typ, **(header or {})})
        signing_input = f"{_b64url_json(jws_header)}.{_b64url_json(payload)}"
        signature = b"" if key is None else key.sign(signing_input.encode("ascii"))
        token = f"{signing_input}.{b64url(signature)}"
        self._store.add(token, TokenRecord(payload))
        return token

    def opaque(
        self,
        *,
        subject: str,
        scopes: Iterable[str],
        audience: str | Sequence[str] | None,
        lifetime: int | None = None,
        client_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Mint an opaque token known only to introspection (see ``AuthServer.issue_opaque``)."""
        claims = self._claims(
            subject=subject,
            scopes=scopes,
            audience=audience,
            lifetime=lifetime,
            client_id=client_id,
            issued_at=None,
            not_before=None,
        )
        token = secrets.token_urlsafe(32)
        self._store.add(token, TokenRecord(_apply(claims, extra)))
        return token
