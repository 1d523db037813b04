"""tokenguard benchmarks (issue 5): one process, printing tables.

    python benchmarks/run.py              # full run (a few minutes at most)
    python benchmarks/run.py --quick      # smoke run, well under 20 s
    python benchmarks/run.py --markdown   # the same tables as Markdown (docs/performance.md)
    python benchmarks/run.py --profile    # also cProfile tokenguard's first-seen RS256 path
    python benchmarks/run.py --as-subprocess  # introspection tables: AuthServer in a child
    python benchmarks/run.py --results DIR  # also DIR/results.json and the figures (plots.py)

Sections: local JWT validation per algorithm (tokenguard vs a bare signature verify,
PyJWT and joserfc), opaque-token introspection (sync and 64-way async, vs plain httpx),
AS requests under a 1,000-validation stampede, memory per cached token, import time.
See docs/performance.md for what each number means.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from time import perf_counter

# The retention table reuses the attacker shapes of tests/security/test_retention.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _dpop_bench
import _footprint
import _jwt_bench
import _opaque_bench
import plots
from _common import Budget, Table
from _target import LocalTarget, RemoteTarget

import tokenguard
from tokenguard.testing import AuthServer

#: The sections of a run, in order (``--sections`` picks some).
SECTIONS = ("jwt", "dpop", "opaque", "stampede", "memory", "import")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(budget: Budget) -> list[tuple[str, str]]:
    from cryptography.hazmat.backends.openssl.backend import backend

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("machine", f"{cpu_model()} ({platform.machine()}), {usable} CPUs (nproc)"),
        (
            "platform.processor(), python_version()",
            f"{platform.processor()!r}, {platform.python_version()}",
        ),
        ("system", platform.platform()),
        (
            "load average at start (1, 5, 15 min)",
            ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
        ),
        (
            "versions",
            ", ".join(
                [
                    f"tokenguard {tokenguard.__version__}",
                    f"PyJWT {version('PyJWT')}",
                    f"joserfc {version('joserfc')}",
                    f"cryptography {version('cryptography')}",
                    backend.openssl_version_text(),
                    f"httpx {version('httpx')}",
                    f"httpcore {version('httpcore')}",
                    f"anyio {version('anyio')}",
                    f"pydantic {version('pydantic')}",
                ]
            ),
        ),
        (
            "mode",
            ("--quick (smoke run: few iterations, numbers are rough)" if budget.quick else "full")
            + "; medians of batch-timed calls (time.perf_counter_ns), GC disabled while timing",
        ),
    ]


class LogCounter(logging.Handler):
    """Counts tokenguard's log records (by level, logger and message template)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[(record.levelname, record.name, str(record.msg))] += 1

    def table(self) -> Table:
        table = Table(
            "tokenguard log records during the run (INFO and above)",
            ("level", "logger", "message", "count"),
            left=3,
        )
        for (level, name, message), count in sorted(self.counts.items()):
            table.rows.append((level, name, message.replace("|", "/"), f"{count:,}"))
        if not self.counts:
            table.rows.append(("-", "-", "none", "0"))
        return table


SHOWN: list[Table] = []  # every table of the run, for --results


def show(table: Table, markdown: bool) -> None:
    SHOWN.append(table)
    print(table.render(markdown=markdown), end="\n\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke run, < 20 s)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the first-seen RS256 path too"
    )
    parser.add_argument(
        "--as-subprocess",
        action="store_true",
        help="introspection tables: run the AuthServer in a child process (own GIL)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help="write the tables to DIR/results.json and draw the figures there",
    )
    args = parser.parse_args(argv)
    wanted = set(args.sections.split(","))
    if not wanted <= set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(wanted - set(SECTIONS)))}")
    budget = Budget.smoke() if args.quick else Budget.full()
    markdown = args.markdown
    # tokenguard's log records are counted and reported at the end, not printed.
    counter = LogCounter()
    logger = logging.getLogger("tokenguard")
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    began = perf_counter()
    sections: list[tuple[str, float]] = []

    def lap(name: str) -> None:
        sections.append((name, perf_counter()))

    header = Table("tokenguard benchmark", ("", ""), left=2)
    header.rows.extend(environment(budget))
    show(header, markdown)

    # An http.server listens with a backlog of 5: 64 simultaneous connects overflow it
    # and some are reset. Give the AuthServers the backlog a real server would have.
    with AuthServer(token_lifetime=3600) as server:
        lap("setup")
        if "jwt" in wanted:
            for table in _jwt_bench.run(server, budget):
                show(table, markdown)
            lap("jwt")
        if "dpop" in wanted:
            for table in _dpop_bench.run(server, budget):
                show(table, markdown)
            lap("dpop")
        if "opaque" in wanted:
            with RemoteTarget() if args.as_subprocess else LocalTarget(server) as target:
                for table in _opaque_bench.run(target, budget):
                    show(table, markdown)
            lap("opaque")
        if "stampede" in wanted:
            show(_opaque_bench.stampede_table(server, budget), markdown)
            lap("stampede")
        if "memory" in wanted:
            for table in _footprint.memory_tables(server, budget):
                show(table, markdown)
            lap("memory")
        if args.profile:
            show(_jwt_bench.profile_first_seen(server, budget), markdown)
            lap("profile")
    if "import" in wanted:
        show(_footprint.import_table(budget), markdown)
        lap("import")
    show(counter.table(), markdown)
    logger.removeHandler(counter)
    previous, spent = began, []
    for name, at in sections:
        spent.append(f"{name} {at - previous:.1f}")
        previous = at
    print(f"total benchmark time: {perf_counter() - began:.1f} s ({', '.join(spent)})")
    if args.results:
        saved = plots.save(args.results, SHOWN, quick=budget.quick)
        for path in [saved, *plots.draw(plots.load(saved), args.results)]:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
