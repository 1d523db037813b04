"""Security Event Tokens (RFC 8417) and the revocations they carry. No I/O.

A SET delivered by push (RFC 8935) is a signed JWT whose ``events`` claim names event
types. The ones that mean "tokens of this subject issued before now must not be
accepted any more" become subject cut-offs (:meth:`TokenGuard.revoke_subject`):

* OpenID CAEP ``session-revoked`` and ``credential-change``;
* RISC ``account-disabled``, ``account-purged``, ``account-credential-change-required``,
  ``credential-compromise``, ``identifier-changed``, ``identifier-recycled``,
  ``sessions-revoked``.

Other event types are accepted and ignored (RFC 8935 §2.2: a recipient acknowledges an
event it has no use for). The subject is read from the SET's ``sub_id`` (RFC 9493
subject identifiers, OpenID SSF) or the event's ``subject`` (CAEP/RISC): formats
``iss_sub``, ``opaque``, and ``complex``/``aliases`` made of those; an email address or
a phone number names no ``sub`` a token carries, so it cannot cut tokens off and is
ignored. The cut-off time is the event's ``event_timestamp`` (else the SET's ``iat``),
never later than now; a time in whole seconds covers that whole second (a token issued
in the same second as the event is refused, as with ``revoke_subject``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SecurityEventError

__all__ = ["REVOKING_EVENTS", "Cutoff", "SecurityEvent", "event_cutoffs", "read_set"]

_CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
_RISC = "https://schemas.openid.net/secevent/risc/event-type/"
#: Event types that cut off every token of their subject issued before the event.
REVOKING_EVENTS = frozenset(
    {
        _CAEP + "session-revoked",
        _CAEP + "credential-change",
        _RISC + "account-disabled",
        _RISC + "account-purged",
        _RISC + "account-credential-change-required",
        _RISC + "credential-compromise",
        _RISC + "identifier-changed",
        _RISC + "identifier-recycled",
        _RISC + "sessions-revoked",
    }
)
SET_TYPES = frozenset({"secevent+jwt", "application/secevent+jwt"})
_MAX_JTI = 256
_MAX_EVENTS = 32
_MAX_NESTING = 4


@dataclass(frozen=True, slots=True)
class Cutoff:
    """Refuse the tokens of ``subject`` (of ``issuer``; None: any) issued before ``before``."""

    subject: str
    issuer: str | None
    before: float


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """What a verified SET said and what was done with it."""

    issuer: str
    jti: str
    event_types: tuple[str, ...]
    cutoffs: tuple[Cutoff, ...]
    duplicate: bool = False


def check_set_type(typ: str | None) -> None:
    """RFC 8417 §2.3: a SET is explicitly typed, so no other JWT can pass for one."""
    if typ is None or typ.lower() not in SET_TYPES:
        raise SecurityEventError("invalid_request", "The token is not typed secevent+jwt")


def _number(value: Any) -> float | None:
    """The value as a float if it is a finite JSON number (not a boolean)."""
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


def read_set(
    claims: Mapping[str, Any], *, issuer: str, audience: str, now: float, leeway: float
) -> tuple[str, float, dict[str, dict[str, Any]]]:
    """Check a SET's claims (RFC 8417 §2.2); returns its ``jti``, ``iat`` and events."""
    if claims.get("iss") != issuer:
        raise SecurityEventError("invalid_issuer", "The event was not issued by the transmitter")
    aud = claims.get("aud")
    audiences = (aud,) if isinstance(aud, str) else aud if isinstance(aud, list) else ()
    if audience not in audiences:
        raise SecurityEventError("invalid_audience", "The event is not intended for this recipient")
    jti, iat, events = claims.get("jti"), _number(claims.get("iat")), claims.get("events")
    if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
        raise SecurityEventError("invalid_request", "The event has no valid jti")
    if iat is None or iat > now + leeway:
        raise SecurityEventError("invalid_request", "The event has no valid iat")
    if not isinstance(events, dict) or not 0 < len(events) <= _MAX_EVENTS:
        raise SecurityEventError("invalid_request", "The event has no valid events claim")
    if not all(isinstance(k, str) and isinstance(v, dict) for k, v in events.items()):
        raise SecurityEventError("invalid_request", "Each event must be a JSON object")
    if "exp" in claims:
        # RFC 8417 §2.2: a SET is a statement of fact, not an authorization: no exp.
        raise SecurityEventError("invalid_request", "A security event has no exp")
    return jti, iat, events


def _subjects(
    identifier: Any, transmitter: str, issuers: Collection[str], depth: int = 0
) -> list[tuple[str, str | None]]:
    """(sub, issuer) pairs named by a subject identifier (RFC 9493)."""
    if not isinstance(identifier, dict) or depth > _MAX_NESTING:
        return []
    kind = identifier.get("format", identifier.get("subject_type"))
    if kind in ("iss_sub", "iss-sub"):
        sub, iss = identifier.get("sub"), identifier.get("iss")
        if isinstance(sub, str) and sub and isinstance(iss, str) and iss in issuers:
            return [(sub, iss)]
        return []
    if kind == "opaque":
        sub = identifier.get("id")
        if isinstance(sub, str) and sub:
            return [(sub, transmitter if transmitter in issuers else None)]
        return []
    if kind == "complex":
        return _subjects(identifier.get("user"), transmitter, issuers, depth + 1)
    if kind == "aliases":
        found: list[tuple[str, str | None]] = []
        listed = identifier.get("identifiers")
        for item in listed if isinstance(listed, list) else ():
            found.extend(_subjects(item, transmitter, issuers, depth + 1))
        return found
    return []


def event_cutoffs(
    claims: Mapping[str, Any],
    events: Mapping[str, Mapping[str, Any]],
    *,
    transmitter: str,
    issuers: Collection[str],
    iat: float,
    now: float,
) -> tuple[Cutoff, ...]:
    """The cut-offs the SET's revoking events carry."""
    found: list[Cutoff] = []
    for event_type, payload in events.items():
        if event_type not in REVOKING_EVENTS:
            continue
        subject = claims.get("sub_id", payload.get("subject"))
        when = _number(payload.get("event_timestamp"))
        at = iat if when is None else when
        if at == int(at):
            at += 1.0  # whole seconds: the tokens of that second are refused too (iat < before)
        before = min(at, now)
        for sub, issuer in _subjects(subject, transmitter, issuers):
            found.append(Cutoff(sub, issuer, before))
    return tuple(dict.fromkeys(found))
