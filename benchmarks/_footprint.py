"""Memory per cached token and the import time of ``tokenguard``."""

from __future__ import annotations

import gc
import linecache
import secrets
import statistics
import subprocess
import sys
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from time import perf_counter_ns

from _common import TOKEN_SCOPES, Budget, Table
from _jwt_bench import hs_issuer, hs_policy, mint_hs256, short_path
from _opaque_bench import POLICY, opaque_guard

from tokenguard import Settings, TokenGuard
from tokenguard.testing import AuthServer

TARGET_MB = 50
REFERENCE_ENTRIES = 100_000


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


def verified_cache_bytes(count: int) -> float:
    """Bytes per verified-cache entry, filled by validating ``count`` new HS256 tokens."""
    secret = secrets.token_bytes(32)
    guard = TokenGuard(
        issuers=[hs_issuer(secret)],
        policies=[hs_policy(POLICY)],
        settings=Settings(verified_cache_size=count),
    )
    tokens = mint_hs256(secret, count + 1)
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


def introspection_cache_bytes(server: AuthServer, count: int) -> float:
    """Bytes per introspection-cache entry (verified cache off, so only it grows)."""
    guard = opaque_guard(server, verified_cache_size=0)
    tokens = [server.issue_opaque(scopes=TOKEN_SCOPES, lifetime=3600) for _ in range(count + 1)]
    warm, tokens = tokens[0], tokens[1:]
    guard.validate(warm, POLICY)  # opens the connection, imports everything
    guard.forget(warm)

    def fill() -> None:
        for token in tokens:
            guard.validate(token, POLICY)

    grown = traced_growth(fill)
    before = server.request_count("introspection")
    assert guard.validate(tokens[0], POLICY).cached
    assert server.request_count("introspection") == before, "introspection cache missed"
    guard.close()
    return grown / count


def verified_cache_breakdown(count: int) -> Table:
    """Where the bytes of one verified-cache entry are allocated (top source lines)."""
    secret = secrets.token_bytes(32)
    guard = TokenGuard(
        issuers=[hs_issuer(secret)],
        policies=[hs_policy(POLICY)],
        settings=Settings(verified_cache_size=count),
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
    sample = min(budget.memory_tokens, 1000 if budget.quick else 5000)
    return [memory_table(server, budget), verified_cache_breakdown(sample)]


def memory_table(server: AuthServer, budget: Budget) -> Table:
    verified = verified_cache_bytes(budget.memory_tokens)
    introspected = introspection_cache_bytes(server, budget.intro_memory_tokens)
    table = Table(
        "Memory per cached token (tracemalloc)",
        ("cache", "entries filled", "bytes/entry", "100k entries", f"target < {TARGET_MB} MB"),
    )
    for name, entries, per in (
        ("verified-token cache (HS256 JWTs)", budget.memory_tokens, verified),
        ("introspection cache (opaque)", budget.intro_memory_tokens, introspected),
    ):
        total_mb = per * REFERENCE_ENTRIES / 1e6
        table.rows.append(
            (
                name,
                f"{entries:,}",
                f"{per:,.0f}",
                f"{total_mb:,.1f} MB",
                "yes" if total_mb < TARGET_MB else "NO",
            )
        )
    table.notes.append(
        "growth of traced memory across the fill, after gc.collect(); tokens were built "
        "before tracing, and tokenguard keeps only their SHA-256 digests"
    )
    table.notes.append(
        "the 100k column is bytes/entry × 100,000 (the default cache sizes); the "
        "introspection cache is filled with fewer entries because each is an HTTP round trip"
    )
    return table


# -- import time ----------------------------------------------------------------------


def wall_ms(*args: str) -> float:
    began = perf_counter_ns()
    subprocess.run([sys.executable, *args], check=True)  # noqa: S603 - our own interpreter
    return (perf_counter_ns() - began) / 1e6


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


def import_table(budget: Budget) -> Table:
    wall_ms("-c", "import tokenguard")  # warm the bytecode and file caches
    bare, loaded = [], []
    for _ in range(budget.import_runs):
        bare.append(wall_ms("-c", "pass"))
        loaded.append(wall_ms("-c", "import tokenguard"))
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
    table = Table("Import time of tokenguard", ("measure", "ms"))
    table.rows.append(
        (
            "python -c 'import tokenguard' minus python -c 'pass' (wall, median)",
            f"{statistics.median(loaded) - statistics.median(bare):.0f}",
        )
    )
    table.rows.append(("python -c 'pass' (wall, median)", f"{statistics.median(bare):.0f}"))
    table.rows.append(
        ("-X importtime: cumulative of 'tokenguard' (median)", f"{cumulative[middle]:.0f}")
    )
    total = sum(by_package[middle].values())
    for package, own in sorted(by_package[middle].items(), key=lambda kv: -kv[1])[:10]:
        share = own / total
        table.rows.append((f"  of which {package} ({share:.0%})", f"{own / 1000:.0f}"))
    table.notes.append(
        f"wall: {budget.import_runs} runs each, alternating; -X importtime: "
        f"{len(cumulative)} run(s); the package rows add up the self times of every module "
        "imported under 'import tokenguard' (median run), grouped by top-level package"
    )
    lines = trees[middle]
    found = []
    for package in ("authlib", "joserfc", "click", "rich", "pygments", "tokenguard.testing"):
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
        + (", ".join(found) if found else "none of authlib, joserfc, click, tokenguard.testing")
    )
    cli = next((row for row in lines if row[3] == "httpx._main"), None)
    if cli is not None:
        table.rows.append(("  httpx._main: httpx's CLI (cumulative)", f"{cli[2] / 1000:.0f}"))
        table.notes.append(
            "httpx tries to import its optional CLI (httpx._main) on every import; with "
            "click installed (a tokenguard dependency) that gets through click, and "
            "pygments if installed, before it fails on rich (or succeeds)"
        )
    return table
