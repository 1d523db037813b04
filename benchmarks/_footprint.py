"""Memory per cached token and the import time of ``tokenguard``."""

from __future__ import annotations

import compileall
import gc
import linecache
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import msgspec
from _common import AUDIENCE, TOKEN_SCOPES, Budget, Table
from _jwt_bench import hs_issuer, hs_policy, mint_hs256, personal, short_path
from _opaque_bench import POLICY

import tokenguard
from tokenguard import Settings, TokenGuard
from tokenguard.core.caches import IntrospectionCache, token_digest
from tokenguard.core.claims import REGISTERED_CLAIMS
from tokenguard.core.exchange import HttpResponse
from tokenguard.core.introspection import IntrospectionRecord, read_response
from tokenguard.testing import AuthServer

TARGET_MB = 50
REFERENCE_ENTRIES = 100_000

#: What identity-rich servers (Keycloak, Auth0, Entra ID) add to an access token, on top
#: of the 8 claims of the other benchmarks; "{n}" becomes the user's number.
RICH_CLAIMS: dict[str, Any] = {
    "name": "User Number {n}",
    "given_name": "User",
    "family_name": "Number {n}",
    "preferred_username": "user{n}",
    "email": "user{n}@example.com",
    "email_verified": True,
    "sid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f{n}",
    "azp": "tokenguard-test-client",
    "realm_access": {"roles": ["offline_access", "uma_authorization", "default-roles"]},
    "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
    "allowed-origins": ["https://app.example.com"],
}
#: The claims list of the minimised rows: the service reads one claim beyond the
#: registered ones (which are always kept).
SERVICE_CLAIMS = ("email",)


def traced_growth(fill: Callable[[], None]) -> int:
    """Bytes still allocated after ``fill()`` (garbage collected before and after)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


def verified_cache_bytes(
    count: int, *, claims: Sequence[str] | None = None, extra: dict[str, Any] | None = None
) -> float:
    """Bytes per verified-cache entry, filled by validating ``count`` new HS256 tokens."""
    secret = secrets.token_bytes(32)
    # A long verified-cache TTL: a fill of 100,000 on a slow machine may take minutes.
    policy = hs_policy(POLICY, claims).model_copy(update={"verified_cache_ttl": 3600.0})
    guard = TokenGuard(
        issuers=[hs_issuer(secret)],
        policies=[policy],
        # Twice the fill: the cache keeps at least half its size (Generations), so
        # nothing of the fill is evicted and every entry is measured.
        settings=Settings(verified_cache_size=2 * count + 2),
    )
    tokens = mint_hs256(secret, count + 1, extra=extra)
    warm, tokens = tokens[0], tokens[1:]
    guard.validate(warm, POLICY)
    guard.forget(warm)

    def fill() -> None:
        for token in tokens:
            guard.validate(token, POLICY)

    grown = traced_growth(fill)
    # Nothing was evicted: the first and the last token are both still cached.
    assert guard.validate(tokens[0], POLICY).cached
    assert guard.validate(tokens[-1], POLICY).cached
    return grown / count


def introspection_answers(count: int, extra: dict[str, Any] | None) -> list[bytes]:
    """Active introspection answers (RFC 7662 §2.2) as the AuthServer writes them."""
    now = int(time.time())
    return [
        msgspec.json.encode(
            {
                "active": True,
                "token_type": "Bearer",
                "iss": "https://as.example.com",
                "sub": f"user-{n}",
                "aud": AUDIENCE,
                "exp": now + 3600,
                "iat": now,
                "jti": secrets.token_urlsafe(16),
                "client_id": "tokenguard-test-client",
                "scope": " ".join(TOKEN_SCOPES),
                **personal(extra, n),
            }
        )
        for n in range(count)
    ]


def introspection_cache_bytes(
    count: int, *, claims: Sequence[str] | None = None, extra: dict[str, Any] | None = None
) -> float:
    """Bytes per introspection-cache entry: ``count`` answers read by the engine's own
    ``read_response`` (trimmed to the policy's claims, as the engine does before
    caching) and put in the cache. No HTTP: the cache's footprint, not the client's."""
    keep = None if claims is None else REGISTERED_CLAIMS | frozenset(claims)
    cache = IntrospectionCache(2 * count + 2, max_active_ttl=3600, max_inactive_ttl=10)
    headers = {"content-type": "application/json"}
    responses = [HttpResponse(200, headers, body) for body in introspection_answers(count, extra)]
    digests = [token_digest(f"opaque-{n}") for n in range(count)]
    now = time.time()

    def fill() -> None:
        for digest, response in zip(digests, responses, strict=True):
            record = read_response(response, now, keep=keep)
            assert isinstance(record, IntrospectionRecord)
            cache.put("https://as.example.com", digest, record)

    grown = traced_growth(fill)
    assert len(cache) == count, "introspection cache evicted entries"
    return grown / count


def verified_cache_breakdown(count: int) -> Table:
    """Where the bytes of one verified-cache entry are allocated (top source lines)."""
    secret = secrets.token_bytes(32)
    guard = TokenGuard(
        issuers=[hs_issuer(secret)],
        policies=[hs_policy(POLICY)],
        # Twice the fill: the cache keeps at least half its size (Generations), so
        # nothing of the fill is evicted and every entry is measured.
        settings=Settings(verified_cache_size=2 * count + 2),
    )
    tokens = mint_hs256(secret, count + 1)
    guard.validate(tokens[0], POLICY)
    guard.forget(tokens[0])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for token in tokens[1:]:
            guard.validate(token, POLICY)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    table = Table(
        f"Verified-cache entry: where the bytes are allocated ({count:,} entries)",
        ("allocated at", "source line", "bytes/entry", "blocks/entry"),
        left=2,
    )
    for stat in stats[:10]:
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip().replace("|", "/")
        table.rows.append(
            (
                f"{short_path(frame.filename)}:{frame.lineno}",
                code[:60],
                f"{stat.size_diff / count:,.0f}",
                f"{stat.count_diff / count:.1f}",
            )
        )
    table.notes.append(
        "tracemalloc snapshots before/after the fill, compared by line (innermost frame)"
    )
    return table


def memory_tables(server: AuthServer, budget: Budget) -> list[Table]:
    sample = min(budget.memory_tokens, 500 if budget.quick else 5000)
    return [memory_table(budget), verified_cache_breakdown(sample), retention_table(budget)]


def memory_table(budget: Budget) -> Table:
    count = budget.memory_tokens
    table = Table(
        "Memory per cached token (tracemalloc), with and without a claims list",
        ("cache, token, Policy(claims=...)", "bytes/entry", "100k entries", f"≤ {TARGET_MB} MB"),
    )
    listed = f"[{', '.join(repr(c) for c in SERVICE_CLAIMS)}]"
    for cache, measure in (
        ("verified-token", verified_cache_bytes),
        ("introspection", introspection_cache_bytes),
    ):
        for token, extra in (("8 claims", None), (f"{8 + len(RICH_CLAIMS)} claims", RICH_CLAIMS)):
            for claims in (None, SERVICE_CLAIMS):
                per = measure(count, claims=claims, extra=extra)
                total_mb = per * REFERENCE_ENTRIES / 1e6
                kept = "all kept" if claims is None else f"claims={listed}"
                table.rows.append(
                    (
                        f"{cache} cache, {token}, {kept}",
                        f"{per:,.0f}",
                        f"{total_mb:,.1f} MB",
                        "yes" if total_mb <= TARGET_MB else "NO",
                    )
                )
    table.notes.append(
        f"{count:,} entries per row; growth of traced memory across the fill, after "
        "gc.collect(); tokens and answers were built before tracing, and tokenguard keeps "
        "only their SHA-256 digests"
    )
    table.notes.append(
        "8 claims: iss sub aud exp iat jti client_id scope (all registered, so always "
        f"kept); {8 + len(RICH_CLAIMS)} claims: the same plus what identity-rich servers "
        "add (name, email, roles...); verified-token rows validate HS256 JWTs through a "
        "guard; introspection rows put answers read by the engine's read_response"
    )
    return table


def retention_table(budget: Budget) -> Table:
    """Rule 1: what refused tokens of each attacker shape leave allocated."""
    from tests.security import test_retention as shapes

    count = 200 if budget.quick else 20_000
    table = Table(
        f"Memory kept after {count:,} refused tokens per attacker shape (rule 1)",
        ("shape", "refused as", "bytes kept", "per token", f"budget {shapes.BUDGET:,} B"),
    )
    guard = shapes.guard()
    for shape, build in shapes.SHAPES.items():
        reason = shapes.refusal(guard, build(-1))
        kept = shapes.retained_after(guard, build, count)
        table.rows.append(
            (
                shape,
                reason,
                f"{kept:,}",
                f"{kept / count:.2f}",
                "yes" if kept <= shapes.BUDGET else "NO",
            )
        )
    table.notes.append(
        f"Python {platform.python_version()}; tracemalloc growth across the refusals, "
        "after gc.collect(), following a warm-up; the shapes are those of "
        "tests/security/test_retention.py (run on 3.11, 3.12 and 3.13 by ./dev test)"
    )
    return table


# -- import time ----------------------------------------------------------------------


def run_ms(*args: str) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run of our interpreter with ``args``: the CPU time (user
    + system) is the child's own, so neighbours on a shared machine inflate it far less
    than the wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = perf_counter_ns()
    subprocess.run([sys.executable, *args], check=True)  # noqa: S603 - our own interpreter
    wall = (perf_counter_ns() - began) / 1e6
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def compile_bytecode() -> None:
    """Write tokenguard's bytecode, as ``pip install`` does: an editable install under
    ``PYTHONDONTWRITEBYTECODE=1`` (set on some CI and developer machines) would otherwise
    compile every module from source on every import, and time the compiler."""
    package = Path(tokenguard.__file__).parent
    compileall.compile_dir(package, quiet=1)


def importtime(code: str) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` lines as (depth, self µs, cumulative µs, module)."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-X", "importtime", "-c", code],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, int(own), int(cumulative), name.strip()))
    return rows


def subtree(rows: list[tuple[int, int, int, str]], module: str) -> list[tuple[int, int, int, str]]:
    """The lines of ``module``'s top-level import and everything it imported."""
    end = next(i for i, row in enumerate(rows) if row[0] == 0 and row[3] == module)
    start = max((i for i in range(end) if rows[i][0] == 0), default=-1) + 1
    return rows[start : end + 1]


#: What ``import tokenguard`` needs of its dependencies (the rest is imported when used).
#: pydantic's BaseModel, not ``import pydantic`` alone: that loads almost nothing (its
#: names are imported lazily), and a model cannot be defined without BaseModel.
BARE_DEPENDENCIES = (
    "import msgspec; from pydantic import BaseModel; "
    "from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils"
)
#: A serverless cold start: import, a guard, one validation (an HS256 key configured
#: locally, so no network; the JWKS path adds the HTTP client when it first fetches).
COLD_START = (
    "import tokenguard, base64, hmac, json, time; "
    "k = b'k' * 32; e = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode(); "
    "n = int(time.time()); "
    "h = e(json.dumps({'alg': 'HS256', 'typ': 'at+jwt'}).encode()); "
    "p = e(json.dumps({'iss': 'https://as.example', 'aud': 'api', 'sub': 'a', 'iat': n, "
    "'exp': n + 60, 'client_id': 'c', 'jti': 'j'}).encode()); "
    "t = f'{h}.{p}.' + e(hmac.digest(k, f'{h}.{p}'.encode(), 'sha256')); "
    "g = tokenguard.TokenGuard(issuers=[tokenguard.Issuer('https://as.example', "
    "static_jwks={'keys': [{'kty': 'oct', 'k': e(k)}]})], "
    "policies=[tokenguard.Policy(name='api', audience='api', algorithms=['HS256'])]); "
    "g.validate(t)"
)
IMPORT_ROWS = (
    ("import tokenguard", "import tokenguard"),
    (
        "bare imports of the dependencies it needs (pydantic's BaseModel, msgspec, "
        "cryptography's primitives)",
        None,
    ),
    ("import pydantic", "import pydantic"),
    ("import httpx (imported at a guard's first HTTP request)", "import httpx"),
    ("import jwt (pyjwt: no longer on the validation path)", "import jwt"),
    ("cold start: import + TokenGuard(...) + first validation (HS256, local key)", None),
)


def import_table(budget: Budget) -> Table:
    compile_bytecode()
    run_ms("-c", "import tokenguard")  # warm the file caches
    codes = {
        "pass": "pass",
        **{label: code or "" for label, code in IMPORT_ROWS},
        IMPORT_ROWS[1][0]: BARE_DEPENDENCIES,
        IMPORT_ROWS[5][0]: COLD_START,
    }
    walls: dict[str, list[float]] = {label: [] for label in codes}
    cpus: dict[str, list[float]] = {label: [] for label in codes}
    for _ in range(budget.import_runs):  # alternating, so a slow spell hits all alike
        for label, code in codes.items():
            wall, cpu = run_ms("-c", code)
            walls[label].append(wall)
            cpus[label].append(cpu)
    bare = statistics.median(walls["pass"])
    bare_cpu = statistics.median(cpus["pass"])
    cumulative, by_package, trees = [], [], []
    for _ in range(max(1, budget.import_runs // 3)):
        lines = subtree(importtime("import tokenguard"), "tokenguard")
        cumulative.append(lines[-1][2] / 1000)
        packages: dict[str, int] = defaultdict(int)
        for _depth, own, _cum, name in lines:
            packages[name.split(".")[0]] += own
        by_package.append(packages)
        trees.append(lines)
    middle = sorted(range(len(cumulative)), key=cumulative.__getitem__)[len(cumulative) // 2]
    table = Table("Import time of tokenguard", ("measure", "CPU ms", "wall ms"))
    for label, _code in IMPORT_ROWS:
        table.rows.append(
            (
                f"{label} (minus 'pass')",
                f"{statistics.median(cpus[label]) - bare_cpu:.0f}",
                f"{statistics.median(walls[label]) - bare:.0f}",
            )
        )
    table.rows.append(("python -c 'pass' (median)", f"{bare_cpu:.0f}", f"{bare:.0f}"))
    table.rows.append(
        ("-X importtime: cumulative of 'tokenguard' (median)", "", f"{cumulative[middle]:.0f}")
    )
    total = sum(by_package[middle].values())
    for package, own in sorted(by_package[middle].items(), key=lambda kv: -kv[1])[:10]:
        share = own / total
        table.rows.append((f"  of which {package} ({share:.0%})", "", f"{own / 1000:.0f}"))
    table.notes.append(
        f"{budget.import_runs} runs each, alternating, medians; CPU: user + system time of "
        "the child process (what a busy neighbour inflates least); wall: its elapsed time; "
        "tokenguard's bytecode compiled first (as pip install does); -X importtime: "
        f"{len(cumulative)} run(s); the package rows add up the self times of every module "
        "imported under 'import tokenguard' (median run), grouped by top-level package"
    )
    lines = trees[middle]
    found = []
    for package in (
        "httpx",
        "asyncio",
        "jwt",
        "authlib",
        "joserfc",
        "click",
        "rich",
        "pygments",
        "tokenguard.testing",
        "tokenguard.shells",
    ):
        mine = [
            (row[0], i)
            for i, row in enumerate(lines)
            if row[3] == package or row[3].startswith(package + ".")
        ]
        if mine:
            # The outermost of its modules; importtime prints a module after its own
            # imports, so the importer is the next line that is less deeply nested.
            depth, at = min(mine)
            parent = next((row[3] for row in lines[at + 1 :] if row[0] < depth), "?")
            found.append(f"{package} (by {parent})")
    table.notes.append(
        "imported (or tried) by 'import tokenguard' although validation never uses them: "
        + (
            ", ".join(found)
            if found
            else "none (httpx, asyncio, authlib, joserfc, click, the shells and the testing "
            "kit are imported when first used; pyjwt is not imported to validate at all)"
        )
    )
    table.notes.append(
        "target (issue 10 §4): 'import tokenguard' ≤ 120 ms on the reference machine; "
        "compare it with the bare imports of the dependencies in the same run"
    )
    cli = next((row for row in lines if row[3] == "httpx._main"), None)
    if cli is not None:
        table.rows.append(("  httpx._main: httpx's CLI (cumulative)", "", f"{cli[2] / 1000:.0f}"))
        table.notes.append(
            "httpx tries to import its optional CLI (httpx._main) on every import; with "
            "click installed (a tokenguard dependency) that gets through click, and "
            "pygments if installed, before it fails on rich (or succeeds)"
        )
    return table
