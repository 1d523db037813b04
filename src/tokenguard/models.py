"""TokenInfo: what a validated access token says, whichever path validated it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_serializer

from .errors import InsufficientScope

__all__ = ["TokenInfo", "TokenSource"]

TokenSource = Literal["jwt", "introspection", "jwt+introspection"]


class TokenInfo(BaseModel):
    """An access token that passed validation, and what it allows.

    Immutable: the model is frozen and ``claims`` is a read-only view, so an instance
    can be shared safely between requests and cached. ``source`` says which path
    validated the token (``"jwt+introspection"``: verified locally and confirmed live by
    the authorization server); ``cached`` says whether this answer came from a cache.

    ``claims`` holds the token's claims (JWT) or the introspection response (RFC 7662
    uses the same member names); ``subject``, ``client_id``, ``audience``,
    ``expires_at`` and the other registered claims are read from it on access, so a
    cached answer stores each value once.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    active: bool = True
    issuer: str | None = None
    scopes: frozenset[str] = frozenset()
    token_type: str | None = None
    claims: Mapping[str, Any] = Field(default_factory=lambda: MappingProxyType({}))
    source: TokenSource = "jwt"
    cached: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def subject(self) -> str | None:
        """``sub``."""
        return self.claims.get("sub")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def client_id(self) -> str | None:
        """``client_id``."""
        return self.claims.get("client_id")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def username(self) -> str | None:
        """``username`` (introspection)."""
        return self.claims.get("username")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def audience(self) -> tuple[str, ...]:
        """``aud``, always as a tuple."""
        return _strings(self.claims.get("aud")) or ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def expires_at(self) -> datetime | None:
        """``exp`` as an aware UTC datetime."""
        return _when(self.claims.get("exp"))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def issued_at(self) -> datetime | None:
        """``iat`` as an aware UTC datetime."""
        return _when(self.claims.get("iat"))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def not_before(self) -> datetime | None:
        """``nbf`` as an aware UTC datetime."""
        return _when(self.claims.get("nbf"))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def auth_time(self) -> datetime | None:
        """``auth_time`` as an aware UTC datetime."""
        return _when(self.claims.get("auth_time"))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def token_id(self) -> str | None:
        """``jti``."""
        return self.claims.get("jti")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cnf(self) -> Mapping[str, Any] | None:
        """``cnf`` (RFC 7800): the key a sender-constrained token is bound to."""
        return self.claims.get("cnf")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def acr(self) -> str | None:
        """``acr``."""
        return self.claims.get("acr")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amr(self) -> tuple[str, ...] | None:
        """``amr``, as a tuple."""
        return _strings(self.claims.get("amr"))

    @field_serializer("claims")
    def _plain_claims(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return _thaw(value)  # type: ignore[no-any-return]

    @field_serializer("cnf")
    def _plain_cnf(self, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _thaw(value)

    @classmethod
    def trusted(
        cls,
        *,
        issuer: str,
        scopes: frozenset[str],
        token_type: str | None,
        claims: Mapping[str, Any],
        source: TokenSource,
        cached: bool = False,
    ) -> Self:
        """Build from values tokenguard has already type-checked, without validation.

        Equivalent to ``model_construct`` with every field given, at a fraction of the
        cost (it is on the path of every first-seen token). Internal.
        """
        return cls._assemble(
            {
                "active": True,
                "issuer": issuer,
                "scopes": scopes,
                "token_type": token_type,
                "claims": claims,
                "source": source,
                "cached": cached,
            }
        )

    def as_cached(self) -> Self:
        """This answer, marked as served from a cache."""
        return self._assemble({**self.__dict__, "cached": True})

    @classmethod
    def _assemble(cls, fields: dict[str, Any]) -> Self:
        # What model_construct does, for a complete set of already-checked fields; the
        # slots are set through their descriptors (cheaper than object.__setattr__).
        info = cls.__new__(cls)
        object.__setattr__(info, "__dict__", fields)
        _set_fields_set(info, _ALL_FIELDS)
        _set_extra(info, None)
        _set_private(info, None)
        return info

    def has_scopes(self, *scopes: str) -> bool:
        """True if the token carries every one of ``scopes``."""
        return self.scopes.issuperset(scopes)

    def require_scopes(self, *scopes: str) -> None:
        """Raise :class:`InsufficientScope` (403) unless the token carries all ``scopes``;
        the error names every scope required (RFC 6750 §3 ``scope``)."""
        missing = set(scopes) - self.scopes
        if missing:
            raise InsufficientScope(scopes)

    def require_authentication(
        self, acr_values: Iterable[str] | None = None, max_age: int | None = None
    ) -> None:
        """Raise :class:`~tokenguard.InsufficientUserAuthentication` (401, RFC 9470 step-up)
        unless the token's ``acr`` is one of ``acr_values`` and its ``auth_time`` is at most
        ``max_age`` seconds ago; the error's challenge names what is required."""
        from .core.requirements import StepUp

        step_up = StepUp.of(acr_values, max_age)
        if step_up is not None:
            step_up.check(self.claims.get("acr"), self.claims.get("auth_time"), time.time())

    def __repr__(self) -> str:
        # Claims may hold personal data; keep reprs (and so logs of them) short.
        return (
            f"TokenInfo(source={self.source!r}, issuer={self.issuer!r}, "
            f"subject={self.subject!r}, client_id={self.client_id!r}, "
            f"scopes={sorted(self.scopes)!r}, expires_at={self.expires_at!r}, cached={self.cached})"
        )

    __str__ = __repr__


def freeze(value: Any, depth: int = 0) -> Any:
    """A deep read-only view of a JSON value: dicts become mapping proxies, lists tuples.

    A dict is wrapped as is when nothing in it needs freezing (the common, flat case):
    the caller hands over a dict no one else will change. Raises ValueError past
    :data:`MAX_DEPTH` levels: no token needs more, and the bound keeps this recursion
    far from the interpreter's limit.
    """
    if depth > MAX_DEPTH:
        raise ValueError("JSON value nested too deeply")
    if type(value) is dict:
        # map/isdisjoint run in C: the common, flat claims object costs no Python loop.
        if not _CONTAINER_TYPES.isdisjoint(map(type, value.values())):
            value = {
                k: freeze(v, depth + 1) if type(v) in _CONTAINERS else v for k, v in value.items()
            }
        return MappingProxyType(value)
    if type(value) is list:
        return tuple(freeze(v, depth + 1) if type(v) in _CONTAINERS else v for v in value)
    return value


#: How deeply claims may nest (objects and arrays inside the claims object).
MAX_DEPTH = 32
_CONTAINERS = (dict, list)
_CONTAINER_TYPES = frozenset(_CONTAINERS)


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


_ALL_FIELDS = frozenset(TokenInfo.model_fields)
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)
