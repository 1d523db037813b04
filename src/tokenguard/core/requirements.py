"""What a policy (or a route) requires of a token beyond its validity. No I/O.

* RFC 9068 §2.2: a JWT typed ``at+jwt`` claims the JWT access-token profile, which makes
  ``sub``, ``client_id`` and ``jti`` REQUIRED.
* RFC 9470 (step-up authentication): the ``acr`` of the user authentication behind the
  token must be one the resource accepts, and its ``auth_time`` recent enough.

Both token paths apply the same rules: a JWT's claims and an introspection response use
the same member names (RFC 9470 §6.1 adds ``acr`` and ``auth_time`` to introspection).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InsufficientUserAuthentication, InvalidClaims

if TYPE_CHECKING:
    from .claims import Claims

__all__ = ["StepUp", "check_profile_claims"]


def check_profile_claims(claims: Claims) -> None:
    """RFC 9068 §2.2: ``sub``, ``client_id`` and ``jti`` must be present (their types
    were checked when the claims were read)."""
    if claims.subject is None:
        raise InvalidClaims("The token has no sub claim")
    if claims.client_id is None:
        raise InvalidClaims("The token has no client_id claim")
    if claims.token_id is None:
        raise InvalidClaims("The token has no jti claim")


@dataclass(frozen=True, slots=True)
class StepUp:
    """An RFC 9470 requirement: accepted ``acr`` values (in order of preference) and/or
    the longest time since the user last authenticated."""

    acr_values: tuple[str, ...] | None
    max_age: int | None
    _accepted: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_accepted", frozenset(self.acr_values or ()))

    @classmethod
    def of(cls, acr_values: Iterable[str] | None, max_age: int | None) -> StepUp | None:
        """The requirement, or None when neither part is set."""
        if acr_values is None and max_age is None:
            return None
        values = None if acr_values is None else tuple(acr_values)
        if values is not None and (not values or any(not v or " " in v for v in values)):
            raise ValueError("acr_values must be non-empty strings without spaces")
        if max_age is not None and (type(max_age) is not int or max_age < 0):
            raise ValueError("max_age must be a whole number of seconds, at least 0")
        return cls(values, max_age)

    def check(self, acr: Any, auth_time: Any, now: float) -> None:
        """Raise :class:`InsufficientUserAuthentication` unless ``acr`` is accepted and
        ``auth_time`` is at most ``max_age`` seconds before ``now``.

        ``acr`` and ``auth_time`` come from claims already type-checked (a string and a
        NumericDate) or are None when absent: a missing claim never satisfies a
        requirement. No leeway: a clock difference can only ask for a login sooner.
        """
        if self.acr_values is not None and acr not in self._accepted:
            raise InsufficientUserAuthentication(
                self.acr_values,
                self.max_age,
                "The user authentication is not strong enough for this resource",
            )
        if self.max_age is not None and (auth_time is None or now - auth_time > self.max_age):
            raise InsufficientUserAuthentication(
                self.acr_values,
                self.max_age,
                "A more recent user authentication is required",
            )

    def fresh_until(self, auth_time: float | None) -> float | None:
        """The instant after which a token with this ``auth_time`` stops passing
        ``max_age`` (None: it does not expire that way). Bounds cached answers."""
        if self.max_age is None or auth_time is None:
            return None
        return auth_time + self.max_age
