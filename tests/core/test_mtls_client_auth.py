"""Mutual-TLS client authentication to the introspection endpoint (RFC 8705 §2, §5):
``TlsClientAuth`` / ``SelfSignedTlsClientAuth`` against a real TLS server on loopback
that asks for a client certificate, through both of tokenguard's own clients."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tokenguard import (
    ConfigurationError,
    Issuer,
    Policy,
    SelfSignedTlsClientAuth,
    TlsClientAuth,
    TokenGuard,
    ValidationUnavailable,
)
from tokenguard.core.exchange import HttpRequest, HttpResponse
from tokenguard.shells import transport
from tokenguard.shells.stdlib_client import StdlibClient

from ..conftest import Driver

AUDIENCE = "urn:mtls-api"
CLIENT_ID = "rs-mtls"
TOKEN = "opaque-mtls-token-0123456789"
PASSWORD = "key-password-never-shown"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, server: bool = False
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # What OpenSSL's strict verification asks for (Python 3.13's default context sets
        # VERIFY_X509_STRICT): key identifiers and a key usage fitting the role.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password is not None:
        encryption = serialization.BestAvailableEncryption(password.encode())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


class Pki:
    """A CA that issued the server's certificate and the good client's; another client
    certificate from a CA the server does not trust; all as files."""

    def __init__(self, folder: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("test CA", ca_key, "test CA", ca_key, ca=True)
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(_pem(ca))
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _certificate("127.0.0.1", server_key, "test CA", ca_key, ca=False, server=True)
        self.server_cert = folder / "server.pem"
        self.server_cert.write_bytes(_pem(server))
        self.server_key = folder / "server-key.pem"
        self.server_key.write_bytes(_key_pem(server_key))
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _certificate("rs-mtls", client_key, "test CA", ca_key, ca=False)
        self.client_der = client.public_bytes(serialization.Encoding.DER)
        self.client_cert = folder / "client.pem"
        self.client_cert.write_bytes(_pem(client))
        self.client_key = folder / "client-key.pem"
        self.client_key.write_bytes(_key_pem(client_key, PASSWORD))
        # The certificate and its (unencrypted) key in one file.
        self.client_combined = folder / "client-combined.pem"
        self.client_combined.write_bytes(_pem(client) + _key_pem(client_key))
        other_key = ec.generate_private_key(ec.SECP256R1())
        other = _certificate("intruder", other_key, "intruder", other_key, ca=True)
        self.other_cert = folder / "other.pem"
        self.other_cert.write_bytes(_pem(other) + _key_pem(other_key))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MtlsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/.well-known/oauth-authorization-server":
            base = self.server.base_url
            self._send(
                200,
                {
                    "issuer": base,
                    "introspection_endpoint": base + "/plain-introspect",
                    "mtls_endpoint_aliases": {"introspection_endpoint": base + "/introspect"},
                },
            )
        else:
            self._send(404, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        peer = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        with self.server.lock:
            self.server.seen.append((self.path, self.client_address[1], peer, form))
        if self.path != "/introspect":
            self._send(401, {"error": "invalid_client"})
            return
        if peer != self.server.expected_der or form.get("client_id") != CLIENT_ID:
            self._send(401, {"error": "invalid_client"})
            return
        if set(form) != {"token", "token_type_hint", "client_id"}:
            self._send(400, {"error": "invalid_request"})
            return
        self._send(
            200,
            {
                "active": form["token"] == TOKEN,
                "iss": self.server.base_url,
                "aud": AUDIENCE,
                "sub": "alice",
                "scope": "read",
                "exp": int(time.time()) + 300,
            },
        )


class MtlsServer(ThreadingHTTPServer):
    """HTTPS on loopback; with ``required`` the handshake fails without a certificate
    from the test CA, else the handler answers 401 to a request without the right one."""

    daemon_threads = True

    def __init__(self, pki: Pki, *, required: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.load_verify_locations(pki.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.base_url = f"https://127.0.0.1:{self.server_address[1]}"
        self.expected_der = pki.client_der
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int, bytes | None, dict[str, str]]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # refused handshakes and dropped connections are expected here


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def trust_test_ca(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """tokenguard's clients trust what SSL_CERT_FILE names, as httpx does."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    transport.ssl_context.cache_clear()
    yield
    transport.ssl_context.cache_clear()


def _serve(pki: Pki, required: bool) -> Iterator[MtlsServer]:
    server = MtlsServer(pki, required=required)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def strict_server(pki: Pki) -> Iterator[MtlsServer]:
    yield from _serve(pki, required=True)


@pytest.fixture
def lenient_server(pki: Pki) -> Iterator[MtlsServer]:
    yield from _serve(pki, required=False)


def _guard(server: MtlsServer, auth: Any, *, discovered: bool = False) -> TokenGuard:
    endpoint = None if discovered else server.base_url + "/introspect"
    return TokenGuard(
        issuers=[Issuer(server.base_url, introspection_endpoint=endpoint, client_auth=auth)],
        policies=[Policy(name="api", audience=AUDIENCE, mode="introspect")],
    )


def _good(pki: Pki) -> TlsClientAuth:
    return TlsClientAuth(CLIENT_ID, pki.client_cert, pki.client_key, private_key_password=PASSWORD)


# -- against a server whose handshake requires a certificate ----------------------------


def test_validates_with_the_certificate(strict_server: MtlsServer, pki: Pki, check: Driver) -> None:
    info = check(_guard(strict_server, _good(pki)), TOKEN, "api")
    assert info.subject == "alice"
    assert info.source == "introspection"
    (path, _, peer, form) = strict_server.seen[-1]
    assert path == "/introspect"
    assert peer == pki.client_der
    assert form["client_id"] == CLIENT_ID  # RFC 8705 §2: and no other credential


def test_self_signed_method_and_combined_file(
    strict_server: MtlsServer, pki: Pki, check: Driver
) -> None:
    # Same handshake (the server decides how it trusts the certificate); the key may be
    # in the certificate file.
    auth = SelfSignedTlsClientAuth(CLIENT_ID, certificate=str(pki.client_combined))
    assert auth.method == "self_signed_tls_client_auth"
    info = check(_guard(strict_server, auth), TOKEN, "api")
    assert info.subject == "alice"


def test_without_a_certificate_is_unavailable(
    strict_server: MtlsServer, pki: Pki, check: Driver
) -> None:
    from tokenguard import ClientSecretPost

    guard = _guard(strict_server, ClientSecretPost(CLIENT_ID, "secret"))
    with pytest.raises(ValidationUnavailable) as caught:
        check(guard, TOKEN, "api")
    assert caught.value.status_code == 503


def test_another_certificate_is_unavailable(
    strict_server: MtlsServer, pki: Pki, check: Driver
) -> None:
    guard = _guard(strict_server, SelfSignedTlsClientAuth(CLIENT_ID, pki.other_cert))
    with pytest.raises(ValidationUnavailable):
        check(guard, TOKEN, "api")
    assert not [seen for seen in strict_server.seen if seen[2] is not None]


# -- discovery: the mtls_endpoint_aliases introspection endpoint (RFC 8705 §5) -------------


def test_discovered_endpoint_uses_the_mtls_alias(
    lenient_server: MtlsServer, pki: Pki, check: Driver
) -> None:
    info = check(_guard(lenient_server, _good(pki), discovered=True), TOKEN, "api")
    assert info.subject == "alice"
    assert [seen[0] for seen in lenient_server.seen] == ["/introspect"]


def test_configured_endpoint_is_not_replaced_by_the_alias(
    lenient_server: MtlsServer, pki: Pki, check: Driver
) -> None:
    issuer = Issuer(
        lenient_server.base_url,
        introspection_endpoint=lenient_server.base_url + "/plain-introspect",
        client_auth=_good(pki),
    )
    guard = TokenGuard(
        issuers=[issuer], policies=[Policy(name="api", audience=AUDIENCE, mode="introspect")]
    )
    with pytest.raises(ValidationUnavailable):
        check(guard, TOKEN, "api")
    assert [seen[0] for seen in lenient_server.seen] == ["/plain-introspect"]


# -- the sync pool keeps connections with and without a certificate apart ------------------


def test_pool_never_reuses_a_connection_without_the_certificate(
    lenient_server: MtlsServer, pki: Pki
) -> None:
    client = StdlibClient()
    identity = _good(pki).tls_identity
    url = lenient_server.base_url + "/introspect"

    def send(with_certificate: bool) -> HttpResponse:
        form = {"token": TOKEN, "token_type_hint": "access_token", "client_id": CLIENT_ID}
        request = HttpRequest(
            "POST",
            url,
            max_bytes=10_000,
            form=form,
            tls_identity=identity if with_certificate else None,
        )
        outcome = client.perform(request, time.monotonic() + 5)
        assert isinstance(outcome, HttpResponse)
        return outcome

    try:
        assert send(False).status == 401  # a kept-alive connection without a certificate
        assert send(True).status == 200  # not that one: a new one, with the certificate
        assert send(False).status == 401  # the first again
        assert send(True).status == 200  # the second again
    finally:
        client.close()
    ports = [seen[1] for seen in lenient_server.seen]
    peers = [seen[2] for seen in lenient_server.seen]
    assert peers == [None, pki.client_der, None, pki.client_der]
    assert ports[0] == ports[2] != ports[1] == ports[3]  # both connections were pooled


# -- configuration ---------------------------------------------------------------------------


def test_nothing_of_the_files_or_password_in_repr_or_dump(pki: Pki) -> None:
    auth = _good(pki)
    issuer = Issuer("https://as.example", client_auth=auth)
    shown = " ".join(
        [
            repr(auth),
            str(auth),
            repr(issuer),
            repr(auth.tls_identity),
            repr(HttpRequest("POST", "https://as.example/i", 1, tls_identity=auth.tls_identity)),
            json.dumps(issuer.model_dump(mode="json")),
        ]
    )
    assert PASSWORD not in shown
    assert "client-key.pem" not in repr(auth) + repr(auth.tls_identity)
    assert "client.pem" not in repr(auth) + repr(auth.tls_identity)
    assert repr(auth) == f"TlsClientAuth(client_id={CLIENT_ID!r})"


def test_password_from_the_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLS_KEY_PASSWORD", PASSWORD)
    issuer = TokenGuard(
        issuers=[
            {
                "issuer": "https://as.example",
                "client_auth": {
                    "method": "tls_client_auth",
                    "client_id": CLIENT_ID,
                    "certificate": str(pki.client_cert),
                    "private_key": str(pki.client_key),
                    "private_key_password_env": "MTLS_KEY_PASSWORD",
                },
            }
        ],
        policies=[Policy(name="api", audience=AUDIENCE, mode="introspect")],
    )
    assert issuer is not None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"certificate": "/nonexistent/secret-dir/c.pem"}, "does not exist"),
        ({"private_key_password": "wrong-password-shh"}, "do not load"),
        ({"private_key_password": None}, "do not load"),
        ("other key", "do not load"),
        ("key as certificate", "do not load"),
    ],
)
def test_files_that_do_not_load_are_configuration_errors(
    pki: Pki, change: Any, problem: str
) -> None:
    data: dict[str, Any] = {
        "method": "tls_client_auth",
        "client_id": CLIENT_ID,
        "certificate": str(pki.client_cert),
        "private_key": str(pki.client_key),
        "private_key_password": PASSWORD,
    }
    if change == "other key":
        data["private_key"] = str(pki.other_cert)
        del data["private_key_password"]
    elif change == "key as certificate":
        data["certificate"] = str(pki.client_key)
    else:
        data.update(change)
        data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigurationError) as caught:
        TokenGuard(
            issuers=[{"issuer": "https://as.example", "client_auth": data}],
            policies=[Policy(name="api", audience=AUDIENCE, mode="introspect")],
        )
    message = str(caught.value)
    assert problem in message
    for leaked in (PASSWORD, "wrong-password-shh", "secret-dir", "BEGIN", str(pki.client_key)):
        assert leaked not in message
    assert caught.value.__cause__ is None


def test_a_user_httpx_client_is_warned_about(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tokenguard"), httpx.Client() as client:
        TokenGuard(
            issuers=[Issuer("https://as.example", client_auth=_good(pki))],
            policies=[Policy(name="api", audience=AUDIENCE, mode="introspect")],
            http_client=client,
        )
    text = caplog.text
    assert "tls_client_auth" in text
    assert "must itself present the client certificate" in text
    assert PASSWORD not in text
    assert "client-key.pem" not in text


def test_client_context_is_made_once_per_identity(pki: Pki) -> None:
    identity = _good(pki).tls_identity
    first = transport.client_ssl_context(identity)
    assert transport.client_ssl_context(identity) is first
    assert first is not transport.ssl_context()
    assert transport.client_ssl_context(None) is transport.ssl_context()
    digest = hashlib.sha256(pki.client_der).hexdigest()
    assert digest not in repr(first)


async def test_aiohttp_keeps_connections_with_and_without_the_certificate_apart(
    lenient_server: MtlsServer, pki: Pki
) -> None:
    from tokenguard.shells.aiohttp_client import AiohttpClient

    client = AiohttpClient()
    identity = _good(pki).tls_identity
    url = lenient_server.base_url + "/introspect"

    async def send(with_certificate: bool) -> int:
        form = {"token": TOKEN, "token_type_hint": "access_token", "client_id": CLIENT_ID}
        request = HttpRequest(
            "POST",
            url,
            max_bytes=10_000,
            form=form,
            tls_identity=identity if with_certificate else None,
        )
        outcome = await client.perform(request, time.monotonic() + 5)
        assert isinstance(outcome, HttpResponse)
        return outcome.status

    try:
        assert [await send(False), await send(True), await send(False), await send(True)] == [
            401,
            200,
            401,
            200,
        ]
    finally:
        await client.aclose()
    peers = [seen[2] for seen in lenient_server.seen]
    assert peers == [None, pki.client_der, None, pki.client_der]
