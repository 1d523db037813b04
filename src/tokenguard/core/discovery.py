"""Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0). No I/O."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from ..config import Issuer
from .exchange import HttpOutcome, HttpResponse
from .jose import strict_json
from .urls import endpoint_problem

__all__ = ["Metadata", "MetadataState", "parse_metadata"]

log = logging.getLogger("tokenguard.discovery")


@dataclass(frozen=True, slots=True)
class Metadata:
    """The endpoints tokenguard uses from an issuer's metadata document;
    ``mtls_introspection_endpoint`` is the ``introspection_endpoint`` of its
    ``mtls_endpoint_aliases`` (RFC 8705 §5), for clients that authenticate with mutual TLS."""

    jwks_uri: str | None
    introspection_endpoint: str | None
    mtls_introspection_endpoint: str | None = None


def parse_metadata(outcome: HttpOutcome, issuer: Issuer) -> Metadata:
    """Check a metadata response and extract the endpoints. Raises ValueError.

    The document's ``issuer`` must equal the configured issuer exactly (RFC 8414 §3.3,
    which defeats a document that impersonates another server), and every endpoint
    must pass the same URL rules as configured ones.
    """
    if not isinstance(outcome, HttpResponse):
        raise ValueError(outcome.reason)
    if outcome.status != 200:
        raise ValueError(f"HTTP {outcome.status}")
    try:
        document = strict_json(outcome.body)
    except ValueError:
        document = None
    if document is None:
        raise ValueError("not JSON")
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("issuer") != issuer.issuer:
        raise ValueError("issuer in metadata does not match")
    found: dict[str, str | None] = {}
    for name in ("jwks_uri", "introspection_endpoint"):
        url = document.get(name)
        if url is not None and (
            not isinstance(url, str)
            or endpoint_problem(url, allow_insecure_http=issuer.allow_insecure_http)
        ):
            raise ValueError(f"{name} is not an acceptable URL")
        found[name] = url
    aliases = document.get("mtls_endpoint_aliases")
    alias = None
    if aliases is not None:
        if not isinstance(aliases, dict):
            raise ValueError("mtls_endpoint_aliases is not a JSON object")
        alias = aliases.get("introspection_endpoint")
        if alias is not None and (
            not isinstance(alias, str)
            or endpoint_problem(alias, allow_insecure_http=issuer.allow_insecure_http)
        ):
            raise ValueError(
                "mtls_endpoint_aliases.introspection_endpoint is not an acceptable URL"
            )
    return Metadata(
        jwks_uri=found["jwks_uri"],
        introspection_endpoint=found["introspection_endpoint"],
        mtls_introspection_endpoint=alias,
    )


class MetadataState:
    """Cached metadata of one issuer; the last good document survives failed refreshes."""

    def __init__(self, issuer: Issuer, ttl: float, retry_after: float) -> None:
        self._issuer = issuer
        self._ttl = ttl
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._metadata: Metadata | None = None
        self._fresh_until = 0.0
        self._retry_at = 0.0
        self._problems: list[str] = []

    @property
    def metadata(self) -> Metadata | None:
        return self._metadata

    def wants_fetch(self, now: float) -> bool:
        with self._lock:
            return now >= self._fresh_until and now >= self._retry_at

    def absorb(self, outcome: HttpOutcome, now: float) -> bool:
        """Record one discovery response; True if it gave usable metadata."""
        try:
            metadata = parse_metadata(outcome, self._issuer)
        except ValueError as error:
            # Normal for the first of the two discovery URLs; reported by failed().
            with self._lock:
                self._problems.append(str(error))
            return False
        with self._lock:
            self._metadata = metadata
            self._fresh_until = now + self._ttl
            self._problems = []
        return True

    def failed(self, now: float) -> None:
        """Every discovery URL failed: back off before trying again."""
        with self._lock:
            self._retry_at = now + self._retry_after
            problems, self._problems = self._problems, []
        log.warning(
            "metadata of %s could not be fetched (%s)",
            self._issuer.issuer,
            # Both discovery URLs usually fail the same way: say it once.
            "; ".join(dict.fromkeys(problems)) or "no answer",
        )
