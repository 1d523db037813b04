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

from .core.exchange import TlsIdentity

__all__ = [
    "BearerToken",
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretPost",
    "PrivateKeyJWT",
    "SelfSignedTlsClientAuth",
    "TlsClientAuth",
]


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

    @property
    def tls_identity(self) -> TlsIdentity | None:
        """The certificate the TLS handshake presents (mutual-TLS methods only)."""
        return None


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


class _MutualTls(_Auth):
    client_id: str = Field(min_length=1)
    certificate: str = Field(min_length=1, repr=False)
    private_key: str | None = Field(default=None, min_length=1, repr=False)
    private_key_password: SecretStr | None = None

    def __init__(
        self,
        client_id: str | None = None,
        certificate: str | os.PathLike[str] | None = None,
        private_key: str | os.PathLike[str] | None = None,
        /,
        **data: Any,
    ) -> None:
        super().__init__(
            **positional(
                data, client_id=client_id, certificate=certificate, private_key=private_key
            )
        )

    @model_validator(mode="before")
    @classmethod
    def _env(cls, data: Any) -> Any:
        if isinstance(data, dict):  # a pathlib.Path is as good as a string
            data = {
                name: os.fspath(value)
                if name in ("certificate", "private_key") and isinstance(value, os.PathLike)
                else value
                for name, value in data.items()
            }
        return secret_from_env(data, "private_key_password")

    @model_validator(mode="after")
    def _loads(self) -> _MutualTls:
        _check_loads(self.tls_identity)  # a pair that does not load is a configuration error
        return self

    @property
    def tls_identity(self) -> TlsIdentity:
        return self._identity

    @functools.cached_property
    def _identity(self) -> TlsIdentity:
        password = self.private_key_password
        return TlsIdentity(
            certfile=self.certificate,
            keyfile=self.private_key,
            password=password.get_secret_value() if password is not None else None,
        )

    def apply(self, form: dict[str, str], headers: dict[str, str], *, audience: str) -> None:
        # RFC 8705 §2: the client_id identifies the client; the handshake authenticates it.
        form["client_id"] = self.client_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r})"

    __str__ = __repr__


def _check_loads(identity: TlsIdentity) -> None:
    """Raise ValueError when the certificate and key do not load together; the message
    names the problem, never a path or anything read from the files."""
    import ssl

    problem = None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(identity.certfile, identity.keyfile, identity.password)
    except FileNotFoundError:
        problem = "the certificate or private_key file does not exist"
    except PermissionError:
        problem = "the certificate or private_key file cannot be read"
    except IsADirectoryError:
        problem = "the certificate or private_key path is a directory"
    except (ssl.SSLError, OSError, ValueError, TypeError):
        # OpenSSL reports a bad PEM, a key that does not match and a wrong password
        # alike; its message may quote the file: only the kind of problem is said.
        problem = (
            "the certificate and private_key do not load as a matching PEM pair "
            "(or private_key_password is wrong)"
        )
    if problem is not None:
        # Raised outside the handler, so OpenSSL's error is not kept as its context.
        raise ValueError(problem)


class TlsClientAuth(_MutualTls):
    """Mutual TLS with a certificate from a CA the authorization server trusts
    (RFC 8705 §2.1, ``tls_client_auth``).

    ``certificate`` is the path of a PEM file with the client certificate (and any
    intermediates after it); ``private_key`` the path of its PEM private key, or None
    when the certificate file holds the key too; ``private_key_password`` (or
    ``private_key_password_env`` in a file) decrypts an encrypted key. The files are
    read when the configuration is checked, and again once when the first request
    needs them; only ``client_id`` goes in the request body. When the authorization
    server publishes ``mtls_endpoint_aliases`` (RFC 8705 §5), a discovered introspection
    endpoint is replaced by its alias.
    """

    method: Literal["tls_client_auth"] = "tls_client_auth"

    # Repeated so type checkers see the positional form.
    def __init__(
        self,
        client_id: str | None = None,
        certificate: str | os.PathLike[str] | None = None,
        private_key: str | os.PathLike[str] | None = None,
        /,
        **data: Any,
    ) -> None:
        super().__init__(client_id, certificate, private_key, **data)


class SelfSignedTlsClientAuth(_MutualTls):
    """Mutual TLS with a self-signed certificate registered with the authorization
    server (RFC 8705 §2.2, ``self_signed_tls_client_auth``); configured as
    :class:`TlsClientAuth`."""

    method: Literal["self_signed_tls_client_auth"] = "self_signed_tls_client_auth"

    # Repeated so type checkers see the positional form.
    def __init__(
        self,
        client_id: str | None = None,
        certificate: str | os.PathLike[str] | None = None,
        private_key: str | os.PathLike[str] | None = None,
        /,
        **data: Any,
    ) -> None:
        super().__init__(client_id, certificate, private_key, **data)


ClientAuth = Annotated[
    ClientSecretBasic
    | ClientSecretPost
    | PrivateKeyJWT
    | BearerToken
    | TlsClientAuth
    | SelfSignedTlsClientAuth,
    Field(discriminator="method"),
]
