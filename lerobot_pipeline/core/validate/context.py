"""Format constants (lerobot 0.3.3 v2.1 and 0.4.4 v3.0) and the state one validation run collects."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.features import CODEBASE_VERSION
from lerobot_pipeline.core.validate.report import Problems, ValidationReport, one_line

DEFAULT_DATA_PATH = F.DATA_PATH
DEFAULT_VIDEO_PATH = F.VIDEO_PATH
DEFAULT_CHUNK_SIZE = 1000

#: The five columns lerobot appends to every dataset: name -> (dtype, shape).
DEFAULT_FEATURES: dict[str, tuple[str, tuple[int, ...]]] = {
    name: (f["dtype"], tuple(f["shape"])) for name, f in F.DEFAULT_FEATURES.items()
}
REQUIRED_INFO_KEYS = (
    "codebase_version", "total_episodes", "total_frames", "total_tasks", "total_videos", "total_chunks",
    "chunks_size", "fps", "splits", "data_path", "video_path", "features",
)
TOTAL_KEYS = ("total_episodes", "total_frames", "total_tasks", "total_videos", "total_chunks")
STAT_KEYS = ("min", "max", "mean", "std", "count")
VISUAL_DTYPES = ("video", "image")
VISUAL_STATS_SHAPE = (3, 1, 1)

TIMESTAMP_TOLERANCE_S = 1e-4  # lerobot's default tolerance_s (check_timestamps_sync, video frame lookup)
VIDEO_PTS_TOLERANCE_S = 5e-4  # frame pts vs k/fps: above this is an error, above TIMESTAMP_TOLERANCE_S a warning
FLOAT32_TIMESTAMP_LIMIT_S = 1024.0  # float32 spacing exceeds 1e-4 s from here on
RATE_TOLERANCE = 1e-3

ERROR = "error"
WARNING = "warning"




def format_episode_path(template: str, episode_index: int, chunks_size: int, video_key: str | None = None) -> str:
    """Format a ``data_path``/``video_path`` template the way lerobot does (chunk = index // chunks_size)."""
    kwargs: dict[str, Any] = {"episode_chunk": episode_index // chunks_size, "episode_index": episode_index}
    if video_key is not None:
        kwargs["video_key"] = video_key
    return template.format(**kwargs)



@dataclass
class Feature:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def is_visual(self) -> bool:
        return self.dtype in VISUAL_DTYPES

    @property
    def has_stats(self) -> bool:
        return self.dtype != "string"

    @property
    def stats_shape(self) -> tuple[int, ...]:
        return VISUAL_STATS_SHAPE if self.is_visual else self.shape


@dataclass
class Context:
    root: Path
    problems: Problems
    info: dict[str, Any] | None = None
    fps: int | None = None
    chunks_size: int | None = None
    data_path: str | None = None
    video_path: str | None = None
    features: dict[str, Feature] = field(default_factory=dict)  # well-formed features only
    tasks: dict[int, str] | None = None  # task_index -> task (None: tasks.jsonl unusable)
    task_lines: int | None = None
    episodes: dict[int, dict[str, Any]] | None = None  # episode_index -> episodes.jsonl entry
    episodes_lines: int | None = None
    rows: dict[int, int] = field(default_factory=dict)  # episode -> parquet row count
    all_parquet_read: bool = True
    # v2.1: episodes whose parquet and videos are read; None = all. The others' files must exist and agree
    # with meta/ (lengths, totals, stats), but their content was checked when the dataset first took them in
    deep: set[int] | None = None
    data_summary: dict[tuple[int, str], dict[str, np.ndarray]] = field(default_factory=dict)
    frames: int = 0
    videos_checked: int = 0
    version: str = CODEBASE_VERSION  # the format being checked

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.dtype == "video"]

    def trusted(self, ep: int) -> bool:
        """True for an episode whose files are not read again (not in ``deep``)."""
        return self.deep is not None and ep not in self.deep

    def data_rel(self, ep: int) -> str | None:
        if self.data_path is None:
            return None
        return format_episode_path(self.data_path, ep, self.chunks_size or DEFAULT_CHUNK_SIZE)

    def video_rel(self, ep: int, key: str) -> str | None:
        if self.video_path is None:
            return None
        return format_episode_path(self.video_path, ep, self.chunks_size or DEFAULT_CHUNK_SIZE, key)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Safety net: a validator bug on strange input becomes a Problem, never an exception."""
        try:
            yield
        except Exception as e:  # noqa: BLE001
            self.problems.error(name, f"validator could not complete this check: {type(e).__name__}: {e}")

    def report(self) -> ValidationReport:
        return ValidationReport(
            root=self.root,
            problems=self.problems.final(),
            episodes=len(self.rows),
            frames=self.frames,
            videos_checked=self.videos_checked,
            version=self.version,
        )



def read_json(ctx: Context, rel: str) -> Any | None:
    path = ctx.root / rel
    if not path.is_file():
        ctx.problems.error(rel, "missing (lerobot falls back to the Hugging Face Hub and fails offline)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        ctx.problems.error(rel, f"cannot be parsed as JSON: {one_line(e)}")
        return None


def read_jsonl(ctx: Context, rel: str) -> list[tuple[int, Any]] | None:
    """Parsed (line number, object) pairs; bad lines are Problems and skipped; None if the file is unusable."""
    path = ctx.root / rel
    if not path.is_file():
        ctx.problems.error(rel, "missing (lerobot falls back to the Hugging Face Hub and fails offline)")
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        ctx.problems.error(rel, f"cannot be read: {one_line(e)}")
        return None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            ctx.problems.error(f"{rel}: line {lineno}", f"not valid JSON: {one_line(e)}")
            continue
        if not isinstance(obj, dict):
            ctx.problems.error(f"{rel}: line {lineno}", f"expected a JSON object, got {type(obj).__name__}")
            continue
        out.append((lineno, obj))
    return out
