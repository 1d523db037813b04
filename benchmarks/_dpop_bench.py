"""DPoP-bound JWTs (RFC 9449): tokenguard against a bare proof-signature verify and a
hand-written PyJWT check, for a token seen for the first time and one seen before.

Every call carries a new proof (new ``jti``, as a client sends), so even the repeated
token costs one proof verification; the question is how little tokenguard adds to it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import jwt
from _common import (
    AUDIENCE,
    REQUIRED_SCOPE,
    TOKEN_SCOPES,
    Budget,
    Contender,
    Table,
    measure,
    paired_difference_us,
    paired_ratio,
    ratio,
    us,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokenguard import DPoPProof, Issuer, Policy, TokenGuard
from tokenguard.testing import AuthServer, DPoPKey

URL = "https://api.example.com/orders"
FLOOR = "floor: bare proof signature verify (ES256)"
TG_FIRST = "tokenguard DPoP-bound JWT, first seen"
TG_REPEAT = "tokenguard DPoP-bound JWT, repeated (new proof)"
TG_PLAIN = "tokenguard bearer JWT, repeated (cache hit)"
BY_HAND_FIRST = "PyJWT by hand (token + proof), first seen"
BY_HAND_REPEAT = "PyJWT by hand (token + proof), repeated"
ROWS = (FLOOR, TG_FIRST, TG_REPEAT, TG_PLAIN, BY_HAND_FIRST, BY_HAND_REPEAT)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _guard(server: AuthServer) -> TokenGuard:
    return TokenGuard(
        issuers=[Issuer(server.issuer, jwks_uri=server.jwks_uri, allow_insecure_http=True)],
        policies=[Policy(name="api", audience=AUDIENCE, required_scopes=[REQUIRED_SCOPE])],
    )


def _by_hand(server: AuthServer) -> Any:
    """What a careful PyJWT user writes: decode the token with its (preloaded) key, decode
    the proof with the key in its header, check typ, htm, htu, iat, ath and cnf.jkt. No
    replay cache, no nonce, no URL normalisation: less than tokenguard does."""
    signing = next(k for k in server.jwks()["keys"] if k["alg"] == "RS256")
    token_key = jwt.PyJWK(signing).key
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}

    def check(item: tuple[str, str]) -> object:
        token, proof = item
        claims = jwt.decode(
            token,
            token_key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=server.issuer,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
        header = jwt.get_unverified_header(proof)
        if header.get("typ") != "dpop+jwt":
            raise ValueError("typ")
        jwk = header["jwk"]
        key = jwt.PyJWK(jwk).key
        pop = jwt.decode(proof, key, algorithms=["ES256"], options={"verify_aud": False})
        if pop["htm"] != "GET" or pop["htu"] != URL or abs(time.time() - pop["iat"]) > 60:
            raise ValueError("htm/htu/iat")
        if pop["ath"] != _b64url(hashlib.sha256(token.encode()).digest()):
            raise ValueError("ath")
        canonical = json.dumps({m: jwk[m] for m in members[jwk["kty"]]}, separators=(",", ":"))
        if claims["cnf"]["jkt"] != _b64url(hashlib.sha256(canonical.encode()).digest()):
            raise ValueError("jkt")
        return claims

    return check


def run(server: AuthServer, budget: Budget) -> list[Table]:
    key = DPoPKey("ES256")
    count = budget.jwt_tokens + budget.jwt_warmup
    tokens = [
        server.issue_jwt(scopes=TOKEN_SCOPES, lifetime=3600, claims={"cnf": key.cnf})
        for _ in range(count)
    ]
    first = [(t, key.proof("GET", URL, access_token=t)) for t in tokens]
    same = tokens[0]
    repeat = [(same, key.proof("GET", URL, access_token=same)) for _ in range(count)]
    plain = server.issue_jwt(scopes=TOKEN_SCOPES, lifetime=3600)
    split = budget.jwt_warmup

    guards = {name: _guard(server) for name in (TG_FIRST, TG_REPEAT, TG_PLAIN)}

    def tokenguard(guard: TokenGuard) -> Any:
        def call(item: tuple[str, str]) -> object:
            token, proof = item
            return guard.validate(token, dpop=DPoPProof(proof, "GET", URL, "DPoP"))

        return call

    plain_guard = guards[TG_PLAIN]

    def tokenguard_plain(token: str) -> object:
        return plain_guard.validate(token)

    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_unb64(key.jwk["x"]), "big"),
        int.from_bytes(_unb64(key.jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    ecdsa = ec.ECDSA(hashes.SHA256())

    def prepared(proof: str) -> tuple[bytes, bytes]:
        head, payload, signature = proof.split(".")
        raw = _unb64(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        return f"{head}.{payload}".encode("ascii"), der

    def floor(item: tuple[bytes, bytes]) -> object:
        public.verify(item[1], item[0], ecdsa)
        return None

    by_hand = _by_hand(server)
    # Warm-up: fetch the JWKS, fill the plain token's cache entry.
    for guard in guards.values():
        guard.validate(plain)
    rows = [
        Contender(FLOOR, floor, [prepared(p) for _, p in first[split:]], [prepared(first[0][1])]),
        Contender(TG_FIRST, tokenguard(guards[TG_FIRST]), first[split:], first[:split]),
        Contender(TG_REPEAT, tokenguard(guards[TG_REPEAT]), repeat[split:], repeat[:split]),
        Contender(TG_PLAIN, tokenguard_plain, [plain] * (count - split), [plain]),
        Contender(BY_HAND_FIRST, by_hand, first[split:], first[:split]),
        # The same token with new proofs (PyJWT has no cache: the same work again).
        Contender(BY_HAND_REPEAT, by_hand, repeat[split:], repeat[:split]),
    ]
    timings = measure(rows, batch=budget.batch, rounds=budget.rounds)
    for guard in guards.values():
        guard.close()

    table = Table(
        "DPoP-bound JWT (RS256 token, ES256 proof): median µs per validation",
        ("", "median µs", "× floor", "µs over floor"),
    )
    base = timings[FLOOR]
    for name in ROWS:
        timing = timings[name]
        table.rows.append(
            (
                name,
                us(timing.median_us),
                ratio(paired_ratio(timing, base)),
                "" if name == FLOOR else us(paired_difference_us(timing, base)),
            )
        )
    table.notes.append(
        f"{timings[TG_FIRST].calls * budget.batch:,} validations timed per contender, every "
        "one with a new proof (new jti, remembered by tokenguard's replay cache)"
    )
    table.notes.append(
        "tokenguard vs PyJWT by hand: first seen "
        f"{ratio(paired_ratio(timings[TG_FIRST], timings[BY_HAND_FIRST]))}, repeated "
        f"{ratio(paired_ratio(timings[TG_REPEAT], timings[BY_HAND_REPEAT]))} "
        "(lower is better; the hand-written check has no replay cache, no nonce, no URL "
        "normalisation and no cnf shape checks)"
    )
    table.notes.append(
        "ratios and differences are taken round by round, then the median over rounds"
    )
    return [table]
