"""discovery.py: RFC 8414 / OIDC metadata parsing and refresh state."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tokenguard.config import Issuer
from tokenguard.core.discovery import Metadata, MetadataState, parse_metadata
from tokenguard.core.exchange import HttpFailure, HttpResponse

AS = "https://as.example"
ISSUER = Issuer(AS)


def ok(document: Any, status: int = 200) -> HttpResponse:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return HttpResponse(status, {"content-type": "application/json"}, body)


def test_parse_metadata() -> None:
    metadata = parse_metadata(
        ok(
            {
                "issuer": AS,
                "jwks_uri": f"{AS}/jwks",
                "introspection_endpoint": f"{AS}/introspect",
                "token_endpoint": "http://ignored.example/",
            }
        ),
        ISSUER,
    )
    assert metadata == Metadata(jwks_uri=f"{AS}/jwks", introspection_endpoint=f"{AS}/introspect")


def test_parse_metadata_optional_endpoints() -> None:
    assert parse_metadata(ok({"issuer": AS}), ISSUER) == Metadata(None, None)


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (HttpFailure("timeout"), "timeout"),
        (ok({"issuer": AS}, status=404), "HTTP 404"),
        (ok(b"<html>"), "not JSON"),
        (ok(b"[" * 100_000), "not JSON"),
        (ok([AS]), "not a JSON object"),
        (ok({"issuer": "https://evil.example"}), "issuer in metadata does not match"),
        (ok({"issuer": AS + "/"}), "issuer in metadata does not match"),
        (ok({}), "issuer in metadata does not match"),
        (ok({"issuer": AS, "jwks_uri": "http://as.example/jwks"}), "jwks_uri is not an acceptable"),
        (ok({"issuer": AS, "jwks_uri": 5}), "jwks_uri is not an acceptable URL"),
        (
            ok({"issuer": AS, "introspection_endpoint": "https://u:p@as.example/i"}),
            "introspection_endpoint is not an acceptable URL",
        ),
    ],
)
def test_parse_metadata_refused(outcome: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_metadata(outcome, ISSUER)


def test_parse_metadata_insecure_loopback() -> None:
    local = Issuer("http://127.0.0.1:9000", allow_insecure_http=True)
    metadata = parse_metadata(
        ok({"issuer": "http://127.0.0.1:9000", "jwks_uri": "http://127.0.0.1:9000/jwks"}), local
    )
    assert metadata.jwks_uri == "http://127.0.0.1:9000/jwks"


def test_metadata_state(caplog: pytest.LogCaptureFixture) -> None:
    state = MetadataState(ISSUER, ttl=100, retry_after=15)
    assert state.metadata is None
    assert state.wants_fetch(0.0)
    assert state.absorb(ok({"issuer": AS, "jwks_uri": f"{AS}/jwks"}), 10.0) is True
    assert state.metadata == Metadata(f"{AS}/jwks", None)
    assert not state.wants_fetch(109.9)
    assert state.wants_fetch(110.0)
    # A failed refresh keeps the last good metadata.
    assert state.absorb(ok({"issuer": "https://evil.example"}), 110.0) is False
    assert state.metadata == Metadata(f"{AS}/jwks", None)
    caplog.set_level(logging.WARNING, logger="tokenguard.discovery")
    state.failed(110.0)
    assert "metadata of https://as.example could not be fetched" in caplog.text
    assert not state.wants_fetch(124.9)
    assert state.wants_fetch(125.0)


def test_failed_discovery_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    state = MetadataState(ISSUER, ttl=100, retry_after=15)
    caplog.set_level(logging.WARNING, logger="tokenguard.discovery")
    assert state.absorb(ok({"issuer": "https://elsewhere.example"}), 1.0) is False
    state.failed(1.0)
    (record,) = caplog.records
    assert "issuer in metadata does not match" in record.getMessage()


def test_the_same_reason_from_both_discovery_urls_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = MetadataState(ISSUER, ttl=100, retry_after=15)
    caplog.set_level(logging.WARNING, logger="tokenguard.discovery")
    assert state.absorb(HttpFailure("connection failed"), 1.0) is False  # RFC 8414 URL
    assert state.absorb(HttpFailure("connection failed"), 1.0) is False  # OIDC URL
    state.failed(1.0)
    (record,) = caplog.records
    assert record.getMessage().endswith("could not be fetched (connection failed)")
