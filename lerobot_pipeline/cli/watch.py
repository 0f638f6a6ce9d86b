"""Redraw a text view every few seconds: in place on a terminal (rich Live), plain lines when piped."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Group
from rich.live import Live
from rich.text import Text

from lerobot_pipeline.cli.progress import console_for


def watch(view: Callable[[], str], header: Callable[[], str], interval: float, iterations: int | None = None,
          stream=None) -> None:
    """Show ``header()`` and ``view()`` every ``interval`` s, ``iterations`` times (None: until Ctrl-C).

    On a terminal the same screen area is redrawn; otherwise (a pipe, a log file) a view is written
    as plain lines, with the header, only when it differs from the last one written.
    """
    stream = stream or sys.stdout
    count = 0
    if hasattr(stream, "isatty") and stream.isatty():
        with Live(console=console_for(stream), auto_refresh=False, transient=False) as live:
            while iterations is None or count < iterations:
                live.update(Group(Text(header(), style="bold"), Text(view())), refresh=True)
                count += 1
                if iterations is None or count < iterations:
                    time.sleep(interval)
        return
    last = None
    while iterations is None or count < iterations:
        text = view()
        if text != last:
            stream.write(f"{header()}\n{text}\n")
            stream.flush()
            last = text
        count += 1
        if iterations is None or count < iterations:
            time.sleep(interval)
