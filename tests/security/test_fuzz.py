"""Property-based fuzzing of the whole guard, through both shells.

Every property has the same shape: whatever the input, ``validate`` returns a
``TokenInfo`` or raises a ``TokenGuardError`` (with the status of its class), never any
other exception and never a hang; and a ``TokenInfo`` comes back only for a genuinely
valid input, judged by an independent model of the documented rules (``should_pass_*``).
Where the model is exact, the converse is asserted too (a valid input must pass).

The number of examples comes from the hypothesis profile (``ci`` by default, ``long``
with ``TOKENGUARD_FUZZ=long`` or ``--hypothesis-profile=long``); the examples each
property actually ran are printed in the terminal summary.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import time
import zlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tokenguard import (
    InvalidRequest,
    InvalidSignature,
    MissingToken,
    Policy,
    TokenGuard,
    TokenGuardError,
    TokenInfo,
    ValidationUnavailable,
    bearer_token,
)
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for
from . import forge
from .conftest import Insider
from .support import is_refusal, outcome

# Long runs get a proportionate timeout; ci keeps the project's 120 s.
pytestmark = pytest.mark.timeout(max(120, settings().max_examples // 10))

#: Per property (test node id): examples run and how they ended, for the terminal summary.
EXAMPLES: dict[str, Counter[str]] = {}
LEEWAY = 60.0
MAX_DATE = 253402300799
HANG = 10.0  # seconds: any single validation slower than this is a hang
# Strategies must not depend on the clock while a test runs (hypothesis replays them), so
# times are drawn around this fixed instant; the model judges them against the real clock.
T0 = int(time.time())
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_AT_JWT = {"at+jwt", "application/at+jwt"}
_PLAIN = {"jwt", "application/jwt"}
_BEARER = {"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"}
_DECODED = ("gzip", "x-gzip", "deflate")
_STRINGS = ("iss", "sub", "client_id", "username", "jti", "token_type", "acr")
_DATES = ("exp", "iat", "nbf", "auth_time")


@pytest.fixture
def count(request: pytest.FixtureRequest) -> Counter[str]:
    """The tally of the running property: ``run`` adds each example's outcome."""
    return EXAMPLES.setdefault(request.node.nodeid, Counter())


def run(
    check: Driver,
    guard: TokenGuard,
    token: Any,
    tally: Counter[str],
    policy: str | None = None,
    *,
    secret: bool = True,
) -> Any:
    """One validation: TokenInfo or TokenGuardError (status checked), timed and tallied."""
    started = time.perf_counter()
    result = outcome(check, guard, token, policy, secret=secret)
    elapsed = time.perf_counter() - started
    assert elapsed < HANG, f"validation took {elapsed:.1f}s"
    tally["examples"] += 1
    tally["accepted" if isinstance(result, TokenInfo) else type(result).__name__] += 1
    if currently_in_test_context():
        event("accepted" if isinstance(result, TokenInfo) else type(result).__name__)
    return result


# -- an independent model of the documented rules ---------------------------------------------


class _Bad(Exception):
    pass


def _no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Bad
    return dict(pairs)


def _no_constant(_: str) -> Any:
    raise _Bad


def strict_loads(data: bytes) -> Any:
    """RFC 8259 JSON in UTF-8, no duplicate names, no NaN/Infinity; raises _Bad."""
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_dups, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as error:
        raise _Bad from error


def _date(value: Any) -> bool:
    return type(value) in (int, float) and 0 <= value <= MAX_DATE


def _strings(value: Any) -> bool:
    return type(value) is str or (type(value) is list and all(type(v) is str for v in value))


def _nesting(value: Any) -> int:
    if type(value) is dict:
        return 1 + max(map(_nesting, value.values()), default=0)
    if type(value) is list:
        return 1 + max(map(_nesting, value), default=0)
    return 0


#: Containers allowed, counting the claims object itself (tokenguard.models.MAX_DEPTH is 32
#: levels below it); RFC 8259 §9 lets a parser set such a limit.
MAX_NESTING = 33


def claims_well_typed(claims: dict[str, Any]) -> bool:
    """RFC 7519 §4.1 / RFC 7662 §2.2 member types: a member that is present must have its
    type, and null is none of them."""
    if any(n in claims and type(claims[n]) is not str for n in _STRINGS):
        return False
    if any(n in claims and not _date(claims[n]) for n in _DATES):
        return False
    if any(n in claims and not _strings(claims[n]) for n in ("aud", "scope", "scp", "amr")):
        return False
    if "cnf" in claims and type(claims["cnf"]) is not dict:
        return False
    return _nesting(claims) <= MAX_NESTING


class Unsure(Exception):
    """The model cannot decide (a time within a second of a boundary)."""


def _times_ok(claims: dict[str, Any], now: float, *, require_exp: bool, require_iat: bool) -> bool:
    def near(a: float, b: float) -> bool:
        if abs(a - b) < 2:
            raise Unsure
        return False

    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if exp is None:
        if require_exp:
            return False
    elif near(now, exp + LEEWAY) or now >= exp + LEEWAY:
        return False
    if nbf is not None and (near(now + LEEWAY, nbf) or now + LEEWAY < nbf):
        return False
    if iat is None:
        return not require_iat
    return not (near(now + LEEWAY, iat) or now + LEEWAY < iat)


def _audience_ok(claims: dict[str, Any], *, required: bool) -> bool:
    # A present aud must name the audience, even an empty list (issue 14 rule 4).
    aud = claims.get("aud")
    if aud is None:
        return not required
    return AUDIENCE in ([aud] if isinstance(aud, str) else aud)


def should_pass_jwt(
    token: str, *, alg: str, kid: str, issuer: str, now: float, accept_plain: bool
) -> bool:
    """RFC 9068 §4 / RFC 8725 as documented in docs/concepts.md, for a token whose
    signature was made over its exact segments with the key ``kid`` for ``alg``."""
    try:
        h64, p64, _ = token.split(".")
        header = strict_loads(forge.b64url_decode(h64))
        claims = strict_loads(forge.b64url_decode(p64))
    except (_Bad, ValueError):
        return False
    if type(header) is not dict or type(claims) is not dict:
        return False
    if header.get("alg") != alg or "crit" in header or "b64" in header:
        return False
    # A header parameter that is present must have its type (null included).
    cty, typ = header.get("cty"), header.get("typ")
    if "cty" in header and (type(cty) is not str or cty.lower() in _PLAIN):
        return False
    if "kid" in header and header["kid"] != kid:
        return False
    if "typ" in header and type(typ) is not str:
        return False
    typed = typ is not None and typ.lower() in _AT_JWT
    if not typed and not (accept_plain and (typ is None or typ.lower() in _PLAIN)):
        return False
    if not claims_well_typed(claims) or claims.get("iss") != issuer:
        return False
    if not _times_ok(claims, now, require_exp=True, require_iat=typed):
        return False
    # RFC 9068 §2.2: an at+jwt carries sub, client_id and jti (Policy.require_rfc9068_claims).
    if typed and any(claims.get(name) is None for name in ("sub", "client_id", "jti")):
        return False
    return _audience_ok(claims, required=True) and not claims.get("cnf")


def should_pass_introspection(
    status: int, content_type: str, body: bytes, *, issuer: str, now: float
) -> bool:
    """RFC 7662 §2.2 and §4, as documented in docs/concepts.md."""
    media = content_type.split(";", 1)[0].strip().lower()
    if status != 200 or not (media == "application/json" or media.endswith("+json")):
        return False
    try:
        document = strict_loads(body)
    except _Bad:
        return False
    if type(document) is not dict or document.get("active") is not True:
        return False
    # In an answer (unlike a token) a null member means "absent" (docs/concepts.md).
    document = {name: value for name, value in document.items() if value is not None}
    if not claims_well_typed(document):
        return False
    if document.get("iss") is not None and document["iss"] != issuer:
        return False
    if not _times_ok(document, now, require_exp=False, require_iat=False):
        return False
    kind = document.get("token_type")
    if kind is not None and kind.lower() not in _BEARER:
        return False
    # The default policy requires aud in an answer about an opaque token (issue 14).
    return _audience_ok(document, required=True) and not document.get("cnf")


# -- strategies ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _times(now: int) -> st.SearchStrategy[Any]:
    return (
        st.integers(min_value=now - 10_000, max_value=now + 10_000)
        | st.sampled_from([now - 3600, now + 3600, 0, -1, MAX_DATE, MAX_DATE + 1, 10**30])
        | st.floats(min_value=now - 10_000, max_value=now + 10_000)
        | json_values
    )


def claim_overrides(issuer: str, now: int) -> st.SearchStrategy[dict[str, Any]]:
    """Overrides for ``issue_jwt(claims=...)``: plausible and hostile values; None removes."""
    by_name: dict[str, st.SearchStrategy[Any]] = {
        "iss": st.sampled_from([issuer, issuer + "/", issuer.upper(), "https://evil.example"]),
        "aud": st.sampled_from([AUDIENCE, [AUDIENCE], ["urn:x", AUDIENCE], "urn:x", [], ""]),
        "exp": _times(now),
        "nbf": _times(now),
        "iat": _times(now),
        "auth_time": _times(now),
        "scope": st.sampled_from(["orders:read", "a b", "", ["x"]]),
        "scp": st.sampled_from([["orders:read"], "a", []]),
        "cnf": st.sampled_from([{}, {"jkt": "x"}, "x"]),
        "sub": st.sampled_from(["user-2", ""]),
        "client_id": st.sampled_from(["c"]),
        "jti": st.sampled_from(["j"]),
        "amr": st.sampled_from([["pwd"], "pwd"]),
        "token_type": st.sampled_from(["Bearer"]),
    }

    def value_for(name: str) -> st.SearchStrategy[Any]:
        return by_name.get(name, st.nothing()) | json_values

    names = st.sampled_from(sorted(by_name)) | st.text(max_size=6)
    pairs = st.lists(names.flatmap(lambda n: st.tuples(st.just(n), value_for(n))), max_size=5)
    return pairs.map(dict)


def header_overrides(kid: str, alg: str) -> st.SearchStrategy[dict[str, Any]]:
    """Overrides for ``issue_jwt(header=...)``: the JOSE members that matter, plus noise."""
    by_name: dict[str, st.SearchStrategy[Any]] = {
        "alg": st.sampled_from([alg, "RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256", "none"]),
        "kid": st.sampled_from([kid, "other", "", "k" * 300]),
        "typ": st.sampled_from(
            ["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt", "", "id_token+jwt"]
        ),
        "cty": st.sampled_from(["JWT", "jwt", "json", "application/json"]),
        "crit": st.sampled_from([[], ["exp"], ["b64"]]),
        "b64": st.booleans(),
        "jku": st.just("http://127.0.0.1:1/jwks.json"),
        "x5u": st.just("http://127.0.0.1:1/cert.pem"),
        "jwk": st.just({"kty": "oct", "k": "c2VjcmV0"}),
        "zip": st.just("DEF"),
        "enc": st.just("A256GCM"),
    }

    def value_for(name: str) -> st.SearchStrategy[Any]:
        return by_name.get(name, st.nothing()) | json_values

    names = st.sampled_from(sorted(by_name)) | st.text(max_size=6)
    pairs = st.lists(names.flatmap(lambda n: st.tuples(st.just(n), value_for(n))), max_size=4)
    return pairs.map(dict)


SIGNING = ["RS256", "PS256", "ES256", "EdDSA"]


def _genuine(server: AuthServer) -> list[str]:
    return [server.issue_jwt(alg=alg, lifetime=3600) for alg in SIGNING]


# -- 1. arbitrary strings -----------------------------------------------------------------------

_TOKEN_CHARS = B64URL + ".~+/="
strings = st.one_of(
    st.text(max_size=300),
    st.text(st.characters(categories=["Cs", "Cc", "Zs", "Lu"]), max_size=50),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=300),
    st.text(alphabet=B64URL + ".", max_size=300),
    st.text(alphabet=_TOKEN_CHARS + " \t\r\n\x00", max_size=300),
)


@given(data=st.data())
def test_fuzz_arbitrary_strings(
    server: AuthServer, check: Driver, count: Counter[str], data: st.DataObject
) -> None:
    """Text, ASCII and base64url-alphabet strings: never accepted, always a 401."""
    if "strings" not in _state:
        _state["strings"] = guard_for(server)
    guard = _state["strings"]
    token = data.draw(strings)
    result = run(check, guard, token, count, secret=False)
    assert isinstance(result, TokenGuardError)
    assert result.status_code == 401


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(
        st.binary(max_size=64).map(forge.b64url),
        json_values.map(lambda v: forge.b64url(forge.raw_json(v))),
        st.dictionaries(
            st.sampled_from(["alg", "kid", "typ", "crit", "iss", "exp"]), json_values
        ).map(lambda v: forge.b64url(forge.raw_json(v))),
        st.text(alphabet=B64URL, max_size=40),
        st.just(""),
    )


@given(data=st.data())
def test_fuzz_jose_shaped_strings(
    server: AuthServer, check: Driver, count: Counter[str], data: st.DataObject
) -> None:
    """Three (or five) dot-separated segments, each random bytes, random JSON, a genuine
    segment or base64url noise: accepted only if it is one of the genuine tokens."""
    key = "jose"
    if key not in _state:
        _state[key] = (guard_for(server), _genuine(server))
    guard, genuine = _state[key]
    pool = [seg for token in genuine for seg in token.split(".")]
    segment = _segment() | st.sampled_from(pool)
    parts = data.draw(
        st.lists(segment, min_size=3, max_size=3) | st.lists(segment, min_size=5, max_size=5)
    )
    token = ".".join(parts)
    result = run(check, guard, token, count, secret=False)
    if isinstance(result, TokenInfo):
        assert token in genuine
    else:
        assert result.status_code == 401


# -- 2. mutated valid tokens --------------------------------------------------------------------

_MUTATIONS = [
    "flip-bit",
    "replace-char",
    "delete-char",
    "insert-char",
    "insert-dot",
    "swap-segments",
    "duplicate-segment",
    "drop-segment",
    "pad-segment",
    "std-alphabet",
    "non-canonical",
    "truncate",
    "splice",
    "reencode-json",
    "swapcase",
]


def _mutate(data: st.DataObject, token: str, others: list[str]) -> str:
    op = data.draw(st.sampled_from(_MUTATIONS), label="mutation")
    parts = token.split(".")
    i = data.draw(st.integers(0, len(parts) - 1), label="segment")
    if op == "flip-bit":
        try:
            raw = bytearray(forge.b64url_decode(parts[i]))
        except ValueError:
            return token
        if raw:
            bit = data.draw(st.integers(0, len(raw) * 8 - 1), label="bit")
            raw[bit // 8] ^= 1 << (bit % 8)
        parts[i] = forge.b64url(bytes(raw))
    elif op in ("replace-char", "delete-char", "insert-char", "insert-dot", "truncate", "swapcase"):
        p = data.draw(st.integers(0, max(0, len(token) - 1)), label="position")
        c = data.draw(st.sampled_from(B64URL + ".=+/ \x00\u00e9"), label="char")
        return {
            "replace-char": token[:p] + c + token[p + 1 :],
            "delete-char": token[:p] + token[p + 1 :],
            "insert-char": token[:p] + c + token[p:],
            "insert-dot": token[:p] + "." + token[p:],
            "truncate": token[:p],
            "swapcase": token[:p] + token[p : p + 1].swapcase() + token[p + 1 :],
        }[op]
    elif op == "swap-segments" and len(parts) > 1:
        j = data.draw(st.integers(0, len(parts) - 1), label="other segment")
        parts[i], parts[j] = parts[j], parts[i]
    elif op == "duplicate-segment":
        parts.insert(i, parts[i])
    elif op == "drop-segment":
        del parts[i]
    elif op == "pad-segment":
        parts[i] += data.draw(st.sampled_from(["=", "==", "==="]))
    elif op == "std-alphabet":
        parts[i] = parts[i].replace("-", "+").replace("_", "/")
    elif op == "non-canonical" and len(parts[i]) % 4 in (2, 3) and parts[i][-1] in B64URL:
        last = B64URL.index(parts[i][-1])
        step = data.draw(st.integers(1, 3 if len(parts[i]) % 4 == 3 else 15))
        parts[i] = parts[i][:-1] + B64URL[(last + step) % 64]
    elif op == "splice":
        other = data.draw(st.sampled_from(others)).split(".")
        parts[i] = other[min(i, len(other) - 1)]
    elif op == "reencode-json":
        try:
            value = json.loads(forge.b64url_decode(parts[i]))
        except ValueError:
            return token
        style = data.draw(st.sampled_from(["spaced", "sorted", "reversed", "ascii"]))
        if style == "spaced":
            text = json.dumps(value, indent=1)
        elif style == "sorted":
            text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        elif style == "reversed" and isinstance(value, dict):
            text = json.dumps(dict(reversed(value.items())), separators=(",", ":"))
        else:
            text = json.dumps(value, ensure_ascii=True)
        parts[i] = forge.b64url(text.encode())
    return ".".join(parts)


@given(data=st.data())
def test_fuzz_mutated_valid_tokens(
    server: AuthServer, check: Driver, count: Counter[str], data: st.DataObject
) -> None:
    """Bit flips in each segment, segment swaps, duplication, re-encodings, truncation,
    inserted dots... (1 to 3 mutations) of genuine RS256/PS256/ES256/EdDSA tokens: a
    TokenInfo only if the result is one of the untouched genuine tokens."""
    key = "mutated"
    if key not in _state:
        _state[key] = (guard_for(server), _genuine(server))
    guard, genuine = _state[key]
    token = data.draw(st.sampled_from(genuine), label="genuine")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        token = _mutate(data, token, genuine)
    result = run(check, guard, token, count)
    if isinstance(result, TokenInfo):
        assert token in genuine, token
    else:
        assert is_refusal(result), result


# -- 3. arbitrary headers and claims, validly signed by the issuer --------------------------


@given(data=st.data())
def test_fuzz_signed_headers_and_claims(
    server: AuthServer, check: Driver, count: Counter[str], data: st.DataObject
) -> None:
    """Header and claim overrides (plausible, hostile and arbitrary JSON values) minted by
    the issuer with its real key: the guard accepts exactly the tokens the model of the
    documented rules accepts."""
    key = "signed"
    if key not in _state:
        kids = {k["alg"]: k["kid"] for k in server.jwks()["keys"]}
        _state[key] = (
            guard_for(server, verified_cache_ttl=0),
            guard_for(server, verified_cache_ttl=0, accept_plain_jwt=True),
            kids,
        )
    strict, lenient, kids = _state[key]
    alg = data.draw(st.sampled_from(SIGNING), label="alg")
    header = data.draw(header_overrides(kids[alg], alg), label="header")
    claims = data.draw(claim_overrides(server.issuer, T0), label="claims")
    typ = data.draw(st.sampled_from(["at+jwt", None, "JWT"]), label="typ")
    plain = data.draw(st.booleans(), label="accept_plain_jwt")
    try:
        token = server.issue_jwt(alg=alg, header=header, claims=claims, typ=typ)
    except (TypeError, ValueError):  # the server cannot serialise it (e.g. a non-str key)
        assume(False)
        raise
    started = time.time()
    result = run(check, lenient if plain else strict, token, count)
    try:
        expected = should_pass_jwt(
            token, alg=alg, kid=kids[alg], issuer=server.issuer, now=started, accept_plain=plain
        )
    except Unsure:
        return
    if isinstance(result, TokenInfo):
        assert expected, f"ACCEPTED against the model: {token}"
    else:
        assert is_refusal(result), result
        assert not expected, f"REFUSED against the model ({result!r}): {token}"


# -- 4. arbitrary JSON text as header and payload, validly signed (insider key) ------------


def _json_text(value: Any, style: str) -> bytes:
    if style == "compact":
        return forge.raw_json(value)
    if style == "spaced":
        return json.dumps(value, indent=2, allow_nan=True).encode()
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode()


def _with_duplicate(text: bytes, name: str, value: Any) -> bytes:
    if not text.rstrip().endswith(b"}") or text.strip() == b"{}":
        return text
    body = text.rstrip()[:-1]
    return body + b"," + json.dumps(name).encode() + b":" + forge.raw_json(value) + b"}"


@given(data=st.data())
def test_fuzz_raw_json_header_and_payload(
    server: AuthServer,
    check: Driver,
    insider: Insider,
    count: Counter[str],
    data: st.DataObject,
) -> None:
    """Recursive JSON values (objects or not, with NaN, huge numbers, duplicate members,
    other formatting) as the exact header and payload text, validly signed by a trusted key:
    accepted exactly when the model accepts the parsed JSON."""
    key = "raw"
    if key not in _state:
        _state[key] = (insider.guard(server, Policy(name="jwt", audience=AUDIENCE, mode="jwt")),)
    (guard,) = _state[key]
    base_header = insider.header()
    base_claims = forge.claims_for(server.issuer, AUDIENCE)
    header: Any = data.draw(
        st.one_of(
            header_overrides(insider.rsa_kid, "RS256").map(lambda o: {**base_header, **o}),
            st.just(base_header),
            json_values,
        ),
        label="header",
    )
    claims: Any = data.draw(
        st.one_of(
            claim_overrides(server.issuer, T0).map(lambda o: {**base_claims, **o}),
            st.just(base_claims),
            json_values,
        ),
        label="claims",
    )
    htext = _json_text(header, data.draw(st.sampled_from(["compact", "spaced", "raw"])))
    ptext = _json_text(claims, data.draw(st.sampled_from(["compact", "spaced", "raw"])))
    if data.draw(st.booleans(), label="duplicate"):
        name = data.draw(st.sampled_from(["alg", "kid", "typ", "iss", "aud", "exp"]))
        target = data.draw(st.booleans())
        dup_value = data.draw(json_values)
        if target:
            htext = _with_duplicate(htext, name, dup_value)
        else:
            ptext = _with_duplicate(ptext, name, dup_value)
    token = insider.sign(htext, ptext)
    started = time.time()
    result = run(check, guard, token, count, "jwt")
    try:
        expected = should_pass_jwt(
            token,
            alg="RS256",
            kid=insider.rsa_kid,
            issuer=server.issuer,
            now=started,
            accept_plain=False,
        )
    except Unsure:
        return
    if isinstance(result, TokenInfo):
        assert expected, f"ACCEPTED against the model: {htext!r} {ptext!r}"
    else:
        assert is_refusal(result), result
        assert not expected, f"REFUSED against the model ({result!r}): {htext!r} {ptext!r}"


# -- 5. arbitrary introspection answers -------------------------------------------------------


def answer_bodies(issuer: str, now: int) -> st.SearchStrategy[bytes]:
    base = {
        "active": True,
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "user-1",
        "scope": "orders:read",
        "token_type": "Bearer",
        "exp": now + 86_400,  # still valid during a long run
        "iat": now,
    }
    overrides = claim_overrides(issuer, now) | st.fixed_dictionaries(
        {"active": st.sampled_from([True, False, "true", 1, None, [True], "yes"]) | json_values}
    )
    near_valid = st.tuples(overrides, st.sets(st.sampled_from(sorted(base)), max_size=2)).map(
        lambda t: {k: v for k, v in {**base, **t[0]}.items() if k not in t[1]}
    )
    return st.one_of(
        near_valid.map(forge.raw_json),
        st.just(forge.raw_json(base)),
        json_values.map(forge.raw_json),
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
    )


@given(data=st.data())
def test_fuzz_introspection_answers(
    server: AuthServer, check: Driver, count: Counter[str], data: st.DataObject
) -> None:
    """Arbitrary bodies, content types and statuses served by the introspection endpoint:
    accepted exactly when the model of RFC 7662 §2.2/§4 accepts the answer."""
    key = "introspection"
    if key not in _state:
        _state[key] = (
            guard_for(
                server, introspection_cache_ttl=0, inactive_cache_ttl=0, verified_cache_ttl=0
            ),
            server.issue_opaque(),
        )
    guard, token = _state[key]
    body = data.draw(answer_bodies(server.issuer, T0), label="body")
    content_type = data.draw(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "APPLICATION/JSON",
                "application/token-introspection+jwt",
                "application/problem+json",
                "text/plain",
                "",
            ]
        ),
        label="content type",
    )
    status = data.draw(st.sampled_from([200, 200, 200, 200, 201, 204, 400, 401, 500, 503]))
    # docs/concepts.md Transport: gzip/deflate answers are decoded (bounded), other
    # encodings refused. The body is really compressed, or only labelled so (corrupt).
    encoding = data.draw(
        st.sampled_from(["", "", "", "identity", "gzip", "GZIP", "x-gzip", "deflate", "br"]),
        label="content encoding",
    )
    compress = encoding.lower() in _DECODED and data.draw(st.booleans(), label="compressed")
    wire = body
    if compress:
        wire = gzip.compress(body) if "gzip" in encoding.lower() else zlib.compress(body)
    headers = {"Content-Encoding": encoding} if encoding else {}
    server.set_failure(
        "introspection", status, wire, content_type=content_type or None, headers=headers
    )
    started = time.time()
    result = run(check, guard, token, count)
    try:
        expected = should_pass_introspection(
            status,
            content_type or "application/octet-stream",
            body,
            issuer=server.issuer,
            now=started,
        ) and (encoding.lower() in ("", "identity") or compress)
    except Unsure:
        return
    shown = f"{status} {content_type!r} {encoding!r} compressed={compress} {body!r}"
    if isinstance(result, TokenInfo):
        assert expected, f"ACCEPTED against the model: {shown}"
    else:
        assert not expected, f"REFUSED against the model ({result!r}): {shown}"


# -- 6. arbitrary key sets --------------------------------------------------------------------


def jwk_variants(real: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """The real JWKs with members removed, replaced or added, and JWK-shaped noise."""
    members = st.sampled_from(
        ["kty", "crv", "alg", "kid", "use", "key_ops", "n", "e", "x", "y", "d", "k"]
    )
    values = (
        st.sampled_from(
            [
                "RSA",
                "EC",
                "OKP",
                "oct",
                "P-256",
                "Ed25519",
                "RS256",
                "ES256",
                "EdDSA",
                "sig",
                "enc",
                ["verify"],
                ["sign"],
                "AQAB",
                "",
                "AA",
            ]
        )
        | json_values
    )

    def mutate(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        changes = st.lists(st.tuples(members, values | st.none()), max_size=3)
        return changes.map(
            lambda cs: {k: v for k, v in {**base, **dict(cs)}.items() if v is not None}
        )

    return st.sampled_from(real).flatmap(
        lambda base: st.just(base) | mutate(base)
    ) | st.dictionaries(members, values, max_size=6)


def _material(jwk: dict[str, Any]) -> tuple[Any, ...]:
    """The members that make the key (RFC 7638 §3.2); others (a "crv" on an RSA key) do not."""
    members = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        return (None,)
    return (kty, *(jwk.get(m) for m in members.get(kty, ())))


@given(data=st.data())
def test_fuzz_jwks_documents(
    server: AuthServer, check: Driver, count: Counter[str], data: st.DataObject
) -> None:
    """Arbitrary key set bodies (noise, arbitrary JSON, mutated copies of the real keys) and
    Cache-Control values: a genuine token passes only if the set holds its real key (same
    material, same or no kid, use/alg/key_ops compatible), and always passes when the set
    holds the untouched real JWK."""
    key = "jwks"
    if key not in _state:
        settings_ = {
            # A key set lives 1 µs (whatever Cache-Control says): each validation fetches
            # its own.
            "jwks_min_ttl": 1e-6,
            "jwks_max_ttl": 1e-6,
            "jwks_refresh_cooldown": 0,
            "jwks_stale_window": 0,
        }
        guard = guard_for(
            server, verified_cache_ttl=0, settings=settings_, issuer={"jwks_uri": server.jwks_uri}
        )
        real = server.jwks()["keys"]
        tokens = {alg: server.issue_jwt(alg=alg, lifetime=3600) for alg in SIGNING}
        _state[key] = (guard, real, tokens)
    guard, real, tokens = _state[key]
    alg = data.draw(st.sampled_from(SIGNING), label="token alg")
    token = tokens[alg]
    keys = data.draw(st.lists(jwk_variants(real), max_size=5), label="keys")
    document: Any = data.draw(
        st.one_of(
            st.just({"keys": keys}),
            st.fixed_dictionaries({"keys": st.just(keys)}, optional={"x": json_values}),
            json_values,
        ),
        label="document",
    )
    body = (
        forge.raw_json(document) if data.draw(st.booleans()) else data.draw(st.binary(max_size=64))
    )
    cache_control = data.draw(
        st.sampled_from(["max-age=300", "no-store", 'max-age="9999999999"', "max-age=-1", ""])
        | st.text(max_size=30),
        label="cache-control",
    )
    headers = (
        {"Cache-Control": cache_control}
        if cache_control.isprintable() and cache_control.isascii()
        else {}
    )
    server.set_failure("jwks", 200, body, content_type="application/json", headers=headers)
    result = run(check, guard, token, count)
    ours = next(k for k in real if k["alg"] == alg)
    parsed = None
    with contextlib.suppress(_Bad):
        parsed = strict_loads(body)
    listed = parsed.get("keys") if isinstance(parsed, dict) else None
    candidates = listed[:100] if isinstance(listed, list) else []
    if isinstance(result, TokenInfo):
        assert any(
            isinstance(k, dict)
            and _material(k) == _material(ours)
            and k.get("kid") in (None, ours["kid"])
            and k.get("use") in (None, "sig")
            and k.get("alg") in (None, alg)
            for k in candidates
        ), f"ACCEPTED with a key set lacking the real key: {body!r}"
    else:
        assert type(result) in (InvalidSignature, ValidationUnavailable), result
        assert ours not in candidates, f"REFUSED ({result!r}) with the real key present: {body!r}"


# -- 7. the Authorization header and forget() ------------------------------------------------

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
headers = st.one_of(
    st.text(max_size=60),
    st.tuples(
        st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "DPoP", "Bearer:", ""]),
        st.sampled_from([" ", "  ", "\t", "", " \u00a0"]),
        st.text(alphabet=_TOKEN_CHARS + " ,\t\x00\u00e9\ud800", max_size=40),
    ).map("".join),
)


@given(header=headers | st.none())
def test_fuzz_authorization_header(count: Counter[str], header: str | None) -> None:
    """RFC 6750 §2.1: ``bearer_token`` returns exactly one b64token taken from the header,
    or raises MissingToken (no Bearer credentials, 401) or InvalidRequest (400)."""
    count["examples"] += 1
    try:
        token = bearer_token(header)
    except (MissingToken, InvalidRequest) as error:
        count[type(error).__name__] += 1
        return
    count["accepted"] += 1
    assert header is not None
    assert _B64TOKEN.fullmatch(token)
    assert token in header
    assert header.strip().lower().startswith("bearer ")


def test_forget_accepts_any_string(server: AuthServer) -> None:
    """``forget`` is called with tokens taken from requests (a revocation or logout
    endpoint); a token that can never have been cached is simply not there. (Regression:
    a lone surrogate raised UnicodeEncodeError; fixed in a325a99.)"""
    guard = guard_for(server)
    for token in ("\u00e9", "a" * 20_000, "\ud800"):
        guard.forget(token)


@pytest.mark.parametrize("cache_control", ["no-store", "max-age=0"])
def test_jwks_ttl_zero(server: AuthServer, check: Driver, cache_control: str) -> None:
    """RFC 9111 §5.2.2.5 (no-store) / §5.2.2.1 (max-age=0): the response may not be reused
    later, but the request that fetched it may use it. (Regression, found by
    test_fuzz_jwks_documents: with jwks_min_ttl=0 every token got 503; fixed in a325a99.)"""
    server.set_failure("jwks", 200, server.jwks(), headers={"Cache-Control": cache_control})
    guard = guard_for(server, settings={"jwks_min_ttl": 0, "jwks_stale_window": 0})
    result = run(check, guard, server.issue_jwt(), Counter())
    assert isinstance(result, TokenInfo), result


# Guards and genuine tokens are built once per test (per shell), not per example.
_state: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _fresh_state() -> Any:
    _state.clear()
    yield
    _state.clear()
