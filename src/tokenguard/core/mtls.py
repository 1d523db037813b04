"""Certificate-bound access tokens (RFC 8705 §3). No I/O.

The token's ``cnf["x5t#S256"]`` is the base64url SHA-256 of the DER encoding of the
client certificate it was issued to; the request's client certificate (from the TLS
layer, or a proxy header the deployment trusts) must hash to the same value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from ..errors import InvalidTokenBinding
from .dpop import b64url_encode

if TYPE_CHECKING:
    from typing import TypeAlias

    from cryptography import x509

    #: A client certificate as callers hold it: PEM text or bytes, DER bytes, or a
    #: parsed one.
    ClientCertificate: TypeAlias = str | bytes | x509.Certificate

__all__ = [
    "MAX_FORWARDED_CERTIFICATE",
    "ClientCertificate",
    "certificate_thumbprint",
    "forwarded_certificate",
    "matches_certificate",
]

#: The longest certificate header value read (characters); a longer one is not read.
#: A leaf certificate with an RSA-4096 key is about 1.5 KB of DER, 5 KB URL-encoded PEM;
#: an Envoy XFCC element may add the chain.
MAX_FORWARDED_CERTIFICATE: Final = 32 * 1024
# The decoded certificate (DER): larger is not a client certificate.
_MAX_DER: Final = 16 * 1024
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# RFC 9440 §2.1 (RFC 8941 §3.3.5): an sf-binary, ":" base64 ":", without parameters.
_SF_BINARY = re.compile(r":([A-Za-z0-9+/]+={0,2}):")
# Exactly one PEM certificate block (RFC 7468 §2, lax whitespace), nothing around it.
_PEM = re.compile(r"\s*-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----\s*")
# An Envoy XFCC element's key=value pairs: a quoted value may hold ; and , (escaped ").
_XFCC_PAIR = re.compile(r'\s*([A-Za-z]+)=("[^"\\]*(?:\\.[^"\\]*)*"|[^;,"]*)\s*')


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


def forwarded_certificate(value: str | None) -> bytes | None:
    """The DER client certificate in a header set by a TLS-terminating proxy, or None
    when there is none or it cannot be read (a certificate-bound token then fails as
    without a certificate). No I/O; the value is bounded
    (:data:`MAX_FORWARDED_CERTIFICATE`).

    The form is recognised from the value:

    * RFC 9440 ``Client-Cert``: a structured-field byte sequence, ``:<base64 DER>:``;
    * nginx ``$ssl_client_escaped_cert``: URL-encoded PEM (plain PEM too);
    * Traefik ``passTLSClientCert`` (``pem: true``): URL-encoded base64 DER, the PEM
      without its delimiters;
    * Envoy ``X-Forwarded-Client-Cert``: the ``Cert="<URL-encoded PEM>"`` of the last
      element (the one the nearest proxy added).

    Anything that is not exactly one certificate gives None: two PEM blocks, two byte
    sequences or a comma-separated list (a Traefik chain, or the same header sent twice
    and joined by the server) are ambiguous and not read. Only the DER framing is
    checked here; the guard parses the certificate when a token is bound to one.
    """
    if not value or len(value) > MAX_FORWARDED_CERTIFICATE:
        return None
    text = value.strip()
    if text.startswith(":"):
        match = _SF_BINARY.fullmatch(text)
        return _der(match.group(1)) if match else None
    if "=" in text and not text.startswith("-----") and _is_xfcc(text):
        text = _xfcc_certificate(text) or ""
    elif "%" in text:
        try:
            text = unquote(text, errors="strict")
        except UnicodeDecodeError:
            return None
    if "-----" in text:
        match = _PEM.fullmatch(text)
        return _der("".join(match.group(1).split())) if match else None
    return _der("".join(text.split())) if text else None


def _is_xfcc(text: str) -> bool:
    return _XFCC_PAIR.match(text) is not None and not _BASE64.fullmatch(text)


def _xfcc_certificate(text: str) -> str | None:
    """The URL-decoded ``Cert`` of the last element of an XFCC value."""
    pairs: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _XFCC_PAIR.match(text, position)
        if match is None:
            return None
        key, raw = match.group(1).lower(), match.group(2)
        position = match.end()
        if key in pairs:
            return None  # the same key twice in one element: ambiguous
        pairs[key] = raw
        separator = text[position : position + 1]
        if separator not in ("", ";", ","):
            return None
        if separator == ",":
            pairs = {}  # a new element: only the last one counts
        position += 1
    cert = pairs.get("cert")
    if cert is None:
        return None
    if cert.startswith('"'):
        cert = re.sub(r"\\(.)", r"\1", cert[1:-1])
    try:
        return unquote(cert, errors="strict")
    except UnicodeDecodeError:
        return None


def _der(text: str) -> bytes | None:
    """Base64 (standard alphabet, padding optional) that decodes to one DER SEQUENCE."""
    if not _BASE64.fullmatch(text) or len(text) > _MAX_DER * 4 // 3 + 4:
        return None
    try:
        der = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return der if _one_sequence(der) else None


def _one_sequence(der: bytes) -> bool:
    """Whether ``der`` is exactly one DER SEQUENCE with a definite length (what a
    certificate is at the outside)."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return len(der) == 2 + first
    count = first & 0x7F
    if count == 0 or count > 3 or len(der) < 2 + count:
        return False
    length = int.from_bytes(der[2 : 2 + count], "big")
    return length >= 0x80 and len(der) == 2 + count + length
