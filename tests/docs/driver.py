"""Runs one page's Python blocks in order, in one namespace, as a reader would.

Started by ``test_docs_blocks.py`` in a fresh interpreter: ``python driver.py BLOCKS.json``.
Each block is compiled with its own file name and line numbers, so a traceback points
at the Markdown line that failed. ``pycon`` blocks are run with doctest.
"""

from __future__ import annotations

import ast
import doctest
import json
import sys
import traceback
from pathlib import Path
from typing import Any


def _run_python(code: str, path: str, line: int, namespace: dict[str, Any]) -> None:
    try:
        tree = ast.parse(code, filename=path)
    except SyntaxError as error:
        if error.lineno is not None:
            error.lineno += line - 1
        raise
    ast.increment_lineno(tree, line - 1)
    exec(compile(tree, path, "exec"), namespace)  # noqa: S102 - the project's own docs


def _run_pycon(code: str, where: str, path: str, line: int, namespace: dict[str, Any]) -> bool:
    test = doctest.DocTestParser().get_doctest(code, namespace, where, path, line - 1)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, clear_globs=False)
    return not runner.failures


def main() -> int:
    blocks = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in blocks:
        where, path, line = block["where"], block["path"], block["line"]
        print(f"docs-test: running {where}", flush=True)
        try:
            if block["lang"] == "pycon":
                if not _run_pycon(block["code"], where, path, line, namespace):
                    print(f"docs-test: {where}: the session's output differs", file=sys.stderr)
                    return 1
            else:
                _run_python(block["code"], path, line, namespace)
        except BaseException:
            print(f"docs-test: {where}: the block failed", file=sys.stderr)
            traceback.print_exc()
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
