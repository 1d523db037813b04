"""The OAuth endpoints of the test authorization server, built on authlib's server side.

authlib supplies the protocol logic (client authentication registry, the client
credentials grant, RFC 7662 introspection, RFC 7009 revocation, RFC 7523 client
assertions); this module adapts it to :mod:`tokenguard.testing.transport` and adds the
discovery documents and the JWKS.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs, unquote_plus, urlsplit

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientCredentialsGrant,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8414 import get_well_known_url
from authlib.oidc.discovery import get_well_known_url as get_openid_configuration_url
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tokenguard.testing.clients import TOKEN_FORMATS, Client, ClientRegistry
from tokenguard.testing.keys import SUPPORTED_ALGORITHMS, KeyRing
from tokenguard.testing.tokens import TokenFactory, TokenRecord, TokenStore
from tokenguard.testing.transport import HTTPRequest, HTTPResponse

__all__ = ["ENDPOINTS", "OAuthApp", "Routes"]

#: Endpoint names, as used by the counters and the failure switches.
ENDPOINTS: Final = (
    "metadata",
    "openid_configuration",
    "jwks",
    "token",
    "introspection",
    "revocation",
)
_GET_ENDPOINTS: Final = frozenset({"metadata", "openid_configuration", "jwks"})
_PATHS: Final = {
    "jwks": "/jwks.json",
    "token": "/token",
    "introspection": "/introspect",
    "revocation": "/revoke",
}
_CLIENT_AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "private_key_jwt")
_JSON: Final = ("Content-Type", "application/json")
# Parameters that may repeat in a request (RFC 8707 §2: several resources).
_REPEATABLE: Final = frozenset({"resource"})
_MAX_PARAMETERS: Final = 100


@dataclass(frozen=True)
class Routes:
    """URLs and paths of the endpoints of one issuer."""

    issuer: str

    def url(self, endpoint: str) -> str:
        """The absolute URL of ``endpoint``."""
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}{self.path(endpoint)}"

    def path(self, endpoint: str) -> str:
        """The URL path of ``endpoint``."""
        if endpoint == "metadata":  # RFC 8414 §3.1: the issuer path follows the well-known part
            return str(get_well_known_url(self.issuer))
        if endpoint == "openid_configuration":
            return str(get_openid_configuration_url(self.issuer))
        return urlsplit(self.issuer).path.rstrip("/") + _PATHS[endpoint]

    def endpoint_for(self, path: str) -> str | None:
        """The endpoint served at ``path``, if any."""
        return next((name for name in ENDPOINTS if self.path(name) == path), None)


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: dict[str, list[str]]) -> None:
        self._params = params
        self._data = {name: values[0] for name, values in params.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._params


class _OAuth2Request(OAuth2Request):  # type: ignore[misc]
    """An authlib request made from a form-encoded POST."""

    def __init__(self, request: HTTPRequest, params: dict[str, list[str]]) -> None:
        super().__init__(request.method, request.url, headers=request.headers)
        self.payload = _Payload(params)

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


def _authenticate_client_secret_basic(query_client: Any, request: _OAuth2Request) -> Client | None:
    """``client_secret_basic`` with the RFC 6749 §2.3.1 form-urlencoding of id and secret.

    authlib's own version decodes with ``unquote``, which leaves ``+`` (an encoded space)
    undecoded, and fails on credentials that are not UTF-8.
    """
    scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        return None
    client: Client | None = query_client(unquote_plus(client_id))
    if client is not None and client.check_client_secret(unquote_plus(client_secret)):
        return client
    return None


class _ResourceServer:
    """The caller of the introspection endpoint authenticated with the bearer credential."""

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "bearer" and endpoint == "introspection"


class _BearerAuthentication:
    """Bearer-token authentication of a resource server at the introspection endpoint."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def __call__(self, query_client: Any, request: _OAuth2Request) -> _ResourceServer | None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip().encode(), self._token
        ):
            return _ResourceServer()
        return None


class _PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 ``private_key_jwt``, verified against the client's registered JWKS."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audiences: list[str]) -> None:
        super().__init__(validate_jti=True)
        self._audiences = audiences
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def get_audiences(self) -> list[str]:
        return self._audiences

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        with self._lock:
            if (claims["sub"], jti) in self._seen:
                return False
            self._seen.add((claims["sub"], jti))
            return True

    def resolve_client_public_key(self, client: Client) -> KeySet:
        try:
            return client.public_key_set()
        except ValueError:
            raise InvalidClientError(description="The client has no registered JWKS.") from None

    def process_assertion_claims(self, assertion: str, resolve_key: KeySet) -> dict[str, Any]:
        # Same as authlib's, but allowing every asymmetric algorithm, not just
        # joserfc's "recommended" RS256/ES256.
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=SUPPORTED_ALGORITHMS)
        except JoseError:
            raise InvalidClientError(description="The client assertion is invalid.") from None
        self.verify_claims(token.claims)
        return token.claims


def _presented_auth_methods(request: _OAuth2Request) -> list[str]:
    scheme = (request.headers.get("Authorization") or "").partition(" ")[0].lower()
    return [
        method
        for method, present in (
            ("client_secret_basic", scheme == "basic"),
            ("bearer", scheme == "bearer"),
            ("client_secret_post", "client_secret" in request.form),
            ("private_key_jwt", "client_assertion" in request.form),
        )
        if present
    ]


class _AuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's framework-agnostic server bound to this package's request/response types."""

    def __init__(
        self,
        clients: ClientRegistry,
        factory: TokenFactory,
        store: TokenStore,
        on_client_auth: Callable[[str, str], None],
    ) -> None:
        super().__init__()
        self.clients = clients
        self.factory = factory
        self.store = store
        self._on_client_auth = on_client_auth

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def create_oauth2_request(self, request: _OAuth2Request) -> _OAuth2Request:
        # OAuthApp adapts requests before they reach authlib.
        return request

    def handle_response(
        self, status: int, body: Any, headers: Iterable[tuple[str, str]]
    ) -> HTTPResponse:
        return HTTPResponse(status, tuple(headers), json.dumps(body).encode())

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Nothing subscribes to authlib's signals."""

    def authenticate_client(
        self, request: _OAuth2Request, methods: list[str], endpoint: str = "token"
    ) -> Any:
        # RFC 6749 §2.3: a client MUST NOT use more than one authentication method.
        if len(_presented_auth_methods(request)) > 1:
            raise InvalidRequestError("More than one client authentication method was used.")
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as exc:
            # RFC 7662 §2.3 wants 401 whatever the method; authlib answers 400 for
            # an unknown client unless it came with HTTP Basic.
            raise InvalidClientError(
                status_code=401, description="Client authentication failed."
            ) from exc
        self._on_client_auth(endpoint, request.auth_method)
        return client


class _ClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """The client credentials grant with RFC 8707 ``resource``, ``audience`` and
    ``token_format`` request parameters."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(_CLIENT_AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        client: Client = self.request.client
        requested = (self.request.payload.scope or "").split()
        if not client.allows_scopes(requested):
            raise InvalidScopeError()

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        # Replaces authlib's version, which mints through a token generator that cannot
        # see the request (so no resource/audience) and logs the token at debug level.
        client: Client = self.request.client
        params: dict[str, list[str]] = self.request.payload.datalist
        requested = dict.fromkeys((self.request.payload.scope or "").split())
        scopes = list(requested) or sorted(client.scopes or ())
        token_format = params.get("token_format", [client.token_format])[0]
        if token_format not in TOKEN_FORMATS:
            raise InvalidRequestError(f"token_format must be one of {', '.join(TOKEN_FORMATS)}.")
        factory: TokenFactory = self.server.factory
        mint = factory.jwt if token_format == "jwt" else factory.opaque  # noqa: S105
        token = mint(
            subject=client.client_id,
            scopes=scopes,
            audience=_audience(params, client),
            client_id=client.client_id,
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": factory.default_lifetime,
        }
        if scopes:
            body["scope"] = " ".join(scopes)
        return 200, body, self.TOKEN_RESPONSE_HEADER


def _audience(params: dict[str, list[str]], client: Client) -> str | Sequence[str] | None:
    """The ``aud`` of a token request: its resources, else its audience, else the client's."""
    resources, audiences = params.get("resource", []), params.get("audience", [])
    if resources and audiences:
        raise InvalidRequestError("Use either resource or audience, not both.")
    for resource in resources:
        parts = urlsplit(resource)
        if not parts.scheme or parts.fragment:
            raise OAuth2Error(
                error="invalid_target",
                description="A resource must be an absolute URI without a fragment.",
            )
    if resources:
        return resources[0] if len(resources) == 1 else resources
    if audiences:
        return audiences[0]
    return client.audience


class _IntrospectionEndpoint(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*_CLIENT_AUTH_METHODS, "bearer"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.store.get(token_string)  # type: ignore[no-any-return]

    def check_permission(self, token: TokenRecord, client: Any, request: Any) -> bool:
        return True  # any authenticated client or resource server may introspect

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        return token.introspection()


class _RevocationEndpoint(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(_CLIENT_AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.store.get(token_string)  # type: ignore[no-any-return]

    def revoke_token(self, token: TokenRecord, request: _OAuth2Request) -> None:
        self.server.store.revoke(request.form["token"])


class OAuthApp:
    """Answers requests to the endpoints of one issuer (no HTTP plumbing, no switches)."""

    def __init__(
        self,
        *,
        routes: Routes,
        keyring: KeyRing,
        clients: ClientRegistry,
        store: TokenStore,
        factory: TokenFactory,
        jwks_max_age: int,
        introspection_bearer_token: str,
        on_client_auth: Callable[[str, str], None],
    ) -> None:
        self._routes = routes
        self._keyring = keyring
        self._jwks_max_age = jwks_max_age
        self._server = _AuthorizationServer(clients, factory, store, on_client_auth)
        self._server.register_grant(_ClientCredentialsGrant)
        self._server.register_endpoint(_IntrospectionEndpoint)
        self._server.register_endpoint(_RevocationEndpoint)
        self._server.register_client_auth_method(
            "client_secret_basic", _authenticate_client_secret_basic
        )
        audiences = [
            routes.issuer,
            *(routes.url(e) for e in ("token", "introspection", "revocation")),
        ]
        self._server.register_client_auth_method("private_key_jwt", _PrivateKeyJWT(audiences))
        self._server.register_client_auth_method(
            "bearer", _BearerAuthentication(introspection_bearer_token)
        )

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 metadata document (also served as the OpenID configuration)."""
        algorithms = list(SUPPORTED_ALGORITHMS)
        document: dict[str, Any] = {
            "issuer": self._routes.issuer,
            "jwks_uri": self._routes.url("jwks"),
            "token_endpoint": self._routes.url("token"),
            "introspection_endpoint": self._routes.url("introspection"),
            "revocation_endpoint": self._routes.url("revocation"),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
        }
        for endpoint in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
            document[f"{endpoint}_auth_methods_supported"] = list(_CLIENT_AUTH_METHODS)
            document[f"{endpoint}_auth_signing_alg_values_supported"] = algorithms
        return document

    def handle(self, endpoint: str, request: HTTPRequest) -> HTTPResponse:
        """Answer ``request``, addressed to ``endpoint`` (one of :data:`ENDPOINTS`)."""
        method = "GET" if endpoint in _GET_ENDPOINTS else "POST"
        if request.method != method:
            return HTTPResponse(
                HTTPStatus.METHOD_NOT_ALLOWED,
                (_JSON, ("Allow", method)),
                b'{"error":"method_not_allowed"}',
            )
        if endpoint == "jwks":
            headers = (_JSON, ("Cache-Control", f"max-age={self._jwks_max_age}"))
            return HTTPResponse(200, headers, json.dumps(self._keyring.jwks()).encode())
        if endpoint in _GET_ENDPOINTS:
            return HTTPResponse(200, (_JSON,), json.dumps(self.metadata()).encode())
        response: HTTPResponse
        try:
            oauth_request = _OAuth2Request(request, _form(request))
        except InvalidRequestError as error:
            response = self._server.handle_error_response(None, error)
        else:
            if endpoint == "token":
                response = self._server.create_token_response(oauth_request)
            else:
                response = self._server.create_endpoint_response(endpoint, oauth_request)
        return response


def _form(request: HTTPRequest) -> dict[str, list[str]]:
    """Parse a form-encoded body strictly (RFC 6749 §3.2: no repeated parameters)."""
    if request.headers.get_content_type() != "application/x-www-form-urlencoded":
        raise InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    try:
        params = parse_qs(
            request.body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(request.body),  # strict parsing refuses an empty body
            max_num_fields=_MAX_PARAMETERS,
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("The body is not a valid form.") from None
    if any(len(values) > 1 and name not in _REPEATABLE for name, values in params.items()):
        raise InvalidRequestError("Request parameters must not be repeated.")
    return params
