"""How the resource server authenticates to the introspection endpoint (RFC 7662 §2.1).

Each method adds its credentials to the form fields and headers of a request that is
otherwise already built. No I/O. Secrets are ``SecretStr`` so they never show in a repr.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["BearerToken", "ClientAuth", "ClientSecretBasic", "ClientSecretPost", "PrivateKeyJWT"]


def secret_from_env(data: Any, field: str) -> Any:
    """Config files may name an environment variable (``<field>_env``) instead of a secret."""
    if isinstance(data, dict) and f"{field}_env" in data:
        data = dict(data)
        name = data.pop(f"{field}_env")
        if field in data:
            raise ValueError(f"give either {field} or {field}_env, not both")
        # Neither the variable's value nor its name is echoed: a secret pasted into
        # the *_env field by mistake would otherwise end up in the error.
        if not isinstance(name, str) or not name or name not in os.environ:
            raise ValueError(f"the environment variable named by {field}_env is not set")
        value = os.environ[name]
        if not value:
            raise ValueError(f"the environment variable named by {field}_env is empty")
        data[field] = value
    return data


def positional(data: dict[str, Any], **given: Any) -> dict[str, Any]:
    """Merge positional constructor arguments (those given) into keyword data."""
    return {**data, **{name: value for name, value in given.items() if value is not None}}


class _Auth(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    def apply(self, form: dict[str, str], headers: dict[str, str], *, audience: str) -> None:
        """Add this method's credentials to an introspection request."""
        raise NotImplementedError


class _ClientSecret(_Auth):
    client_id: str = Field(min_length=1)
    client_secret: SecretStr

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        /,
        **data: Any,
    ) -> None:
        super().__init__(**positional(data, client_id=client_id, client_secret=client_secret))

    @model_validator(mode="before")
    @classmethod
    def _env(cls, data: Any) -> Any:
        return secret_from_env(data, "client_secret")


class ClientSecretBasic(_ClientSecret):
    """HTTP Basic with the client id and secret, each form-urlencoded first
    (RFC 6749 §2.3.1)."""

    method: Literal["client_secret_basic"] = "client_secret_basic"

    # Repeated so type checkers see the positional form (pydantic synthesises __init__
    # for every class that declares fields).
    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        /,
        **data: Any,
    ) -> None:
        super().__init__(client_id, client_secret, **data)

    def apply(self, form: dict[str, str], headers: dict[str, str], *, audience: str) -> None:
        headers["Authorization"] = self._authorization

    @functools.cached_property
    def _authorization(self) -> str:
        # Made once per client rather than per introspection, and kept by this object
        # only (not in a process-wide cache that would outlive it).
        user = quote_plus(self.client_id)
        password = quote_plus(self.client_secret.get_secret_value())
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class ClientSecretPost(_ClientSecret):
    """Client id and secret in the request body (RFC 6749 §2.3.1)."""

    method: Literal["client_secret_post"] = "client_secret_post"

    # Repeated so type checkers see the positional form (pydantic synthesises __init__
    # for every class that declares fields).
    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        /,
        **data: Any,
    ) -> None:
        super().__init__(client_id, client_secret, **data)

    def apply(self, form: dict[str, str], headers: dict[str, str], *, audience: str) -> None:
        form["client_id"] = self.client_id
        form["client_secret"] = self.client_secret.get_secret_value()


class PrivateKeyJWT(_Auth):
    """A client assertion JWT signed with the client's private key (RFC 7523 §2.2).

    ``private_key`` is a PEM string. The assertion's ``aud`` is ``audience`` if set,
    else the authorization server's issuer identifier; it lives ``assertion_lifetime``
    seconds and carries a fresh ``jti``. Signing is done by authlib.
    """

    method: Literal["private_key_jwt"] = "private_key_jwt"
    client_id: str = Field(min_length=1)
    private_key: SecretStr
    algorithm: Literal[
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
    ] = "RS256"
    kid: str | None = None
    audience: str | None = None
    assertion_lifetime: int = Field(default=60, ge=10, le=600)

    def __init__(
        self,
        client_id: str | None = None,
        private_key: str | SecretStr | None = None,
        /,
        **data: Any,
    ) -> None:
        super().__init__(**positional(data, client_id=client_id, private_key=private_key))

    @model_validator(mode="before")
    @classmethod
    def _env(cls, data: Any) -> Any:
        return secret_from_env(data, "private_key")

    @model_validator(mode="after")
    def _loads(self) -> PrivateKeyJWT:
        self._signing_key  # noqa: B018 - a key that does not load is a configuration error
        return self

    @functools.cached_property
    def _signing_key(self) -> Any:
        from joserfc.jwk import ECKey, OKPKey, RSAKey

        family: type[RSAKey] | type[ECKey] | type[OKPKey] = OKPKey
        if self.algorithm[0] in "RP":
            family = RSAKey
        elif self.algorithm[0] == "E" and self.algorithm != "EdDSA":
            family = ECKey
        key = None
        with contextlib.suppress(Exception):  # joserfc raises several types for a bad key
            key = family.import_key(self.private_key.get_secret_value())
        if key is None:
            # Raised outside the handler, so joserfc's error (and whatever of the key it
            # holds) is not kept as this one's context.
            raise ValueError(f"private_key is not a usable {family.key_type} private key")
        if not key.is_private:
            raise ValueError("private_key must be a private key")
        return key

    def apply(self, form: dict[str, str], headers: dict[str, str], *, audience: str) -> None:
        from authlib.oauth2.rfc7523 import private_key_jwt_sign

        header = {"kid": self.kid} if self.kid else None
        assertion = private_key_jwt_sign(
            self._signing_key,
            self.client_id,
            self.audience or audience,
            alg=self.algorithm,
            header=header,
            expires_in=self.assertion_lifetime,
        )
        form["client_id"] = self.client_id
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        if isinstance(assertion, bytes):
            assertion = assertion.decode("ascii")
        form["client_assertion"] = str(assertion)


class BearerToken(_Auth):
    """A bearer credential for the introspection endpoint (RFC 7662 §2.1 allows any)."""

    method: Literal["bearer"] = "bearer"
    token: SecretStr

    def __init__(self, token: str | SecretStr | None = None, /, **data: Any) -> None:
        super().__init__(**positional(data, token=token))

    @model_validator(mode="before")
    @classmethod
    def _env(cls, data: Any) -> Any:
        return secret_from_env(data, "token")

    def apply(self, form: dict[str, str], headers: dict[str, str], *, audience: str) -> None:
        headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"


ClientAuth = Annotated[
    ClientSecretBasic | ClientSecretPost | PrivateKeyJWT | BearerToken,
    Field(discriminator="method"),
]
