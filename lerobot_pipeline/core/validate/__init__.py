"""LeRobot dataset conformance checker (v2.1 and v3.0): fast, dependency-light (json, numpy, pyarrow, PyAV).

``validate_dataset(root)`` inspects a dataset directory and returns a :class:`ValidationReport` listing every
problem it finds (up to ``max_problems``); it never raises on a broken dataset - a missing or unparsable file
is itself a :class:`Problem`. It checks what lerobot's loader checks (files at their templated paths,
codebase version, stats shapes, timestamp sync, video frames within tolerance) and also what the loader
leaves unchecked but a training run relies on (info.json totals and shapes, ``index``/``frame_index``/
``episode_index`` columns, vector lengths, stats per feature, video resolution and frame count, stray parquet
files). See ``shared/docs/lerobot_v21_format.md`` sections 8 and 9, and docs/v30.md.

Modules by what they check: :mod:`.meta` (info.json, v2.1 jsonl files, totals), :mod:`.parquet` (data files),
:mod:`.stats`, :mod:`.videos`, :mod:`.v30` (the v3.0 layout, reusing the others).
Problem locations (``Problem.where``) are relative to the dataset root, e.g. ``meta/info.json: total_frames``,
``data/chunk-000/episode_000003.parquet: timestamp``, ``meta/episodes_stats.jsonl: episode 3 / action`` or
``episode 3 / observation.images.cam_left`` for video files.
"""

from __future__ import annotations

import json
from pathlib import Path

from lerobot_pipeline.core.features import EPISODES_PATH, EPISODES_STATS_PATH, INFO_PATH, TASKS_PATH
from lerobot_pipeline.core.validate.context import Context, format_episode_path, read_json, read_jsonl
from lerobot_pipeline.core.validate.meta import (
    check_episodes,
    check_info,
    check_tasks,
    check_totals,
    episodes_to_check,
)
from lerobot_pipeline.core.validate.parquet import check_files, check_parquet_files
from lerobot_pipeline.core.validate.report import ERROR, WARNING, Problem, Problems, ValidationReport
from lerobot_pipeline.core.validate.stats import check_episodes_stats
from lerobot_pipeline.core.validate.v30 import V30, validate_v30
from lerobot_pipeline.core.validate.videos import check_videos as check_video_files

__all__ = ["ERROR", "WARNING", "Problem", "ValidationReport", "dataset_version", "format_episode_path",
           "validate_dataset"]


def dataset_version(root: Path) -> str | None:
    """``codebase_version`` from ``meta/info.json``, or None if it cannot be read."""
    try:
        version: str | None = json.loads((Path(root) / INFO_PATH).read_text(encoding="utf-8")).get("codebase_version")
        return version
    except (OSError, ValueError, AttributeError):
        return None


def validate_dataset(
    root: str | Path,
    *,
    check_videos: bool = True,
    decode_videos: bool = False,
    max_problems: int = 200,
    video_files: set[str] | None = None,
    deep_episodes: set[int] | None = None,
) -> ValidationReport:
    """Check the LeRobot dataset at ``root``; collect every problem (up to ``max_problems``), never raise.

    The format is taken from ``meta/info.json``'s ``codebase_version``: ``v3.0`` is checked as a v3.0
    dataset (:mod:`.v30`), anything else against v2.1.

    ``check_videos``: open each mp4 with PyAV and count its frames by demuxing packets (fast).
    ``decode_videos``: decode every frame instead, checking each decoded frame's timestamp (slow, thorough).
    ``video_files`` (v3.0 only): probe just these video files (paths relative to ``root``), e.g. those a build
    rewrote; the others must still exist.
    ``deep_episodes`` (v2.1 only): read the parquet and probe the videos of just these episode indices (those a
    build wrote); the others must exist and agree with meta/ (they were checked when they were written).
    """
    ctx = Context(root=Path(root), problems=Problems(max_problems), deep=deep_episodes)
    if not ctx.root.is_dir():
        ctx.problems.error(str(ctx.root), "dataset root does not exist or is not a directory")
        return ctx.report()
    if dataset_version(ctx.root) == V30:
        ctx.version = V30
        validate_v30(ctx, check_videos=check_videos, decode_videos=decode_videos, video_files=video_files)
        return ctx.report()

    with ctx.stage("meta/info.json"):
        info = read_json(ctx, INFO_PATH)
        if info is not None:
            check_info(ctx, info)
    with ctx.stage("meta/tasks.jsonl"):
        lines = read_jsonl(ctx, TASKS_PATH)
        if lines is not None:
            check_tasks(ctx, lines)
    with ctx.stage("meta/episodes.jsonl"):
        lines = read_jsonl(ctx, EPISODES_PATH)
        if lines is not None:
            check_episodes(ctx, lines)

    episodes = episodes_to_check(ctx)
    with ctx.stage("file layout"):
        check_files(ctx, episodes)
    with ctx.stage("parquet files"):
        check_parquet_files(ctx, episodes)
    with ctx.stage("meta/episodes_stats.jsonl"):
        lines = read_jsonl(ctx, EPISODES_STATS_PATH)
        if lines is not None:
            check_episodes_stats(ctx, lines, episodes)
    with ctx.stage("info.json totals"):
        check_totals(ctx)
    if check_videos:
        with ctx.stage("videos"):
            check_video_files(ctx, episodes, decode=decode_videos)
    return ctx.report()

