"""Figures of the benchmark, drawn from the tables of a run (docs/performance-figures.md).

    python benchmarks/run.py --results docs/assets/benchmarks    # run, then save and draw
    python benchmarks/plots.py docs/assets/benchmarks/results.json  # redraw from a saved run
    python benchmarks/plots.py docs/performance.md --out docs/assets/benchmarks
        # draw the tables pasted from `run.py --markdown` into a page

``run.py --results DIR`` writes the run's tables as ``DIR/results.json``::

    {"format": 1, "finished": "2026-...Z", "quick": false,
     "tables": [{"title": ..., "columns": [...], "rows": [[...], ...], "notes": [...]}, ...]}

(the cells exactly as printed), then this module draws ``DIR/*.svg`` from that file. A
figure whose table is missing or has changed shape is left out with a message, never
drawn from a wrong column: the tables belong to the benchmark, the figures follow them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = 1
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA", "HS256")

Results = dict[str, Any]
TableData = dict[str, Any]


# -- the results file -----------------------------------------------------------------


def save(directory: Path, tables: Sequence[Any], *, quick: bool) -> Path:
    """Write the run's tables (``_common.Table`` objects) as ``directory/results.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    results = {
        "format": FORMAT,
        "finished": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "quick": quick,
        "tables": [
            {key: list(value) if isinstance(value, tuple) else value for key, value in row.items()}
            for row in (asdict(table) for table in tables)
        ],
    }
    path = directory / "results.json"
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load(path: Path) -> Results:
    results: Results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("format") != FORMAT:
        raise ValueError(f"{path}: not a results file of format {FORMAT}")
    return results


def from_markdown(path: Path) -> Results:
    """The tables of ``run.py --markdown`` output (as pasted into docs/performance.md).

    A table under a ``### Title`` heading is that title's; a table indented in a bullet
    that starts with ``**Title**`` (the page's notes) is titled ``Title``.
    """
    tables: list[TableData] = []
    current: TableData | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        bold = re.match(r"- \*\*(?P<title>[^*]+)\*\*", stripped)
        if line.startswith("### ") or bold:
            title = line[4:].strip() if line.startswith("### ") else bold["title"]
            current = {"title": title, "columns": [], "rows": [], "notes": []}
            tables.append(current)
        elif current is not None and stripped.startswith("|"):
            cells = [cell.strip() for cell in stripped.strip("|").split("|")]
            if not current["columns"]:
                current["columns"] = cells
            elif not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current["rows"].append(cells)
        elif current is not None and line.startswith("- "):
            current["notes"].append(line[2:])
        elif line.startswith("#"):
            current = None
    return {"format": FORMAT, "source": path.name, "tables": [t for t in tables if t["rows"]]}


def number(cell: str) -> float | None:
    """The first number in a printed cell: 1833 in ``1,833 (x1.00)``, 2.55 in a ratio
    (the multiplication sign before it is skipped), None for ``n/a``."""
    match = re.search(r"-?\d[\d,]*(\.\d+)?", cell)
    return float(match.group(0).replace(",", "")) if match else None


def table(results: Results, title_start: str) -> TableData:
    for candidate in results["tables"]:
        if candidate["title"].startswith(title_start):
            return dict(candidate)
    raise LookupError(f"no table titled {title_start!r}...")


def column(data: TableData, name_start: str) -> int:
    for index, name in enumerate(data["columns"]):
        if name.startswith(name_start):
            return index
    raise LookupError(f"table {data['title']!r} has no column {name_start!r}...")


def values(data: TableData, name_start: str) -> dict[str, float]:
    """Row label -> the number in the column whose name starts with ``name_start``."""
    index = column(data, name_start)
    found = {}
    for row in data["rows"]:
        value = number(row[index])
        if value is not None:
            found[row[0]] = value
    return found


def pick(found: dict[str, float], label_start: str) -> float | None:
    return next((v for label, v in found.items() if label.startswith(label_start)), None)


# -- figures ------------------------------------------------------------------------------

#: Contenders of the JWT tables, as (row label prefix, legend).
JWT_CONTENDERS = (
    ("floor", "bare signature verify"),
    ("tokenguard first-seen,", None),  # "verified cache off": not drawn
    ("tokenguard first-seen", "tokenguard, token seen first"),
    ("tokenguard repeated", "tokenguard, same token again"),
    ("PyJWT decode", "PyJWT jwt.decode, key preloaded"),
    ("PyJWT + PyJWKClient", "PyJWT + PyJWKClient"),
    ("joserfc", "joserfc decode + claims registry"),
)


def _caption(results: Results) -> str:
    if "source" in results:
        return f"benchmarks/run.py, the run recorded in {results['source']}"
    mode = "--quick run: rough numbers" if results.get("quick") else "full run"
    return f"benchmarks/run.py, {results.get('finished', '?')} ({mode})"


def jwt_figure(results: Results, plt: Any) -> Any:
    per_alg = {}
    unit = "median µs"
    for alg in ALGORITHMS:
        try:
            data = table(results, f"{alg}:")
            per_alg[alg] = values(data, "median")
        except LookupError:
            continue
        unit = data["columns"][column(data, "median")]
    if not per_alg:
        raise LookupError("no per-algorithm JWT table")
    series = []
    for prefix, legend in JWT_CONTENDERS:
        if legend is None:
            continue
        series.append(
            (
                legend,
                [
                    _jwt_value(per_alg[alg], prefix) if alg in per_alg else None
                    for alg in ALGORITHMS
                ],
            )
        )
    figure, axes = plt.subplots(figsize=(8.5, 6.0))
    _grouped_bars(axes, list(ALGORITHMS), series)
    axes.set_xscale("log")
    axes.set_xlabel(f"{unit} per validation (log scale; shorter is faster)")
    axes.set_title("JWT access tokens: time per validation", loc="left")
    figure.text(0.01, 0.01, _caption(results), fontsize=7, color="#666666")
    return figure


def _jwt_value(found: dict[str, float], prefix: str) -> float | None:
    if prefix == "tokenguard first-seen":  # not the "verified cache off" row
        return next(
            (v for label, v in found.items() if label.startswith(prefix) and "," not in label),
            None,
        )
    return pick(found, prefix)


def opaque_figure(results: Results, plt: Any) -> Any:
    sync = values(table(results, "Opaque token, sync"), "median")
    rows = [
        ("plain httpx POST (the floor)", pick(sync, "plain httpx")),
        ("tokenguard, new token (introspected)", pick(sync, "tokenguard uncached")),
        ("tokenguard, introspection-cache hit", pick(sync, "tokenguard introspection-cache")),
        ("tokenguard, verified-cache hit", pick(sync, "tokenguard cached")),
    ]
    figure, axes = plt.subplots(figsize=(8.5, 3.4))
    labels = [label for label, value in rows if value is not None]
    numbers = [value for _, value in rows if value is not None]
    bars = axes.barh(labels, numbers, color=["#9e9e9e", "#3f51b5", "#7986cb", "#c5cae9"])
    axes.bar_label(bars, labels=[_us(v) for v in numbers], padding=3, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlim(right=max(numbers) * 4)
    axes.set_xlabel("µs per validation (median, log scale), sync, AS on loopback")
    axes.set_title("Opaque tokens: introspection and the caches", loc="left")
    figure.text(0.01, 0.01, _caption(results), fontsize=7, color="#666666")
    return figure


def throughput_figure(results: Results, plt: Any) -> Any:
    data = table(results, "Opaque token, async")
    found = values(data, "validations/s")
    figure, axes = plt.subplots(figsize=(8.5, 2.6))
    labels, numbers = list(found), list(found.values())
    bars = axes.barh(labels, numbers, color=["#9e9e9e", "#3f51b5"][: len(numbers)])
    axes.bar_label(bars, labels=[f"{v:,.0f}/s" for v in numbers], padding=3, fontsize=8)
    axes.invert_yaxis()
    axes.margins(x=0.15)
    axes.set_xlabel("validations per second, new opaque tokens (longer is faster)")
    axes.set_title(data["title"], loc="left", fontsize=10)
    figure.text(0.01, 0.01, _caption(results), fontsize=7, color="#666666")
    return figure


def memory_figure(results: Results, plt: Any) -> Any:
    try:
        data = table(results, "Memory per cached token")
    except LookupError:
        data = table(results, "Memory")
    index = column(data, "bytes/entry")
    found = {}
    for row in data["rows"]:
        value = number(row[index])
        if value is not None:  # the label: every column before the figure
            found[", ".join(cell.strip("`") for cell in row[:index] if cell)] = value
    if not found:
        raise LookupError(f"table {data['title']!r} has no bytes/entry figures")
    figure, axes = plt.subplots(figsize=(8.5, 0.9 + 0.42 * len(found)))
    labels, numbers = list(found), list(found.values())
    bars = axes.barh(labels, numbers, color="#3f51b5")
    axes.bar_label(bars, labels=[f"{v:,.0f} B" for v in numbers], padding=3, fontsize=8)
    axes.axvline(500, color="#e53935", linestyle="--", linewidth=1)
    axes.text(
        505,
        1.01,
        "500 B: 50 MB per 100,000 tokens",
        color="#e53935",
        fontsize=7,
        transform=axes.get_xaxis_transform(),
    )
    axes.margins(x=0.12)
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    axes.set_xlabel("bytes per cached token (tracemalloc; shorter is smaller)")
    axes.set_title("Memory per cached token", loc="left")
    figure.text(0.01, 0.01, _caption(results), fontsize=7, color="#666666")
    return figure


FIGURES: dict[str, Callable[[Results, Any], Any]] = {
    "jwt.svg": jwt_figure,
    "opaque.svg": opaque_figure,
    "throughput.svg": throughput_figure,
    "memory.svg": memory_figure,
}


def _us(value: float) -> str:
    return f"{value:.2f} µs" if value < 10 else f"{value:,.1f} µs"


def _grouped_bars(
    axes: Any, groups: list[str], series: list[tuple[str, list[float | None]]]
) -> None:
    colours = ["#9e9e9e", "#3f51b5", "#c5cae9", "#ff9800", "#ffcc80", "#4caf50"]
    height = 0.8 / len(series)
    for index, (legend, numbers) in enumerate(series):
        positions = [g + index * height for g in range(len(groups))]
        shown = [(p, v) for p, v in zip(positions, numbers, strict=True) if v is not None]
        if shown:
            axes.barh(
                [p for p, _ in shown],
                [v for _, v in shown],
                height=height,
                label=legend,
                color=colours[index % len(colours)],
            )
    axes.set_yticks([g + 0.4 - height / 2 for g in range(len(groups))], groups)
    axes.invert_yaxis()
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    axes.grid(axis="x", which="both", color="#eeeeee")
    axes.set_axisbelow(True)


def draw(results: Results, directory: Path) -> list[Path]:
    """Draw every figure that the results have the tables for; return the files written."""
    try:
        import matplotlib
    except ImportError:
        print(
            "plots: matplotlib is not installed (pip install '.[bench]'); no figures drawn",
            file=sys.stderr,
        )
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: small, searchable files
            "svg.hashsalt": "tokenguard",  # stable ids: a redraw of the same run is identical
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in FIGURES.items():
        try:
            figure = make(results, plt)
        except (LookupError, KeyError, IndexError, ValueError) as error:
            print(f"plots: {name} left out: {error}", file=sys.stderr)
            (directory / name).unlink(missing_ok=True)  # never a figure of another run
            continue
        figure.tight_layout(rect=(0, 0.03, 1, 1))
        path = directory / name
        figure.savefig(path, format="svg", metadata={"Date": None})
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the benchmark figures from results.json")
    parser.add_argument(
        "results",
        type=Path,
        help="a results.json written by run.py --results, or a Markdown page of its tables",
    )
    parser.add_argument("--out", type=Path, help="where to write the SVGs (default: beside it)")
    args = parser.parse_args(argv)
    source = args.results
    out = args.out or source.parent
    if source.suffix == ".md":
        results = from_markdown(source)
        out.mkdir(parents=True, exist_ok=True)
        saved = out / "results.json"
        saved.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", "utf-8")
        print(saved)
    else:
        results = load(source)
    written = draw(results, out)
    for path in written:
        print(path)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
