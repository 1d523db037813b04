"""What a fleet entry holds, and reading it back with the same care as a response from
the network (an entry passed authentication, so it was written by a process holding the
secret, but it is still parsed strictly and bounded). No I/O."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from ..core.claims import read_claims
from ..core.introspection import IntrospectionRecord
from ..core.jose import strict_json
from ..core.revocation import Revocation
from ..errors import InvalidClaims

__all__ = ["decode_record", "decode_revocation", "encode_record", "encode_revocation"]

_KINDS = ("token", "subject", "client")


def encode_record(record: IntrospectionRecord) -> bytes:
    """An introspection answer as stored: the record the local cache holds (the claims
    as the authorization server sent them, or as minimised), and when it was fetched."""
    claims = record.claims.raw if record.claims is not None else None
    document = {"a": record.active, "t": record.fetched_at, "c": claims}
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def decode_record(data: bytes) -> IntrospectionRecord | None:
    """The record, or None if the entry is not a well-formed one."""
    try:
        document = strict_json(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or set(document) != {"a", "t", "c"}:
        return None
    active, fetched_at, raw = document["a"], document["t"], document["c"]
    if type(active) is not bool or not _finite(fetched_at):
        return None
    if not active:
        return IntrospectionRecord(active=False, claims=None, fetched_at=fetched_at)
    if not isinstance(raw, dict):
        return None
    try:
        claims = read_claims(raw)
    except InvalidClaims:
        return None
    return IntrospectionRecord(active=True, claims=claims, fetched_at=fetched_at)


def encode_revocation(revocation: Revocation) -> bytes:
    document = {
        "k": revocation.kind,
        "i": base64.b64encode(revocation.ident).decode(),
        "s": revocation.issuer,
        "b": revocation.before,
        "u": revocation.until,
    }
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def decode_revocation(data: bytes) -> Revocation | None:
    """The revocation, or None if the entry is not a well-formed one."""
    try:
        document = strict_json(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or set(document) != {"k", "i", "s", "b", "u"}:
        return None
    kind, ident, issuer = document["k"], document["i"], document["s"]
    before, until = document["b"], document["u"]
    if kind not in _KINDS or not isinstance(ident, str) or not ident:
        return None
    if issuer is not None and not isinstance(issuer, str):
        return None
    if not _finite(before) or not _finite(until):
        return None
    try:
        raw = base64.b64decode(ident, validate=True)
    except (binascii.Error, ValueError):
        return None
    return Revocation(kind, raw, issuer, float(before), float(until))
