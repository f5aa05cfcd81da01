"""A small progress bar over the workloads (no dependency): redrawn in place on a terminal,
one line per finished workload otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True, width: int = 24) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.done = 0
        self.started = time.perf_counter()
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def _bar(self) -> str:
        filled = round(self.width * self.done / self.total)
        elapsed = time.perf_counter() - self.started
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {elapsed:5.1f}s"

    def start(self, name: str) -> None:
        if self.interactive:
            self.stream.write(f"\r\x1b[K{self._bar()} {name}")
            self.stream.flush()

    def finish(self, name: str, status: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.interactive:
            self.stream.write(f"\r\x1b[K{self._bar()} {name}: {status}")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self._bar()} {name}: {status}\n")
        self.stream.flush()
