"""LeRobot v2.1 conformance checker: fast, dependency-light (json, numpy, pyarrow, PyAV; no torch, no dagster).

``validate_dataset(root)`` inspects a dataset directory and returns a :class:`ValidationReport` listing every
problem it finds (up to ``max_problems``); it never raises on a broken dataset - a missing or unparsable file
is itself a :class:`Problem`. It checks what lerobot 0.3.3's loader checks (files at their templated paths,
codebase version, stats shapes, timestamp sync, video frames within tolerance) and also what that loader
leaves unchecked but a training run relies on (info.json totals and shapes, ``index``/``frame_index``/
``episode_index`` columns, vector lengths, stats per feature, video resolution and frame count, stray parquet
files). See ``shared/docs/lerobot_v21_format.md`` sections 8 and 9.

Problem locations (``Problem.where``) are relative to the dataset root, e.g. ``meta/info.json: total_frames``,
``data/chunk-000/episode_000003.parquet: timestamp``, ``meta/episodes_stats.jsonl: episode 3 / action`` or
``episode 3 / observation.images.cam_left`` for video files.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.features import CODEBASE_VERSION, EPISODES_PATH, EPISODES_STATS_PATH, INFO_PATH, TASKS_PATH

# ---------------------------------------------------------------------------------------------------------
# Format constants (lerobot 0.3.3, codebase_version v2.1)
# ---------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


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

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == ERROR)

    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARNING)

    def format(self) -> str:
        lines = [
            f"LeRobot {CODEBASE_VERSION} validation of {self.root}: {self.episodes} episodes, "
            f"{self.frames} frames, {self.videos_checked} videos checked"
        ]
        lines += [f"  {p}" for p in self.problems]
        n_err, n_warn = len(self.errors()), len(self.warnings())
        if self.ok:
            tail = f" ({_plural(n_warn, 'warning')})" if n_warn else ""
            lines.append(f"VALID: {self.episodes} episodes, {self.frames} frames{tail}")
        else:
            lines.append(f"INVALID: {_plural(n_err, 'error')}, {_plural(n_warn, 'warning')}")
        return "\n".join(lines)


def format_episode_path(template: str, episode_index: int, chunks_size: int, video_key: str | None = None) -> str:
    """Format a ``data_path``/``video_path`` template the way lerobot does (chunk = index // chunks_size)."""
    kwargs: dict[str, Any] = {"episode_chunk": episode_index // chunks_size, "episode_index": episode_index}
    if video_key is not None:
        kwargs["video_key"] = video_key
    return template.format(**kwargs)


def validate_dataset(
    root: str | Path,
    *,
    check_videos: bool = True,
    decode_videos: bool = False,
    max_problems: int = 200,
) -> ValidationReport:
    """Check the LeRobot v2.1 dataset at ``root``; collect every problem (up to ``max_problems``), never raise.

    ``check_videos``: open each mp4 with PyAV and count its frames by demuxing packets (fast).
    ``decode_videos``: decode every frame instead, checking each decoded frame's timestamp (slow, thorough).
    """
    ctx = _Context(root=Path(root), problems=_Problems(max_problems))
    if not ctx.root.is_dir():
        ctx.problems.error(str(ctx.root), "dataset root does not exist or is not a directory")
        return ctx.report()

    with ctx.stage("meta/info.json"):
        info = _read_json(ctx, INFO_PATH)
        if info is not None:
            _check_info(ctx, info)
    with ctx.stage("meta/tasks.jsonl"):
        lines = _read_jsonl(ctx, TASKS_PATH)
        if lines is not None:
            _check_tasks(ctx, lines)
    with ctx.stage("meta/episodes.jsonl"):
        lines = _read_jsonl(ctx, EPISODES_PATH)
        if lines is not None:
            _check_episodes(ctx, lines)

    episodes = _episodes_to_check(ctx)
    with ctx.stage("file layout"):
        _check_files(ctx, episodes)
    with ctx.stage("parquet files"):
        _check_parquet_files(ctx, episodes)
    with ctx.stage("meta/episodes_stats.jsonl"):
        lines = _read_jsonl(ctx, EPISODES_STATS_PATH)
        if lines is not None:
            _check_episodes_stats(ctx, lines, episodes)
    with ctx.stage("info.json totals"):
        _check_totals(ctx)
    if check_videos:
        with ctx.stage("videos"):
            _check_videos(ctx, episodes, decode=decode_videos)
    return ctx.report()


# ---------------------------------------------------------------------------------------------------------
# Collection state
# ---------------------------------------------------------------------------------------------------------


class _Problems:
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


@dataclass
class _Feature:
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
class _Context:
    root: Path
    problems: _Problems
    info: dict | None = None
    fps: int | None = None
    chunks_size: int | None = None
    data_path: str | None = None
    video_path: str | None = None
    features: dict[str, _Feature] = field(default_factory=dict)  # well-formed features only
    tasks: dict[int, str] | None = None  # task_index -> task (None: tasks.jsonl unusable)
    task_lines: int | None = None
    episodes: dict[int, dict] | None = None  # episode_index -> episodes.jsonl entry
    episodes_lines: int | None = None
    rows: dict[int, int] = field(default_factory=dict)  # episode -> parquet row count
    all_parquet_read: bool = True
    data_summary: dict[tuple[int, str], dict[str, np.ndarray]] = field(default_factory=dict)
    frames: int = 0
    videos_checked: int = 0

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.dtype == "video"]

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
        )


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _short(values: list, limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _one_line(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_json(ctx: _Context, rel: str) -> Any | None:
    path = ctx.root / rel
    if not path.is_file():
        ctx.problems.error(rel, "missing (lerobot falls back to the Hugging Face Hub and fails offline)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        ctx.problems.error(rel, f"cannot be parsed as JSON: {_one_line(e)}")
        return None


def _read_jsonl(ctx: _Context, rel: str) -> list[tuple[int, Any]] | None:
    """Parsed (line number, object) pairs; bad lines are Problems and skipped; None if the file is unusable."""
    path = ctx.root / rel
    if not path.is_file():
        ctx.problems.error(rel, "missing (lerobot falls back to the Hugging Face Hub and fails offline)")
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        ctx.problems.error(rel, f"cannot be read: {_one_line(e)}")
        return None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            ctx.problems.error(f"{rel}: line {lineno}", f"not valid JSON: {_one_line(e)}")
            continue
        if not isinstance(obj, dict):
            ctx.problems.error(f"{rel}: line {lineno}", f"expected a JSON object, got {type(obj).__name__}")
            continue
        out.append((lineno, obj))
    return out


def _is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


# ---------------------------------------------------------------------------------------------------------
# meta/info.json
# ---------------------------------------------------------------------------------------------------------


def _check_info(ctx: _Context, info: Any) -> None:
    p = ctx.problems
    if not isinstance(info, dict):
        p.error(INFO_PATH, f"expected a JSON object, got {type(info).__name__}")
        return
    ctx.info = info
    for key in REQUIRED_INFO_KEYS:
        if key not in info:
            p.error(f"{INFO_PATH}: {key}", "required key missing")
    if "robot_type" not in info:
        p.warn(f"{INFO_PATH}: robot_type", "missing (lerobot writes it, null if unknown)")
    elif not isinstance(info["robot_type"], (str, type(None))):
        p.warn(f"{INFO_PATH}: robot_type", f"should be a string or null, got {info['robot_type']!r}")

    version = info.get("codebase_version")
    if "codebase_version" in info and version != CODEBASE_VERSION:
        p.error(
            f"{INFO_PATH}: codebase_version",
            f"is {version!r}, expected {CODEBASE_VERSION!r} (v2.0 makes lerobot look for meta/stats.json and "
            "skip episodes_stats.jsonl; v3.0 is a different layout)",
        )

    fps = info.get("fps")
    if "fps" in info:
        if _is_int(fps) and fps > 0:
            ctx.fps = fps
        else:
            p.error(f"{INFO_PATH}: fps", f"must be an integer > 0, got {fps!r}")

    chunks_size = info.get("chunks_size")
    if "chunks_size" in info:
        if _is_int(chunks_size) and chunks_size > 0:
            ctx.chunks_size = chunks_size
        else:
            p.error(f"{INFO_PATH}: chunks_size", f"must be an integer > 0, got {chunks_size!r}")

    for key in TOTAL_KEYS:
        if key in info and not (_is_int(info[key]) and info[key] >= 0):
            p.error(f"{INFO_PATH}: {key}", f"must be an integer >= 0, got {info[key]!r}")

    _check_features(ctx, info.get("features"))

    if "data_path" in info:
        ctx.data_path = _check_template(ctx, "data_path", info["data_path"], video=False)
    if "video_path" in info:
        template = info["video_path"]
        if template is None:
            if ctx.video_keys:
                p.error(f"{INFO_PATH}: video_path", f"is null but there are video features {ctx.video_keys}")
        else:
            ctx.video_path = _check_template(ctx, "video_path", template, video=True)


def _check_template(ctx: _Context, key: str, template: Any, *, video: bool) -> str | None:
    where = f"{INFO_PATH}: {key}"
    if not isinstance(template, str):
        ctx.problems.error(where, f"must be a string template, got {template!r}")
        return None
    cs = ctx.chunks_size or DEFAULT_CHUNK_SIZE
    try:
        ep0, ep1 = (format_episode_path(template, ep, cs, "k1" if video else None) for ep in (0, 1))
        other_key = format_episode_path(template, 0, cs, "k2") if video else None
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as e:
        allowed = "{episode_chunk}, {episode_index}" + (", {video_key}" if video else "")
        ctx.problems.error(where, f"{template!r} cannot be formatted with {allowed}: {type(e).__name__}: {e}")
        return None
    if ep0 == ep1:
        ctx.problems.error(where, f"{template!r} does not depend on episode_index")
        return None
    if video and ep0 == other_key:
        ctx.problems.error(where, f"{template!r} does not depend on video_key")
        return None
    if ep0.startswith("/") or ".." in Path(ep0).parts:
        ctx.problems.error(where, f"{template!r} must be a path relative to the dataset root")
        return None
    if not video and not ep0.startswith("data/"):
        ctx.problems.error(where, f"{template!r} is not under data/ (lerobot loads the parquet files under data/)")
    suffix = ".mp4" if video else ".parquet"
    if not ep0.endswith(suffix):
        ctx.problems.warn(where, f"{template!r} does not end with {suffix}")
    return template


def _check_features(ctx: _Context, features: Any) -> None:
    p = ctx.problems
    if features is None:
        return  # missing key already reported
    if not isinstance(features, dict):
        p.error(f"{INFO_PATH}: features", f"must be an object, got {type(features).__name__}")
        return
    for name, ft in features.items():
        feature = _check_feature(ctx, name, ft)
        if feature is not None:
            ctx.features[name] = feature
    for name, (dtype, shape) in DEFAULT_FEATURES.items():
        where = f"{INFO_PATH}: features.{name}"
        if name not in features:
            p.error(where, f"default feature missing (lerobot always has {name}: {dtype} {list(shape)})")
            continue
        ft = features[name]
        if isinstance(ft, dict) and (ft.get("dtype") != dtype or ft.get("shape") != list(shape)):
            p.error(where, f"must be dtype {dtype} shape {list(shape)}, got dtype {ft.get('dtype')!r} shape "
                           f"{ft.get('shape')!r}")


def _check_feature(ctx: _Context, name: str, ft: Any) -> _Feature | None:
    """Check one info.json feature entry; return it when it is well-formed enough to check data against."""
    p = ctx.problems
    where = f"{INFO_PATH}: features.{name}"
    if "/" in name:
        p.error(where, "feature names must not contain '/'")
    if not isinstance(ft, dict):
        p.error(where, f"must be an object with dtype, shape, names; got {type(ft).__name__}")
        return None
    well_formed = True

    dtype = ft.get("dtype")
    if not _valid_dtype(dtype):
        p.error(where, f"dtype {dtype!r} is not 'video', 'image', 'string' or a numeric numpy dtype")
        well_formed = False

    shape = ft.get("shape")
    if not (isinstance(shape, list) and shape and all(_is_int(d) and d > 0 for d in shape)):
        p.error(where, f"shape must be a non-empty list of positive integers, got {shape!r}")
        well_formed = False
    if not well_formed:
        return None
    shape_t = tuple(shape)

    if "names" not in ft:
        p.error(where, "'names' missing (use null or a list)")
    names = ft.get("names")
    if dtype in VISUAL_DTYPES:
        if len(shape_t) != 3 or shape_t[2] != 3:
            p.error(where, f"{dtype} feature shape must be [height, width, 3], got {list(shape_t)}")
            well_formed = False
        if not (isinstance(names, list) and len(names) == 3 and names[2] in ("channel", "channels")):
            p.error(where, f"names must be ['height', 'width', 'channels'] (lerobot reads names[2] to know the "
                           f"shape is channel-last), got {names!r}")
        elif names[:2] != ["height", "width"]:
            p.warn(where, f"names {names!r}: lerobot writes ['height', 'width', 'channels']")
        if dtype == "video":
            _check_video_info_block(ctx, where, ft.get("info"))
    else:
        if isinstance(names, list):
            if len(shape_t) == 1 and len(names) != shape_t[0]:
                p.error(where, f"has {len(names)} names for shape {list(shape_t)}")
        elif isinstance(names, dict):
            p.warn(where, "names is a dict (older datasets); lerobot writes a list or null")
        elif names is not None:
            p.error(where, f"names must be a list or null, got {names!r}")
        if dtype != "string" and "image" in name and shape_t != VISUAL_STATS_SHAPE:
            p.error(where, "name contains 'image': lerobot's aggregate_stats then requires stats of shape "
                           "[3, 1, 1], impossible for this numeric feature - rename it")
    return _Feature(name, dtype, shape_t) if well_formed else None


def _valid_dtype(dtype: Any) -> bool:
    if dtype in ("video", "image", "string"):
        return True
    if not isinstance(dtype, str):
        return False
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        return False


def _check_video_info_block(ctx: _Context, where: str, block: Any) -> None:
    if block is None:
        ctx.problems.warn(where, "no 'info' block (lerobot writes video.height/width/codec/pix_fmt/fps from episode 0)")
    elif not isinstance(block, dict):
        ctx.problems.warn(where, f"'info' must be an object, got {type(block).__name__}")


# ---------------------------------------------------------------------------------------------------------
# meta/tasks.jsonl and meta/episodes.jsonl
# ---------------------------------------------------------------------------------------------------------


def _check_tasks(ctx: _Context, lines: list[tuple[int, dict]]) -> None:
    p = ctx.problems
    tasks: dict[int, str] = {}
    for lineno, obj in lines:
        where = f"{TASKS_PATH}: line {lineno}"
        index, task = obj.get("task_index"), obj.get("task")
        if not _is_int(index) or not isinstance(task, str):
            p.error(where, f"needs an integer task_index and a string task, got {_one_line(obj, 120)}")
            continue
        if index in tasks:
            p.error(where, f"duplicate task_index {index}")
            continue
        tasks[index] = task
    if sorted(tasks) != list(range(len(tasks))):
        p.error(f"{TASKS_PATH}: task_index", f"values must be 0..{len(tasks) - 1}, got {_short(sorted(tasks))}")
    seen: set[str] = set()
    for index, task in sorted(tasks.items()):
        if task in seen:
            p.warn(f"{TASKS_PATH}: task_index {index}", f"task string {task!r} appears more than once")
        seen.add(task)
    ctx.tasks = tasks
    ctx.task_lines = len(lines)


def _check_episodes(ctx: _Context, lines: list[tuple[int, dict]]) -> None:
    p = ctx.problems
    episodes: dict[int, dict] = {}
    known_tasks = set(ctx.tasks.values()) if ctx.tasks is not None else None
    order: list[int] = []
    for lineno, obj in lines:
        ep = obj.get("episode_index")
        if not _is_int(ep) or ep < 0:
            p.error(f"{EPISODES_PATH}: line {lineno}", f"episode_index must be an integer >= 0, got {ep!r}")
            continue
        where = f"{EPISODES_PATH}: episode {ep}"
        if ep in episodes:
            p.error(where, f"duplicate episode_index (line {lineno})")
            continue
        length = obj.get("length")
        if not (_is_int(length) and length > 0):
            p.error(where, f"length must be an integer > 0, got {length!r}")
        tasks = obj.get("tasks")
        if not (isinstance(tasks, list) and all(isinstance(t, str) for t in tasks)):
            p.error(where, f"tasks must be a list of strings, got {tasks!r}")
        elif known_tasks is not None:
            unknown = [t for t in tasks if t not in known_tasks]
            if unknown:
                p.error(where, f"tasks {unknown!r} are not in {TASKS_PATH}")
        episodes[ep] = obj
        order.append(ep)
    if sorted(episodes) != list(range(len(episodes))):
        p.error(f"{EPISODES_PATH}: episode_index",
                f"values must be 0..{len(episodes) - 1} without gaps, got {_short(sorted(episodes))}")
    elif order != sorted(order):
        p.warn(f"{EPISODES_PATH}: episode_index", "lines are not in episode order (lerobot sorts them)")
    ctx.episodes = episodes
    ctx.episodes_lines = len(lines)


def _episodes_to_check(ctx: _Context) -> list[int]:
    """Episodes whose files must exist: 0..total_episodes-1 (what the loader expects) plus episodes.jsonl's."""
    eps = set(ctx.episodes or ())
    total = ctx.info.get("total_episodes") if ctx.info else None
    if _is_int(total) and total > 0:
        # guard against an absurd total (each missing file is a problem anyway; the totals check names it)
        bound = max(len(eps), _count_parquet(ctx)) + 1000
        eps.update(range(min(total, bound)))
    return sorted(eps)


def _count_parquet(ctx: _Context) -> int:
    data_dir = ctx.root / "data"
    return sum(1 for _ in data_dir.rglob("*.parquet")) if data_dir.is_dir() else 0


# ---------------------------------------------------------------------------------------------------------
# Files on disk
# ---------------------------------------------------------------------------------------------------------


def _check_files(ctx: _Context, episodes: list[int]) -> None:
    p = ctx.problems
    if ctx.data_path is not None:
        expected = {}
        for ep in episodes:
            rel = ctx.data_rel(ep)
            expected[rel] = ep
            if not (ctx.root / rel).is_file():
                p.error(rel, f"missing: data file of episode {ep}")
        data_dir = ctx.root / "data"
        if data_dir.is_dir():
            for path in sorted(data_dir.rglob("*.parquet")):
                rel = path.relative_to(ctx.root).as_posix()
                if rel not in expected:
                    p.error(rel, "stray parquet file: not the data file of any episode, but lerobot's loader "
                                 "reads every *.parquet under data/")
    if ctx.video_path is not None and ctx.video_keys:
        expected_videos = set()
        for ep in episodes:
            for key in ctx.video_keys:
                rel = ctx.video_rel(ep, key)
                expected_videos.add(rel)
                if not (ctx.root / rel).is_file():
                    p.error(rel, f"missing: video of episode {ep} for {key}")
        videos_dir = ctx.root / "videos"
        if videos_dir.is_dir():
            for path in sorted(videos_dir.rglob("*.mp4")):
                rel = path.relative_to(ctx.root).as_posix()
                if rel not in expected_videos:
                    p.warn(rel, "stray video file: not the video of any episode and video feature")


# ---------------------------------------------------------------------------------------------------------
# Parquet data
# ---------------------------------------------------------------------------------------------------------


def _check_parquet_files(ctx: _Context, episodes: list[int]) -> None:
    """Per-episode checks, in file order; ``index`` must continue across files."""
    if ctx.data_path is None:
        ctx.all_parquet_read = False
        return
    next_index: int | None = 0
    for ep in episodes:
        rel = ctx.data_rel(ep)
        n_rows = None
        if (ctx.root / rel).is_file():
            with ctx.stage(rel):
                n_rows = _check_parquet_episode(ctx, ep, rel, next_index)
        if n_rows is None:
            ctx.all_parquet_read = False
            length = (ctx.episodes or {}).get(ep, {}).get("length")
            n_rows = length if _is_int(length) else None
        next_index = next_index + n_rows if (next_index is not None and n_rows is not None) else None


def _check_parquet_episode(ctx: _Context, ep: int, rel: str, first_index: int | None) -> int | None:
    p = ctx.problems
    try:
        table = pq.read_table(ctx.root / rel)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
        p.error(rel, f"cannot be read as parquet: {_one_line(e)}")
        return None
    n = table.num_rows
    ctx.rows[ep] = n
    ctx.frames += n
    if n == 0:
        p.error(rel, "has no rows")

    values: dict[str, np.ndarray] = {}
    for name, feature in ctx.features.items():
        where = f"{rel}: {name}"
        if feature.dtype == "video":
            if name in table.column_names:
                p.warn(where, "video feature also has a parquet column (lerobot writes none; frames live in the mp4)")
            continue
        if name not in table.column_names:
            p.error(where, "column missing (declared in info.json features)")
            continue
        column = table.column(name).combine_chunks()
        arr = _column_values(ctx, where, feature, column, n)
        if arr is not None:
            values[name] = arr
            if feature.has_stats and n and arr.dtype.kind in "biuf":
                data = arr.reshape(n, *(feature.shape if arr.ndim > 1 else (1,))).astype(np.float64)
                if np.all(np.isfinite(data)):
                    ctx.data_summary[(ep, name)] = {"min": data.min(axis=0), "max": data.max(axis=0),
                                                    "mean": data.mean(axis=0)}
    extra = sorted(set(table.column_names) - set(ctx.features))
    if extra and ctx.info is not None and isinstance(ctx.info.get("features"), dict):
        undeclared = [c for c in extra if c not in ctx.info["features"]]
        if undeclared:
            p.warn(rel, f"columns not declared in info.json features: {undeclared}")

    _check_default_columns(ctx, ep, rel, values, n, first_index)
    _check_episode_entry(ctx, ep, rel, values, n)
    return n


def _column_values(ctx: _Context, where: str, feature: _Feature, column: pa.Array, n: int) -> np.ndarray | None:
    """Check a column's arrow structure against the feature; return values shaped (n, *shape) or (n,) for scalars."""
    p = ctx.problems
    if feature.dtype == "string":
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            p.error(where, f"string feature stored as {column.type}")
        return None
    if feature.dtype == "image":
        if not (pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0):
            p.error(where, f"image feature must be struct<bytes: binary, path: string>, got {column.type}")
        return None
    if column.null_count:
        p.error(where, f"{column.null_count} null values")
        return None

    shape = feature.shape
    dims = () if shape == (1,) else shape  # shape [1] is a plain scalar column
    leaf: pa.Array = column
    for level, size in enumerate(dims):
        if not _is_list_type(leaf.type):
            p.error(where, f"shape {list(shape)} needs {len(dims)} nested list level(s), found {column.type}")
            return None
        if leaf.null_count:
            p.error(where, f"{leaf.null_count} null lists at nesting level {level + 1}")
            return None
        lengths = pc.list_value_length(leaf).to_numpy(zero_copy_only=False)
        bad = lengths != size
        if bad.any():
            i = _first(bad)
            row = i // math.prod(dims[:level])
            what = "rows" if level == 0 else f"lists at nesting level {level + 1}"
            p.error(where, f"{int(bad.sum())} {what} do not have {size} values (first at row {row}: "
                           f"{int(lengths[i])} values); info.json shape is {list(shape)}")
            return None
        leaf = leaf.flatten()
    if _is_list_type(leaf.type):
        p.error(where, f"{column.type} is nested deeper than shape {list(shape)}"
                       + (" (shape [1] is stored as a plain column)" if shape == (1,) else ""))
        return None
    if leaf.null_count:
        p.error(where, f"{leaf.null_count} null values")
        return None

    declared = np.dtype(feature.dtype)
    try:
        actual = np.dtype(leaf.type.to_pandas_dtype())
    except (NotImplementedError, TypeError):
        p.error(where, f"values of type {leaf.type}, info.json says {feature.dtype}")
        return None
    if actual.kind not in "biuf":
        p.error(where, f"values of type {leaf.type}, info.json says {feature.dtype}")
        return None
    if actual != declared:
        if actual.kind == declared.kind or {actual.kind, declared.kind} <= {"i", "u"}:
            p.warn(where, f"stored as {leaf.type}, info.json says {feature.dtype} (lerobot converts on load)")
        else:
            p.error(where, f"stored as {leaf.type}, info.json says {feature.dtype}")
            return None

    arr = leaf.to_numpy(zero_copy_only=False).reshape((n, *dims))
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1) if n else np.zeros(0, bool)
        if bad.any():
            count = int((~np.isfinite(arr)).sum())
            p.error(where, f"{count} NaN/inf values in {int(bad.sum())} rows (first at row {_first(bad)})")
    return arr


def _check_default_columns(
    ctx: _Context, ep: int, rel: str, values: dict[str, np.ndarray], n: int, first_index: int | None
) -> None:
    p = ctx.problems
    positions = np.arange(n)

    ts = values.get("timestamp")
    if ts is not None and ts.ndim == 1 and ctx.fps is not None and n:
        _check_timestamps(ctx, f"{rel}: timestamp", ts.astype(np.float64), ctx.fps)

    fi = values.get("frame_index")
    if fi is not None and fi.ndim == 1 and not np.array_equal(fi, positions):
        i = _first(fi != positions)
        p.error(f"{rel}: frame_index", f"must be 0..{n - 1} in row order; first mismatch at row {i}: {fi[i]}")

    epi = values.get("episode_index")
    if epi is not None and epi.ndim == 1 and (epi != ep).any():
        i = _first(epi != ep)
        p.error(f"{rel}: episode_index",
                f"{int((epi != ep).sum())} rows do not say {ep} (first at row {i}: {epi[i]}); lerobot would "
                "decode another episode's video for them")

    idx = values.get("index")
    if idx is not None and idx.ndim == 1 and first_index is not None:
        expected = first_index + positions
        if not np.array_equal(idx, expected):
            i = _first(idx != expected)
            p.error(f"{rel}: index",
                    f"must continue the global row count ({first_index}..{first_index + n - 1} for this file, "
                    f"in file order from 0); first mismatch at row {i}: {idx[i]}")

    ti = values.get("task_index")
    if ti is not None and ti.ndim == 1 and ctx.tasks is not None:
        unknown = sorted(set(np.unique(ti).tolist()) - set(ctx.tasks))
        if unknown:
            p.error(f"{rel}: task_index", f"values {_short(unknown)} are not in {TASKS_PATH}")


def _check_timestamps(ctx: _Context, where: str, ts: np.ndarray, fps: int) -> None:
    p = ctx.problems
    if not np.all(np.isfinite(ts)):
        return  # already reported as NaN/inf
    n = len(ts)
    expected = np.arange(n) / fps
    dev = np.abs(ts - expected)
    if dev.max() > TIMESTAMP_TOLERANCE_S:
        i = _first(dev > TIMESTAMP_TOLERANCE_S)
        p.error(where, f"differs from frame_index/fps by up to {dev.max():.6g} s (first at row {i}: {ts[i]:.9g} "
                       f"instead of {expected[i]:.9g}); lerobot looks frames up in the video at this time")
    if n > 1:
        step = np.diff(ts)
        bad = np.abs(step - 1.0 / fps) > TIMESTAMP_TOLERANCE_S
        if bad.any():
            i = _first(bad)
            p.error(where, f"{int(bad.sum())} of {n - 1} consecutive differences are not 1/fps = {1 / fps:.6f} s "
                           f"± {TIMESTAMP_TOLERANCE_S} (first between rows {i} and {i + 1}: {step[i]:.6g} s); "
                           "lerobot's check_timestamps_sync rejects the dataset")
    if ts.max() >= FLOAT32_TIMESTAMP_LIMIT_S:
        p.error(where, f"reaches {ts.max():.6g} s: float32 timestamps beyond {FLOAT32_TIMESTAMP_LIMIT_S:.0f} s are "
                       f"spaced more than {TIMESTAMP_TOLERANCE_S} s apart and fail lerobot's loader; split the episode")


def _check_episode_entry(ctx: _Context, ep: int, rel: str, values: dict[str, np.ndarray], n: int) -> None:
    """episodes.jsonl length and tasks vs this parquet file."""
    if ctx.episodes is None:
        return
    entry = ctx.episodes.get(ep)
    where = f"{EPISODES_PATH}: episode {ep}"
    if entry is None:
        ctx.problems.error(where, f"no line for episode {ep}, but {rel} exists")
        return
    length = entry.get("length")
    if _is_int(length) and length != n:
        ctx.problems.error(where, f"length {length} but {rel} has {n} rows (lerobot derives episode row ranges "
                                  "from these lengths)")
    ti = values.get("task_index")
    tasks = entry.get("tasks")
    if ti is not None and ctx.tasks is not None and isinstance(tasks, list):
        row_tasks = {ctx.tasks[t] for t in np.unique(ti).tolist() if t in ctx.tasks}
        if row_tasks != set(tasks):
            ctx.problems.warn(where, f"tasks {sorted(tasks)} differ from the tasks of its rows {sorted(row_tasks)}")


# ---------------------------------------------------------------------------------------------------------
# meta/episodes_stats.jsonl
# ---------------------------------------------------------------------------------------------------------


def _check_episodes_stats(ctx: _Context, lines: list[tuple[int, dict]], episodes: list[int]) -> None:
    p = ctx.problems
    stats_by_ep: dict[int, dict] = {}
    for lineno, obj in lines:
        ep, stats = obj.get("episode_index"), obj.get("stats")
        if not _is_int(ep) or not isinstance(stats, dict):
            p.error(f"{EPISODES_STATS_PATH}: line {lineno}", "needs an integer episode_index and a stats object")
            continue
        if ep in stats_by_ep:
            p.error(f"{EPISODES_STATS_PATH}: episode {ep}", f"duplicate line (line {lineno})")
            continue
        stats_by_ep[ep] = stats
    missing = sorted(set(episodes) - set(stats_by_ep))
    if missing:
        p.error(f"{EPISODES_STATS_PATH}: episode_index", f"no stats line for episodes {_short(missing)}")
    extra = sorted(set(stats_by_ep) - set(episodes))
    if extra:
        p.error(f"{EPISODES_STATS_PATH}: episode_index", f"stats lines for unknown episodes {_short(extra)}")

    for ep, stats in sorted(stats_by_ep.items()):
        for name, feature in ctx.features.items():
            if feature.has_stats:
                with ctx.stage(f"{EPISODES_STATS_PATH}: episode {ep} / {name}"):
                    _check_feature_stats(ctx, ep, feature, stats.get(name))
        declared = ctx.info.get("features") if ctx.info is not None else None
        if isinstance(declared, dict):
            undeclared = sorted(k for k in stats if k not in declared)
            if undeclared:
                p.warn(f"{EPISODES_STATS_PATH}: episode {ep}", f"stats for features not in info.json: {undeclared}")


def _check_feature_stats(ctx: _Context, ep: int, feature: _Feature, entry: Any) -> None:
    p = ctx.problems
    where = f"{EPISODES_STATS_PATH}: episode {ep} / {feature.name}"
    if entry is None:
        p.error(where, "stats missing (policies normalise with them: KeyError when a policy is built)")
        return
    if not isinstance(entry, dict):
        p.error(where, f"must be an object with {list(STAT_KEYS)}")
        return
    arrays: dict[str, np.ndarray] = {}
    for key in STAT_KEYS:
        if key not in entry:
            p.error(where, f"'{key}' missing")
            continue
        try:
            arr = np.asarray(entry[key], dtype=np.float64)
        except (ValueError, TypeError):
            p.error(where, f"'{key}' is not a rectangular numeric array: {_one_line(entry[key], 80)}")
            continue
        expected = (1,) if key == "count" else feature.stats_shape
        if arr.shape != expected:
            p.error(where, f"'{key}' has shape {list(arr.shape)}, expected {list(expected)}"
                           + (" (lerobot's aggregate_stats rejects this at load)" if arr.ndim == 0 or key == "count"
                              or feature.is_visual else ""))
            continue
        if not np.all(np.isfinite(arr)):
            p.error(where, f"'{key}' has non-finite values")
            continue
        arrays[key] = arr

    count = arrays.get("count")
    if count is not None:
        c = count[0]
        if c < 1 or c != int(c):
            p.error(where, f"count must be a positive integer, got {c:g}")
        elif not feature.is_visual and ep in ctx.rows and int(c) != ctx.rows[ep]:
            p.warn(where, f"count {int(c)} but the episode has {ctx.rows[ep]} rows")
    if feature.is_visual:
        for key in ("min", "max", "mean", "std"):
            arr = arrays.get(key)
            if arr is not None and ((arr < 0).any() or (arr > 1).any()):
                p.error(where, f"'{key}' has values outside [0, 1] (image stats are pixel values / 255)")
    if "min" in arrays and "max" in arrays and (arrays["min"] > arrays["max"]).any():
        p.error(where, "'min' exceeds 'max'")
    if "std" in arrays and (arrays["std"] < 0).any():
        p.error(where, "'std' is negative")

    summary = ctx.data_summary.get((ep, feature.name))
    if summary is not None:
        stale = [key for key in ("min", "max", "mean") if key in arrays
                 and not np.allclose(arrays[key], summary[key].reshape(arrays[key].shape), rtol=1e-4, atol=1e-5)]
        if stale:
            p.warn(where, f"{', '.join(stale)} do not match the episode's parquet data (stale stats?)")


# ---------------------------------------------------------------------------------------------------------
# info.json totals (after the data has been read)
# ---------------------------------------------------------------------------------------------------------


def _check_totals(ctx: _Context) -> None:
    info = ctx.info
    if info is None:
        return
    p = ctx.problems

    def total(key: str) -> int | None:
        value = info.get(key)
        return value if _is_int(value) and value >= 0 else None

    episodes = total("total_episodes")
    if episodes is not None:
        if ctx.episodes_lines is not None and episodes != len(ctx.episodes or {}):
            listed = len(ctx.episodes or {})
            p.error(f"{INFO_PATH}: total_episodes", f"is {episodes} but {EPISODES_PATH} lists {listed}")
        if ctx.data_path is not None:
            n_files = len(ctx.rows)
            if ctx.all_parquet_read and n_files != episodes:
                p.error(f"{INFO_PATH}: total_episodes", f"is {episodes} but there are {n_files} episode parquet files")
    frames = total("total_frames")
    if frames is not None and ctx.all_parquet_read and ctx.data_path is not None and frames != ctx.frames:
        p.error(f"{INFO_PATH}: total_frames", f"is {frames} but the parquet files hold {ctx.frames} rows")
    tasks = total("total_tasks")
    if tasks is not None and ctx.task_lines is not None and tasks != ctx.task_lines:
        p.error(f"{INFO_PATH}: total_tasks", f"is {tasks} but {TASKS_PATH} has {ctx.task_lines} lines")
    if episodes is None:
        return
    videos = total("total_videos")
    n_video_keys = len(ctx.video_keys)
    if videos is not None and videos != episodes * n_video_keys:
        p.error(f"{INFO_PATH}: total_videos",
                f"is {videos}, expected total_episodes × video features = {episodes} × {n_video_keys}")
    chunks = total("total_chunks")
    if chunks is not None and ctx.chunks_size is not None:
        expected = math.ceil(episodes / ctx.chunks_size)
        if chunks != expected:
            p.error(f"{INFO_PATH}: total_chunks",
                    f"is {chunks}, expected ceil({episodes} / {ctx.chunks_size}) = {expected}")
    splits = info.get("splits")
    if "splits" in info and not (isinstance(splits, dict) and splits.get("train") == f"0:{episodes}"):
        p.error(f"{INFO_PATH}: splits", f"is {splits!r}, expected {{'train': '0:{episodes}'}}")


# ---------------------------------------------------------------------------------------------------------
# Videos
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _VideoProbe:
    streams: int
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    average_rate: float | None = None
    times: list[float] = field(default_factory=list)  # presentation times in seconds, sorted
    missing_pts: int = 0
    wrong_size_frames: int = 0


def _probe_video(path: Path, decode: bool) -> _VideoProbe:
    import av  # imported here: metadata-only validation (check_videos=False) does not need PyAV

    with av.open(str(path)) as container:
        if not container.streams.video:
            return _VideoProbe(streams=0)
        stream = container.streams.video[0]
        cc = stream.codec_context
        probe = _VideoProbe(
            streams=len(container.streams.video),
            codec=cc.codec.canonical_name if cc.codec else cc.name,
            width=cc.width,
            height=cc.height,
            pix_fmt=cc.pix_fmt,
            average_rate=float(stream.average_rate) if stream.average_rate else None,
        )
        if decode:
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    probe.missing_pts += 1
                    continue
                probe.times.append(float(frame.pts * frame.time_base))
                if (frame.width, frame.height) != (cc.width, cc.height):
                    probe.wrong_size_frames += 1
        else:
            time_base = stream.time_base
            for packet in container.demux(stream):
                if not packet.size:
                    continue  # the flush packet
                if packet.pts is None:
                    probe.missing_pts += 1
                else:
                    probe.times.append(float(packet.pts * time_base))
        probe.times.sort()
        return probe


def _check_videos(ctx: _Context, episodes: list[int], *, decode: bool) -> None:
    if ctx.video_path is None:
        return
    for key in ctx.video_keys:
        first_probe: _VideoProbe | None = None
        for ep in episodes:
            rel = ctx.video_rel(ep, key)
            if not (ctx.root / rel).is_file():
                continue  # reported by _check_files
            where = f"episode {ep} / {key}"
            try:
                probe = _probe_video(ctx.root / rel, decode)
            except Exception as e:  # noqa: BLE001 - PyAV raises many error types for damaged files
                ctx.problems.error(where, f"{rel} cannot be read with PyAV: {type(e).__name__}: {_one_line(e, 200)}")
                continue
            ctx.videos_checked += 1
            with ctx.stage(where):
                _check_video_probe(ctx, where, rel, ctx.features[key], probe, ctx.rows.get(ep))
            if first_probe is None and ep == 0:
                first_probe = probe
        if first_probe is not None:
            _compare_video_info_block(ctx, key, first_probe)


def _check_video_probe(
    ctx: _Context, where: str, rel: str, feature: _Feature, probe: _VideoProbe, rows: int | None
) -> None:
    p = ctx.problems
    if probe.streams == 0:
        p.error(where, f"{rel} has no video stream")
        return
    if probe.streams > 1:
        p.warn(where, f"{rel} has {probe.streams} video streams; lerobot reads the first")
    height, width = feature.shape[0], feature.shape[1]
    if (probe.width, probe.height) != (width, height):
        p.error(where, f"{rel} is {probe.width}x{probe.height} but info.json shape says {width}x{height}")
    if probe.wrong_size_frames:
        p.error(where, f"{rel}: {probe.wrong_size_frames} decoded frames differ from the stream size")
    if probe.pix_fmt != "yuv420p":
        p.warn(where, f"{rel} has pix_fmt {probe.pix_fmt} (lerobot writes yuv420p)")
    fps = ctx.fps
    rate_ok = False
    if probe.average_rate is None:
        p.error(where, f"{rel} has no average frame rate (lerobot converts timestamps to frame indices with it)")
    elif fps is not None and abs(probe.average_rate - fps) > RATE_TOLERANCE:
        p.error(where, f"{rel} average frame rate {probe.average_rate:.4f} != fps {fps} (lerobot converts "
                       "timestamps to frame indices with it)")
    else:
        rate_ok = True
    if probe.missing_pts:
        p.error(where, f"{rel}: {probe.missing_pts} frames without a pts")

    n = len(probe.times) + probe.missing_pts
    if rows is not None:
        if n < rows:
            p.error(where, f"{rel} has {n} frames but the episode has {rows} rows "
                           "(lerobot fails at the first missing frame)")
        elif n > rows:
            p.warn(where, f"{rel} has {n} frames but the episode has {rows} rows (extra frames are ignored)")
    if not probe.times or fps is None:
        return
    first = probe.times[0]
    if abs(first) > VIDEO_PTS_TOLERANCE_S:
        p.error(where, f"{rel}: first frame at pts {first:.6f} s, must be 0 (lerobot looks frame k up at k/fps)")
        return
    times = np.asarray(probe.times)
    dev = np.abs(times - np.arange(len(times)) / fps)
    if dev.max() > VIDEO_PTS_TOLERANCE_S:
        if not rate_ok:
            return  # the wrong average rate reported above already explains the shifted frames
        i = _first(dev > VIDEO_PTS_TOLERANCE_S)
        p.error(where, f"{rel}: {int((dev > VIDEO_PTS_TOLERANCE_S).sum())} frames are not at k/fps (first: frame {i} "
                       f"at {times[i]:.6f} s instead of {i / fps:.6f} s); dropped or re-timed frames?")
    elif dev.max() >= TIMESTAMP_TOLERANCE_S:
        p.warn(where, f"{rel}: frame times deviate from k/fps by up to {dev.max() * 1e3:.3f} ms; lerobot's default "
                      f"tolerance_s is {TIMESTAMP_TOLERANCE_S} s")


def _compare_video_info_block(ctx: _Context, key: str, probe: _VideoProbe) -> None:
    """info.json's video 'info' block describes episode 0's file; the loader never reads it (warnings only)."""
    block = ctx.info.get("features", {}).get(key, {}).get("info") if ctx.info else None
    if not isinstance(block, dict):
        return
    actual = {"video.height": probe.height, "video.width": probe.width, "video.codec": probe.codec,
              "video.pix_fmt": probe.pix_fmt,
              "video.fps": round(probe.average_rate, 3) if probe.average_rate else None}
    for field_name, value in actual.items():
        if field_name in block and value is not None and block[field_name] != value:
            ctx.problems.warn(f"{INFO_PATH}: features.{key}.info",
                              f"{field_name} is {block[field_name]!r} but episode 0's video has {value!r}")
