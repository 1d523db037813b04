"""The ``[fleet]`` configuration: where the fleet's Redis is and its secret."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..client_auth import secret_from_env

__all__ = ["MIN_SECRET_BYTES", "FleetSettings"]

#: The shortest fleet secret accepted (256 bits, e.g. ``secrets.token_urlsafe(32)``).
MIN_SECRET_BYTES = 32

_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class FleetSettings(BaseModel):
    """A fleet of processes sharing one cache and one revocation channel on Redis.

    In a file: ``[fleet]`` with ``redis_url`` and ``secret_env`` (the name of the
    environment variable holding the secret), optionally ``prefix``, ``timeout`` (each
    Redis call, seconds) and ``lock_timeout`` (how long a token's flight lock lives: the
    wait of the others when the process introspecting it dies; default
    ``http_timeout`` + 1 s).

    ``dpop_replay_when_down`` says what a DPoP proof gets when Redis cannot tell whether
    another process of the fleet already accepted its ``jti`` (Redis down, slow, or the
    circuit breaker open): ``"refuse"`` (the default: 503 with ``Retry-After``, the
    client retries with a new proof once Redis answers) or ``"local"`` (this process's
    own replay cache decides alone, as without a fleet: a proof replayed against
    another process passes while Redis is unavailable). See docs/fleet.md.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    redis_url: SecretStr  # may carry a password
    secret: SecretStr
    prefix: str = "tokenguard"
    timeout: float = Field(default=0.25, gt=0, le=5)
    lock_timeout: float | None = Field(default=None, gt=0, le=60)
    startup_timeout: float = Field(default=2.0, ge=0, le=60)
    dpop_replay_when_down: Literal["refuse", "local"] = "refuse"

    @model_validator(mode="before")
    @classmethod
    def _env(cls, data: Any) -> Any:
        return secret_from_env(data, "secret")

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("secret")
    @classmethod
    def _strong(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the fleet secret must be at least {MIN_SECRET_BYTES} bytes "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value):
            raise ValueError("prefix must be 1-64 letters, digits or _ . -")
        return value
