"""RFC 8705 §5: ``mtls_endpoint_aliases`` in authorization server metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tokenguard import Issuer
from tokenguard.core.discovery import parse_metadata
from tokenguard.core.exchange import HttpResponse

ISSUER = "https://as.example"


def _parse(document: dict[str, Any]) -> Any:
    body = json.dumps({"issuer": ISSUER, **document}).encode()
    response = HttpResponse(200, {"content-type": "application/json"}, body)
    return parse_metadata(response, Issuer(ISSUER))


def test_alias_is_read() -> None:
    metadata = _parse(
        {
            "introspection_endpoint": ISSUER + "/introspect",
            "mtls_endpoint_aliases": {"introspection_endpoint": "https://mtls.as.example/i"},
        }
    )
    assert metadata.introspection_endpoint == ISSUER + "/introspect"
    assert metadata.mtls_introspection_endpoint == "https://mtls.as.example/i"


def test_no_alias() -> None:
    assert (
        _parse(
            {"mtls_endpoint_aliases": {"token_endpoint": ISSUER + "/t"}}
        ).mtls_introspection_endpoint
        is None
    )
    assert _parse({}).mtls_introspection_endpoint is None


@pytest.mark.parametrize(
    "aliases",
    [
        ["https://mtls.as.example/i"],
        "https://mtls.as.example/i",
        {"introspection_endpoint": "http://mtls.as.example/i"},
        {"introspection_endpoint": 7},
        {"introspection_endpoint": "not a url"},
    ],
)
def test_unacceptable_alias_refuses_the_document(aliases: Any) -> None:
    with pytest.raises(ValueError, match="mtls_endpoint_aliases"):
        _parse({"mtls_endpoint_aliases": aliases})
