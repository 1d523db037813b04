"""The access log: one JSON line per decision, written to stdout in batches.

A write per request would cost a system call on the hot path; lines are collected and
written at most every 100 ms (or every 256 lines), and on shutdown. The caller decides
what goes in a line: never a token, a claim value or a query string.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

__all__ = ["AccessLog"]

_BATCH = 256
_INTERVAL = 0.1
_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


class AccessLog:
    """Buffers JSON lines and writes them to ``stream`` (default: ``sys.stdout``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._scheduled = False

    def write(self, record: dict[str, Any]) -> None:
        """Queue one line; it is written within the flush interval."""
        self._lines.append(_ENCODE(record))
        if len(self._lines) >= _BATCH:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_later(_INTERVAL, self.flush)
            except RuntimeError:  # no loop (a direct call): write now
                self.flush()

    def flush(self) -> None:
        """Write every queued line now."""
        self._scheduled = False
        if not self._lines:
            return
        data = "\n".join(self._lines) + "\n"
        self._lines.clear()
        stream = self._stream or sys.stdout
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # closed or broken stdout: the log is best effort
            pass
