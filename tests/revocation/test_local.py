"""revoke / revoke_subject / revoke_client in one process (no fleet), both shells."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest

from tokenguard import InactiveToken, Policy, TokenGuard
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def malleated(token: str) -> str:
    """The same ES256 token with its second valid signature (r, n - s)."""
    signed, _, sig = token.rpartition(".")
    raw = unb64(sig)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{signed}.{b64(r + (P256_ORDER - s).to_bytes(32, 'big'))}"


def revoke(check: Driver, guard: TokenGuard, token: str) -> None:
    if check.loop is None:
        guard.revoke(token)
    else:
        check.loop.run_until_complete(guard.arevoke(token))


def test_revoke_opaque_token(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque(scopes=["orders:read"])
    other = auth_server.issue_opaque(scopes=["orders:read"])
    check(guard, token)
    check(guard, other)
    revoke(check, guard, token)
    with pytest.raises(InactiveToken):
        check(guard, token)
    assert check(guard, other).cached  # nothing else touched
    assert auth_server.request_count("introspection") == 2  # refused without asking


def test_revoke_jwt_covers_its_second_ecdsa_signature(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_jwt(alg="ES256", scopes=["orders:read"])
    twin = malleated(token)
    assert twin != token
    # Both encodings are valid, and both are cached before the revocation.
    assert check(guard, token).subject == check(guard, twin).subject
    revoke(check, guard, token)
    for encoding in (token, twin):
        with pytest.raises(InactiveToken):
            check(guard, encoding)


def test_revoke_jwt_without_jti_covers_its_second_signature(
    auth_server: AuthServer, check: Driver
) -> None:
    # An at+jwt must carry jti (RFC 9068 §2.2) unless the policy relaxes the profile.
    guard = guard_for(auth_server, require_rfc9068_claims=False)
    token = auth_server.issue_jwt(alg="ES256", claims={"jti": None})
    twin = malleated(token)
    check(guard, twin)
    revoke(check, guard, token)
    with pytest.raises(InactiveToken):
        check(guard, twin)


def test_revoke_by_jti_needs_a_verified_signature(auth_server: AuthServer, check: Driver) -> None:
    """A forged token carrying someone else's jti revokes nothing but itself."""
    guard = guard_for(auth_server)
    victim = auth_server.issue_jwt(scopes=["orders:read"], claims={"jti": "victim-jti"})
    check(guard, victim)
    header, payload, _ = victim.split(".")
    forged = f"{header}.{payload[:-2]}AA.{b64(b'x' * 256)}"  # other content, bad signature
    revoke(check, guard, forged)
    assert check(guard, victim).subject == "user-1"
    # The same jti from a genuinely signed token does revoke every token of that id.
    again = auth_server.issue_jwt(scopes=["orders:read"], claims={"jti": "victim-jti"})
    revoke(check, guard, again)
    with pytest.raises(InactiveToken):
        check(guard, victim)


def test_revoke_unparseable_and_bad_input(auth_server: AuthServer) -> None:
    guard = guard_for(auth_server)
    guard.revoke("not.a.jwt")  # revoked by digest; nothing else to learn
    with pytest.raises(InactiveToken):
        guard.validate("not.a.jwt")  # refused before any work... or as malformed
    from tokenguard import MalformedToken, MissingToken

    with pytest.raises(MissingToken):
        guard.revoke("")
    with pytest.raises(MalformedToken):
        guard.revoke(123)  # type: ignore[arg-type]
    guard.close()


def test_revoke_subject(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server, accept_plain_jwt=True)
    old_jwt = auth_server.issue_jwt(subject="alice", issued_at=time.time() - 30)
    old_opaque = auth_server.issue_opaque(subject="alice")
    bob = auth_server.issue_jwt(subject="bob", issued_at=time.time() - 30)
    no_iat = auth_server.issue_jwt(subject="alice", typ=None, claims={"iat": None})
    for token in (old_jwt, old_opaque, bob, no_iat):
        check(guard, token)
    if check.loop is None:
        guard.revoke_subject("alice")
    else:
        check.loop.run_until_complete(guard.arevoke_subject("alice"))
    for token in (old_jwt, no_iat):  # JWTs refused without any network
        with pytest.raises(InactiveToken):
            check(guard, token)
    # The opaque token's introspection answer carries iat: refused from the cache too.
    with pytest.raises(InactiveToken):
        check(guard, old_opaque)
    assert check(guard, bob).cached
    newer = auth_server.issue_jwt(subject="alice", issued_at=time.time() + 2)
    assert check(guard, newer).subject == "alice"


def test_revoke_client_before_a_time_and_issuer(auth_server: AuthServer, check: Driver) -> None:
    guard = guard_for(auth_server)
    now = time.time()
    early = auth_server.issue_jwt(client_id="app", issued_at=now - 100)
    later = auth_server.issue_jwt(client_id="app", issued_at=now - 10)
    cut = datetime.fromtimestamp(now - 50, tz=UTC)
    if check.loop is None:
        guard.revoke_client("app", issuer=auth_server.issuer, before=cut)
    else:
        check.loop.run_until_complete(
            guard.arevoke_client("app", issuer=auth_server.issuer, before=cut)
        )
    with pytest.raises(InactiveToken):
        check(guard, early)
    assert check(guard, later).client_id == "app"


def test_cutoff_for_another_issuer_does_not_apply(auth_server: AuthServer) -> None:
    with AuthServer() as other:
        from tokenguard import ClientSecretBasic, Issuer

        guard = TokenGuard(
            issuers=[
                Issuer(auth_server.issuer, allow_insecure_http=True),
                Issuer(
                    other.issuer,
                    allow_insecure_http=True,
                    client_auth=ClientSecretBasic(other.client_id, other.client_secret),
                ),
            ],
            policies=[Policy(name="p", audience=AUDIENCE)],
        )
        guard.revoke_subject("alice", issuer=other.issuer)
        token = auth_server.issue_jwt(subject="alice", issued_at=time.time() - 5)
        assert guard.validate(token).subject == "alice"
        with pytest.raises(InactiveToken):
            guard.validate(other.issue_jwt(subject="alice", issued_at=time.time() - 5))
        guard.close()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("",), {}, "non-empty string"),
        ((None,), {}, "non-empty string"),
        (("x" * 2000,), {}, "non-empty string"),
        (("alice",), {"issuer": "https://unknown.example"}, "configured issuers"),
        (("alice",), {"before": "yesterday"}, "POSIX timestamp"),
        (("alice",), {"before": datetime(2020, 1, 1)}, "aware datetime"),
        (("alice",), {"before": time.time() + 3600}, "future"),
        (("alice",), {"before": float("nan")}, "future"),
        (("alice",), {"before": True}, "POSIX timestamp"),
    ],
)
def test_cutoff_input_is_checked(
    auth_server: AuthServer, args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    guard = guard_for(auth_server)
    with pytest.raises(ValueError, match=message):
        guard.revoke_subject(*args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        guard.revoke_client(*args, **kwargs)  # type: ignore[arg-type]
    guard.close()
