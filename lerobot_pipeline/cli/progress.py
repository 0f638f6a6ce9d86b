"""Progress of long work: a rich bar (rate and ETA) on a terminal, one plain line per step otherwise.

``Progress(total, label)`` then ``step(message)`` once per item; the bar closes by itself after the
last step, or on ``close()`` / leaving a ``with`` block (so an error never leaves a live display).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# rich (~45 ms of imports) is imported only where a bar is drawn: not in a script, a pipe or a benchmark.


def _rich_bar(stream) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress as RichProgress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(TextColumn):
        """Items per second (``convert 1.3/s``), from rich's own speed estimate."""

        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f}/s" if speed else "-/s", style="progress.data.speed")

    return RichProgress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[message]}"),
        console=console_for(stream), transient=False,
    )


_ACTIVE: set[Progress] = set()


def close_all() -> None:
    """Stop every live bar (the CLI calls this on any exit, so an error never leaves one drawn)."""
    for bar in list(_ACTIVE):
        bar.close()


def console_for(stream=None) -> Console:
    from rich.console import Console

    return Console(file=stream or sys.stderr, highlight=False)


class Progress:
    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.done = 0
        self._bar: Any = None  # a rich Progress while drawn
        if self.tty and total > 0:
            self._bar = _rich_bar(self.stream)
            self._task = self._bar.add_task(label, total=total, message="")
            self._bar.start()
            _ACTIVE.add(self)

    def step(self, message: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, message=message[:60])
            if self.done >= self.total:
                self.close()
            return
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.stream.write(f"{self.label} [{self.done}/{self.total}] {message}  ({rate:.2f}/s, eta {eta:.0f} s)\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        _ACTIVE.discard(self)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
