"""The three forward-auth contracts: how each proxy tells the gateway about the request
it is deciding on, read into plain values.

- ``/nginx``: nginx ``auth_request``. The subrequest's own method and URI are the
  gateway's; the original ones come in ``X-Original-Method`` and ``X-Original-URI``
  (``$request_uri``), the host in ``X-Original-Host`` and the scheme in
  ``X-Original-Proto``, all set by the nginx configuration.
- ``/traefik``: Traefik ForwardAuth. ``X-Forwarded-Method``, ``-Proto``, ``-Host`` and
  ``-Uri``; the auth request's own method is GET unless Traefik is told to preserve it,
  so it is never used.
- ``/envoy/``: Envoy ``ext_authz`` (HTTP service). The original path follows the
  service path (``path_prefix``); the method is the original one; the host is the
  ``Host`` header; the scheme is ``X-Forwarded-Proto`` (allowed explicitly).

Every contract also reads ``Authorization``, ``DPoP`` and the client certificate header
of its proxy. A header the contract needs that is missing means the proxy is
misconfigured (500); one that is repeated is refused (400).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..core.mtls import forwarded_certificate
from ..errors import ConfigurationError, InvalidRequest

__all__ = ["CONTRACTS", "Contract", "Forwarded", "decode_certificate"]

_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A host, with an optional port (RFC 3986 §3.2.2): nothing that ends the authority.
_HOST = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The original request, as plain values."""

    method: str
    target: str  # the request target: path and query, undecoded
    host: str | None
    scheme: str | None
    authorization: str | None
    dpop: str | None
    client_cert: str | None  # as the proxy sent it; see decode_certificate

    def url(self) -> str | None:
        """The absolute URL the client addressed, without query (DPoP ``htu``), or None
        when the proxy did not say the scheme and host."""
        scheme = (self.scheme or "").strip().lower()
        host = (self.host or "").strip()
        if scheme not in ("http", "https") or not _HOST.fullmatch(host):
            return None
        path = self.target.split("?", 1)[0].split("#", 1)[0]
        if path.startswith(("http://", "https://")):
            # An absolute-form request target names an origin the client chose: only
            # its path counts, as for route matching; the origin is the proxy's.
            rest = path.split("://", 1)[1]
            slash = rest.find("/")
            path = rest[slash:] if slash >= 0 else "/"
        return f"{scheme}://{host}{path}"


@dataclass(frozen=True, slots=True)
class Contract:
    """Which headers carry the original request for one kind of proxy."""

    name: str
    method: bytes | None  # None: the auth request's own method is the original one
    target: bytes | None  # None: the path after the contract's prefix is the original one
    host: bytes
    scheme: bytes
    client_cert: bytes
    status_header: bool  # also send X-Tokenguard-Status on a denial (nginx)
    _wanted: dict[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        wanted = {
            self.method: "method",
            self.target: "target",
            self.host: "host",
            self.scheme: "scheme",
            self.client_cert: "client_cert",
            b"authorization": "authorization",
            b"dpop": "dpop",
        }
        object.__setattr__(
            self, "_wanted", {name: f for name, f in wanted.items() if name is not None}
        )

    def read(
        self, headers: Iterable[tuple[bytes, bytes]], own_method: str, own_target: str | None
    ) -> Forwarded:
        """Read the original request from the auth request's headers."""
        wanted = self._wanted
        found: dict[str, str] = {}
        for name, value in headers:
            field = wanted.get(name)
            if field is None:
                continue
            if field in found:
                raise InvalidRequest(f"The request carries more than one {_TITLES[field]} header")
            found[field] = value.decode("latin-1")
        method = found.get("method") if self.method is not None else own_method
        target = found.get("target") if self.target is not None else own_target
        if not method or not target:
            raise ConfigurationError(
                f"the proxy did not send the original method and URI ({self.name} contract)"
            )
        if not _METHOD.fullmatch(method):
            raise InvalidRequest("The request method is malformed")
        return Forwarded(
            method=method.upper(),
            target=target,
            host=found.get("host"),
            scheme=found.get("scheme"),
            authorization=found.get("authorization"),
            dpop=found.get("dpop"),
            client_cert=found.get("client_cert"),
        )


_TITLES = {
    "method": "original method",
    "target": "original URI",
    "host": "original host",
    "scheme": "original scheme",
    "client_cert": "client certificate",
    "authorization": "Authorization",
    "dpop": "DPoP",
}

NGINX = Contract(
    name="nginx",
    method=b"x-original-method",
    target=b"x-original-uri",
    host=b"x-original-host",
    scheme=b"x-original-proto",
    client_cert=b"x-client-cert",
    status_header=True,
)
TRAEFIK = Contract(
    name="traefik",
    method=b"x-forwarded-method",
    target=b"x-forwarded-uri",
    host=b"x-forwarded-host",
    scheme=b"x-forwarded-proto",
    client_cert=b"x-forwarded-tls-client-cert",
    status_header=False,
)
ENVOY = Contract(
    name="envoy",
    method=None,
    target=None,
    host=b"host",
    scheme=b"x-forwarded-proto",
    client_cert=b"x-forwarded-client-cert",
    status_header=False,
)


def decode_certificate(contract: Contract, value: str | None) -> bytes | None:
    """The client certificate a proxy forwarded, as DER bytes (None if there is none,
    or it cannot be read: a certificate-bound token then fails).

    nginx: ``$ssl_client_escaped_cert`` (URL-encoded PEM). Traefik (passTLSClientCert,
    ``pem: true``): URL-encoded PEM without its delimiters, that is base64 DER. Envoy:
    ``X-Forwarded-Client-Cert``, the last element's ``Cert="..."`` (URL-encoded PEM).
    Each contract's header may also carry the RFC 9440 ``Client-Cert`` form; all are
    read by :func:`tokenguard.core.mtls.forwarded_certificate`, the adapters' reader.
    """
    return forwarded_certificate(value)


#: The contracts by the path they are served on (Envoy's takes the original path after it).
CONTRACTS = {"/nginx": NGINX, "/traefik": TRAEFIK, "/envoy": ENVOY}
