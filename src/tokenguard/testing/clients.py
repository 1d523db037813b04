"""Clients registered with the test authorization server."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from joserfc.jwk import KeySet

__all__ = ["DEFAULT_AUDIENCE", "Client", "ClientRegistry", "TokenFormat"]

#: The audience of tokens when none is asked for.
DEFAULT_AUDIENCE: Final = "urn:test:api"

TokenFormat = Literal["jwt", "opaque"]
TOKEN_FORMATS: Final[tuple[TokenFormat, ...]] = ("jwt", "opaque")


@dataclass(frozen=True)
class Client:
    """A registered OAuth client.

    Implements the parts of authlib's ``ClientMixin`` that the client credentials grant,
    introspection and revocation use.

    Attributes:
        client_id: the client identifier.
        client_secret: the secret for ``client_secret_basic``/``client_secret_post``, or
            ``None`` if the client cannot use them.
        jwks: the public JWK Set that verifies ``private_key_jwt`` assertions, or ``None``.
        scopes: the scopes the client may ask for (all of them when it asks for none);
            ``None`` allows any scope and grants none by default.
        token_format: the kind of access token the token endpoint issues by default.
        audience: the ``aud`` of its tokens when the request names no resource/audience.
    """

    client_id: str
    client_secret: str | None = field(repr=False)
    jwks: Mapping[str, Any] | None
    scopes: frozenset[str] | None
    token_format: TokenFormat
    audience: str | tuple[str, ...] | None

    def get_client_id(self) -> str:
        """Return the client identifier (authlib ``ClientMixin``)."""
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        """Compare ``client_secret`` in constant time (authlib ``ClientMixin``)."""
        if self.client_secret is None:
            return False
        return secrets.compare_digest(self.client_secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Whether the client may authenticate with ``method`` (at any endpoint)."""
        if method in ("client_secret_basic", "client_secret_post"):
            return self.client_secret is not None
        return method == "private_key_jwt" and self.jwks is not None

    def check_grant_type(self, grant_type: str) -> bool:
        """Only the client credentials grant is supported (authlib ``ClientMixin``)."""
        return grant_type == "client_credentials"

    def allows_scopes(self, scopes: Iterable[str]) -> bool:
        """Whether every scope in ``scopes`` may be granted to this client."""
        return self.scopes is None or self.scopes.issuperset(scopes)

    def public_key_set(self) -> KeySet:
        """The client's JWK Set as a joserfc ``KeySet`` (for ``private_key_jwt``)."""
        if self.jwks is None:
            raise ValueError(f"client {self.client_id!r} has no registered JWKS")
        return KeySet.import_key_set(dict(self.jwks))  # type: ignore[arg-type]


class ClientRegistry:
    """Thread-safe client store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}

    def add(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        scopes: Iterable[str] | None = None,
        token_format: TokenFormat = "jwt",  # noqa: S107
        audience: str | Sequence[str] | None = DEFAULT_AUDIENCE,
    ) -> Client:
        """Register a client (see :meth:`tokenguard.testing.AuthServer.add_client`)."""
        if token_format not in TOKEN_FORMATS:
            raise ValueError(f"token_format must be one of {TOKEN_FORMATS}")
        if client_secret is None and jwks is None:
            client_secret = secrets.token_urlsafe(32)
        client = Client(
            client_id=client_id,
            client_secret=client_secret,
            jwks=jwks,
            scopes=None if scopes is None else frozenset(scopes),
            token_format=token_format,
            audience=audience if audience is None or isinstance(audience, str) else tuple(audience),
        )
        if jwks is not None:
            client.public_key_set()  # fail now, not at the first assertion
        with self._lock:
            if client_id in self._clients:
                raise ValueError(f"client {client_id!r} is already registered")
            self._clients[client_id] = client
        return client

    def get(self, client_id: str) -> Client | None:
        """Return the client registered as ``client_id``, if any."""
        with self._lock:
            return self._clients.get(client_id)
