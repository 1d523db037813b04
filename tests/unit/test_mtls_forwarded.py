"""The client certificate a TLS-terminating proxy forwards in a header (RFC 8705 behind
a proxy): :func:`tokenguard.core.mtls.forwarded_certificate` reads the forms proxies send
(RFC 9440 ``Client-Cert``, nginx, Traefik, Envoy XFCC) to the DER bytes, and gives None
for anything else: junk, an oversized value, or two certificates where one was expected."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tokenguard.core.mtls import (
    MAX_FORWARDED_CERTIFICATE,
    certificate_thumbprint,
    forwarded_certificate,
)

from ..security import forge


@pytest.fixture(scope="module")
def certificate() -> x509.Certificate:
    return forge.self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "client")


@pytest.fixture(scope="module")
def other() -> x509.Certificate:
    return forge.self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "other")


def _forms(certificate: x509.Certificate) -> dict[str, str]:
    der = certificate.public_bytes(Encoding.DER)
    pem = certificate.public_bytes(Encoding.PEM).decode()
    escaped = quote(pem, safe="")
    body = "".join(pem.strip().splitlines()[1:-1])  # PEM without delimiters: base64 DER
    return {
        "rfc9440": f":{base64.b64encode(der).decode()}:",
        "nginx": escaped,  # $ssl_client_escaped_cert
        "pem": pem,
        "traefik": quote(body, safe=""),
        "traefik-unescaped": body,
        "envoy": f'By=spiffe://mesh/ns/a/sa/b;Hash=9ab1;Cert="{escaped}";'
        'Subject="CN=client,O=Example, Inc.";URI=spiffe://mesh/ns/c/sa/d',
        "envoy-unquoted": f"Hash=9ab1;Cert={escaped}",
        # Two hops (APPEND_FORWARD): the last element is the nearest proxy's.
        "envoy-two-hops": f'By=x;Cert="{quote("junk")}",By=y;Hash=1;Cert="{escaped}"',
    }


@pytest.mark.parametrize(
    "form",
    [
        "rfc9440",
        "nginx",
        "pem",
        "traefik",
        "traefik-unescaped",
        "envoy",
        "envoy-unquoted",
        "envoy-two-hops",
    ],
)
def test_each_form_reads_to_the_der(certificate: x509.Certificate, form: str) -> None:
    value = _forms(certificate)[form]
    der = forwarded_certificate(value)
    assert der == certificate.public_bytes(Encoding.DER)
    assert certificate_thumbprint(der) == certificate_thumbprint(certificate)
    assert forwarded_certificate(f"  {value}\t") == der  # optional whitespace around


def test_two_certificates_are_none(certificate: x509.Certificate, other: x509.Certificate) -> None:
    """The same header sent twice and joined by the server (RFC 9110 §5.3), a PEM with
    two blocks, a Traefik chain: which one is the client's cannot be told, so none."""
    mine, theirs = _forms(certificate), _forms(other)
    for form in ("rfc9440", "nginx", "pem", "traefik"):
        assert forwarded_certificate(f"{theirs[form]}, {mine[form]}") is None, form
        assert forwarded_certificate(f"{mine[form]},{theirs[form]}") is None, form
    pems = certificate.public_bytes(Encoding.PEM) + other.public_bytes(Encoding.PEM)
    assert forwarded_certificate(pems.decode()) is None
    assert forwarded_certificate(quote(pems.decode(), safe="")) is None
    # One XFCC element naming Cert twice.
    twice = f'Cert="{quote(mine["pem"])}";cert="{quote(theirs["pem"])}"'
    assert forwarded_certificate(twice) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "hello",
        ":aGVsbG8=:",  # a byte sequence that is no DER
        ":not base64:",
        "::",
        base64.b64encode(b"\x30\x05abc").decode(),  # DER framing that does not add up
        base64.b64encode(b"\x02\x01\x01").decode(),  # an INTEGER, not a SEQUENCE
        "%ff%fe%00",  # not UTF-8 once decoded
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        'Hash=abc;Subject="CN=x"',  # XFCC without Cert
        'Hash=abc;Cert="%ZZ"',
        'Hash=abc;Cert="%ff%fe"',  # not UTF-8 once decoded
        base64.b64encode(b"\x30\x80" + b"\x00" * 8).decode(),  # BER indefinite length
        base64.b64encode(b"\x30\x81\x05abcde").decode(),  # long form for a short length
        'Cert="abc',  # unterminated quote
        "By=a;;Cert=b",
    ],
)
def test_junk_is_none(value: str | None) -> None:
    assert forwarded_certificate(value) is None


def test_oversized_values_are_not_read(certificate: x509.Certificate) -> None:
    pem = _forms(certificate)["pem"]
    padded = pem + " " * (MAX_FORWARDED_CERTIFICATE - len(pem))
    assert forwarded_certificate(padded) == certificate.public_bytes(Encoding.DER)
    assert forwarded_certificate(padded + " ") is None
    # A huge byte sequence, well framed as DER, is not a client certificate either.
    big = b"\x30\x82" + (20_000).to_bytes(2, "big") + b"\x00" * 20_000
    assert forwarded_certificate(f":{base64.b64encode(big).decode()}:") is None


def test_last_envoy_element_without_a_cert_is_none(certificate: x509.Certificate) -> None:
    """Only the nearest proxy's element counts: an earlier one's Cert is not taken."""
    escaped = _forms(certificate)["nginx"]
    assert forwarded_certificate(f'Cert="{escaped}",By=spiffe://x;Hash=1') is None
