"""Push delivery of Security Event Tokens (RFC 8935) into a guard: :class:`SetReceiver`.

Mount it where your authorization server (or OpenID Shared Signals transmitter) pushes
events, for example ``app.mount("/events", SetReceiver(guard, issuer=..., audience=...))``
in Starlette/FastAPI, or serve it on its own with any ASGI server. A CAEP
``session-revoked`` or ``credential-change`` event, or a RISC account event, refuses every
token of its subject issued before the event, in every process of the fleet.
"""

from __future__ import annotations

from ..core.events import REVOKING_EVENTS, Cutoff, SecurityEvent
from .receiver import SetReceiver

__all__ = ["REVOKING_EVENTS", "Cutoff", "SecurityEvent", "SetReceiver"]
