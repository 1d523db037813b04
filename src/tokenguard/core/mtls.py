"""Certificate-bound access tokens (RFC 8705 §3). No I/O.

The token's ``cnf["x5t#S256"]`` is the base64url SHA-256 of the DER encoding of the
client certificate it was issued to; the request's client certificate (from the TLS
layer, or a proxy header the deployment trusts) must hash to the same value.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from ..errors import InvalidTokenBinding
from .dpop import b64url_encode

if TYPE_CHECKING:
    from typing import TypeAlias

    from cryptography import x509

    #: A client certificate as callers hold it: PEM text or bytes, DER bytes, or a
    #: parsed one.
    ClientCertificate: TypeAlias = str | bytes | x509.Certificate

__all__ = ["ClientCertificate", "certificate_thumbprint", "matches_certificate"]


def __getattr__(name: str) -> Any:
    # cryptography.x509 is imported when a certificate is first read, not by
    # ``import tokenguard`` (issue 10 §4); the alias is built on demand the same way.
    if name == "ClientCertificate":
        from cryptography import x509

        return str | bytes | x509.Certificate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def certificate_thumbprint(certificate: ClientCertificate) -> str:
    """``x5t#S256`` of a certificate. Raises :class:`InvalidTokenBinding` if it is not
    one (the first of a PEM chain counts)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        if isinstance(certificate, x509.Certificate):
            der = certificate.public_bytes(Encoding.DER)
        else:
            data = certificate.encode("ascii") if isinstance(certificate, str) else certificate
            if data.lstrip().startswith(b"-----BEGIN"):
                der = x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
            else:
                x509.load_der_x509_certificate(data)  # it must be a certificate
                der = bytes(data)
    except (ValueError, TypeError, UnicodeError):
        raise InvalidTokenBinding("The client certificate could not be read") from None
    return b64url_encode(hashlib.sha256(der).digest())


def matches_certificate(x5t: str, certificate: ClientCertificate) -> bool:
    """Whether ``certificate`` is the one a token's ``x5t#S256`` names."""
    return hmac.compare_digest(x5t.encode(), certificate_thumbprint(certificate).encode())
