"""Rules for names that arrive from outside (episode ids, sources) and paths built from them.

Episode ids and sources come from recording rigs over the network, so they are validated before
they touch the filesystem or Dagster: letters, digits, ``_``, ``-`` and (episode ids only) single
dots. That excludes everything Dagster uses as a separator (``|``, ``,``, ``...``), path separators,
``..``, whitespace and control characters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lerobot_pipeline.errors import InvalidIdError

EPISODE_ID_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){0,127}\Z")
SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
TASK_DIR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
STRATEGIES = ("nearest", "chunking", "window")
DEFAULT_SOURCE = "local"
KEY_SEP = "."  # sources have no dots, so "<source>.<episode_id>" splits at the first dot


def validate_episode_id(value: object) -> str:
    if not isinstance(value, str) or not EPISODE_ID_RE.match(value) or value.endswith("."):
        raise InvalidIdError(
            f"invalid episode id {value!r}: use 1-128 letters, digits, '_', '-' or single '.', "
            "starting with a letter or digit"
        )
    return value


def validate_source(value: object) -> str:
    if not isinstance(value, str) or not SOURCE_RE.match(value):
        raise InvalidIdError(
            f"invalid source {value!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return value


def validate_strategy(value: object) -> str:
    if value not in STRATEGIES:
        raise InvalidIdError(f"unknown strategy {value!r}: expected one of {', '.join(STRATEGIES)}")
    return str(value)


def episode_key(source: str, episode_id: str) -> str:
    """The Dagster partition key of one recorded episode, e.g. ``robot_1.episode_0007``."""
    return f"{validate_source(source)}{KEY_SEP}{validate_episode_id(episode_id)}"


def parse_episode_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`episode_key`; raises :class:`InvalidIdError` for anything else."""
    if not isinstance(key, str) or KEY_SEP not in key:
        raise InvalidIdError(f"invalid episode partition key {key!r}: expected '<source>.<episode_id>'")
    source, episode_id = key.split(KEY_SEP, 1)
    return validate_source(source), validate_episode_id(episode_id)


def safe_join(root: str | os.PathLike[str], *parts: str) -> Path:
    """Join ``parts`` under ``root`` and refuse any result that resolves outside ``root``."""
    root_path = Path(root).resolve()
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise InvalidIdError(f"refusing path component {part!r} under {root_path}")
    candidate = root_path.joinpath(*parts).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise InvalidIdError(f"path {candidate} escapes the configured root {root_path}")
    return candidate
