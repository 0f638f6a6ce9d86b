"""Validation results: :class:`Problem`, :class:`ValidationReport`, the bounded collector, small text helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" | "warning"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.where}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    root: Path
    problems: tuple[Problem, ...]
    episodes: int
    frames: int
    videos_checked: int
    version: str = "v2.1"  # the format it was checked against

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == ERROR)

    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARNING)

    def format(self) -> str:
        lines = [
            f"LeRobot {self.version} validation of {self.root}: {self.episodes} episodes, "
            f"{self.frames} frames, {self.videos_checked} videos checked"
        ]
        lines += [f"  {p}" for p in self.problems]
        n_err, n_warn = len(self.errors()), len(self.warnings())
        if self.ok:
            tail = f" ({plural(n_warn, 'warning')})" if n_warn else ""
            lines.append(f"VALID: {self.episodes} episodes, {self.frames} frames{tail}")
        else:
            lines.append(f"INVALID: {plural(n_err, 'error')}, {plural(n_warn, 'warning')}")
        return "\n".join(lines)




class Problems:
    """Collects problems up to a limit; what is dropped is counted so the verdict stays right."""

    def __init__(self, limit: int):
        self.limit = max(int(limit), 1)
        self.items: list[Problem] = []
        self.dropped = {ERROR: 0, WARNING: 0}

    def add(self, severity: str, where: str, message: str) -> None:
        if len(self.items) < self.limit:
            self.items.append(Problem(severity, where, message))
        else:
            self.dropped[severity] += 1

    def error(self, where: str, message: str) -> None:
        self.add(ERROR, where, message)

    def warn(self, where: str, message: str) -> None:
        self.add(WARNING, where, message)

    def final(self) -> tuple[Problem, ...]:
        n_dropped = sum(self.dropped.values())
        if not n_dropped:
            return tuple(self.items)
        note = Problem(
            ERROR if self.dropped[ERROR] else WARNING,
            "validator",
            f"{n_dropped} more problems not listed ({self.dropped[ERROR]} errors, {self.dropped[WARNING]} "
            f"warnings; max_problems={self.limit})",
        )
        return (*self.items, note)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def short_list(values: Sequence[object], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."



def first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])

