"""Parquet data checks: file layout (v2.1), column structure vs info.json features, index columns, timestamps."""

from __future__ import annotations

import math
from collections.abc import Container
from typing import Any

import numpy as np
import pyarrow as pa

from lerobot_pipeline.core.arrow import flatten_lists, is_list_type, list_lengths, read_parquet, to_numpy
from lerobot_pipeline.core.features import EPISODES_PATH, TASKS_PATH
from lerobot_pipeline.core.memory import return_freed_memory
from lerobot_pipeline.core.validate.context import (
    FLOAT32_TIMESTAMP_LIMIT_S,
    TIMESTAMP_TOLERANCE_S,
    Context,
    Feature,
)
from lerobot_pipeline.core.validate.report import first_true, is_int, one_line, short_list


def _strays(ctx: Context, folder: str, pattern: str, expected: Container[str]) -> list[str]:
    """Files matching ``pattern`` under ``folder`` (relative paths) that no episode accounts for."""
    top = ctx.root / folder
    if not top.is_dir():
        return []
    return [rel for rel in (path.relative_to(ctx.root).as_posix() for path in sorted(top.rglob(pattern)))
            if rel not in expected]


def check_files(ctx: Context, episodes: list[int]) -> None:
    p = ctx.problems
    if ctx.data_path is not None:
        expected = {}
        for ep in episodes:
            rel = ctx.data_rel(ep)
            assert rel is not None  # data_path is set
            expected[rel] = ep
            if not (ctx.root / rel).is_file():
                p.error(rel, f"missing: data file of episode {ep}")
        for rel in _strays(ctx, "data", "*.parquet", expected):
            p.error(rel, "stray parquet file: not the data file of any episode, but lerobot's loader "
                         "reads every *.parquet under data/")
    if ctx.video_path is not None and ctx.video_keys:
        expected_videos = set()
        for ep in episodes:
            for key in ctx.video_keys:
                rel = ctx.video_rel(ep, key)
                assert rel is not None  # video_path is set
                expected_videos.add(rel)
                if not (ctx.root / rel).is_file():
                    p.error(rel, f"missing: video of episode {ep} for {key}")
        for rel in _strays(ctx, "videos", "*.mp4", expected_videos):
            p.warn(rel, "stray video file: not the video of any episode and video feature")


# ---------------------------------------------------------------------------------------------------------
# Parquet data
# ---------------------------------------------------------------------------------------------------------


def check_parquet_files(ctx: Context, episodes: list[int]) -> None:
    """Per-episode checks, in file order; ``index`` must continue across files."""
    if ctx.data_path is None:
        ctx.all_parquet_read = False
        return
    next_index: int | None = 0
    for ep in episodes:
        rel = ctx.data_rel(ep)
        assert rel is not None  # data_path is set
        n_rows = None
        length = (ctx.episodes or {}).get(ep, {}).get("length")
        if ctx.trusted(ep) and is_int(length) and (ctx.root / rel).is_file():
            ctx.rows[ep] = length  # a file checked when it was written, linked unchanged (see Context.deep)
            ctx.frames += length
            next_index = next_index + length if next_index is not None else None
            continue
        if (ctx.root / rel).is_file():
            with ctx.stage(rel):
                n_rows = check_parquet_episode(ctx, ep, rel, next_index)
            return_freed_memory()  # one file's table at a time: a long dataset must not stack them up
        if n_rows is None:
            ctx.all_parquet_read = False
            length = (ctx.episodes or {}).get(ep, {}).get("length")
            n_rows = length if is_int(length) else None
        next_index = next_index + n_rows if (next_index is not None and n_rows is not None) else None


def check_parquet_episode(ctx: Context, ep: int, rel: str, first_index: int | None) -> int | None:
    read = read_file_values(ctx, rel)
    if read is None:
        return None
    n, values = read
    ctx.rows[ep] = n
    summarise(ctx, ep, values, n)
    check_default_columns(ctx, ep, rel, values, n, first_index)
    check_episode_entry(ctx, ep, rel, values, n)
    return n


def read_file_values(ctx: Context, rel: str) -> tuple[int, dict[str, np.ndarray]] | None:
    """(rows, feature values) of one data file, its columns checked against info.json; None if unreadable."""
    p = ctx.problems
    try:
        table = read_parquet(ctx.root / rel)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
        p.error(rel, f"cannot be read as parquet: {one_line(e)}")
        return None
    n = table.num_rows
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
        arr = column_values(ctx, where, feature, column, n)
        if arr is not None:
            values[name] = arr
    extra = sorted(set(table.column_names) - set(ctx.features))
    if extra and ctx.info is not None and isinstance(ctx.info.get("features"), dict):
        undeclared = [c for c in extra if c not in ctx.info["features"]]
        if undeclared:
            p.warn(rel, f"columns not declared in info.json features: {undeclared}")
    return n, values


def summarise(ctx: Context, ep: int, values: dict[str, np.ndarray], n: int) -> None:
    """min/max/mean of episode ``ep``'s numeric columns, to compare its stats with."""
    for name, arr in values.items():
        feature = ctx.features[name]
        if feature.has_stats and n and arr.dtype.kind in "biuf":
            data = arr.reshape(n, *(feature.shape if arr.ndim > 1 else (1,))).astype(np.float64)
            if np.all(np.isfinite(data)):
                ctx.data_summary[(ep, name)] = {"min": data.min(axis=0), "max": data.max(axis=0),
                                                "mean": data.mean(axis=0)}


def column_values(ctx: Context, where: str, feature: Feature, column: pa.Array[Any], n: int) -> np.ndarray | None:
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
    leaf: pa.Array[Any] = column
    for level, size in enumerate(dims):
        if not is_list_type(leaf.type):
            p.error(where, f"shape {list(shape)} needs {len(dims)} nested list level(s), found {column.type}")
            return None
        if leaf.null_count:
            p.error(where, f"{leaf.null_count} null lists at nesting level {level + 1}")
            return None
        lengths = list_lengths(leaf)
        bad = lengths != size
        if bad.any():
            i = first_true(bad)
            row = i // math.prod(dims[:level])
            what = "rows" if level == 0 else f"lists at nesting level {level + 1}"
            p.error(where, f"{int(bad.sum())} {what} do not have {size} values (first at row {row}: "
                           f"{int(lengths[i])} values); info.json shape is {list(shape)}")
            return None
        leaf = flatten_lists(leaf)
    if is_list_type(leaf.type):
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

    arr = to_numpy(leaf).reshape((n, *dims))
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1) if n else np.zeros(0, bool)
        if bad.any():
            count = int((~np.isfinite(arr)).sum())
            p.error(where, f"{count} NaN/inf values in {int(bad.sum())} rows (first at row {first_true(bad)})")
    return arr


def check_default_columns(
    ctx: Context, ep: int, rel: str, values: dict[str, np.ndarray], n: int, first_index: int | None
) -> None:
    p = ctx.problems
    positions = np.arange(n)

    ts = values.get("timestamp")
    if ts is not None and ts.ndim == 1 and ctx.fps is not None and n:
        check_timestamps(ctx, f"{rel}: timestamp", ts.astype(np.float64), ctx.fps)

    fi = values.get("frame_index")
    if fi is not None and fi.ndim == 1 and not np.array_equal(fi, positions):
        i = first_true(fi != positions)
        p.error(f"{rel}: frame_index", f"must be 0..{n - 1} in row order; first mismatch at row {i}: {fi[i]}")

    epi = values.get("episode_index")
    if epi is not None and epi.ndim == 1 and (epi != ep).any():
        i = first_true(epi != ep)
        p.error(f"{rel}: episode_index",
                f"{int((epi != ep).sum())} rows do not say {ep} (first at row {i}: {epi[i]}); lerobot would "
                "decode another episode's video for them")

    idx = values.get("index")
    if idx is not None and idx.ndim == 1 and first_index is not None:
        expected = first_index + positions
        if not np.array_equal(idx, expected):
            i = first_true(idx != expected)
            p.error(f"{rel}: index",
                    f"must continue the global row count ({first_index}..{first_index + n - 1} for this file, "
                    f"in file order from 0); first mismatch at row {i}: {idx[i]}")

    ti = values.get("task_index")
    if ti is not None and ti.ndim == 1 and ctx.tasks is not None:
        unknown = sorted(set(np.unique(ti).tolist()) - set(ctx.tasks))
        if unknown:
            p.error(f"{rel}: task_index", f"values {short_list(unknown)} are not in {TASKS_PATH}")


def check_timestamps(ctx: Context, where: str, ts: np.ndarray, fps: int) -> None:
    p = ctx.problems
    if not np.all(np.isfinite(ts)):
        return  # already reported as NaN/inf
    n = len(ts)
    expected = np.arange(n) / fps
    dev = np.abs(ts - expected)
    if dev.max() > TIMESTAMP_TOLERANCE_S:
        i = first_true(dev > TIMESTAMP_TOLERANCE_S)
        p.error(where, f"differs from frame_index/fps by up to {dev.max():.6g} s (first at row {i}: {ts[i]:.9g} "
                       f"instead of {expected[i]:.9g}); lerobot looks frames up in the video at this time")
    if n > 1:
        step = np.diff(ts)
        bad = np.abs(step - 1.0 / fps) > TIMESTAMP_TOLERANCE_S
        if bad.any():
            i = first_true(bad)
            p.error(where, f"{int(bad.sum())} of {n - 1} consecutive differences are not 1/fps = {1 / fps:.6f} s "
                           f"± {TIMESTAMP_TOLERANCE_S} (first between rows {i} and {i + 1}: {step[i]:.6g} s); "
                           "lerobot's check_timestamps_sync rejects the dataset")
    if ts.max() >= FLOAT32_TIMESTAMP_LIMIT_S:
        p.error(where, f"reaches {ts.max():.6g} s: float32 timestamps beyond {FLOAT32_TIMESTAMP_LIMIT_S:.0f} s are "
                       f"spaced more than {TIMESTAMP_TOLERANCE_S} s apart and fail lerobot's loader; split the episode")


def check_episode_entry(ctx: Context, ep: int, rel: str, values: dict[str, np.ndarray], n: int,
                        meta: str = EPISODES_PATH) -> None:
    """The episode's metadata entry (``meta``: episodes.jsonl, or v3.0's meta/episodes) length and tasks vs its rows."""
    if ctx.episodes is None:
        return
    entry = ctx.episodes.get(ep)
    where = f"{meta}: episode {ep}"
    if entry is None:
        ctx.problems.error(where, f"no line for episode {ep}, but {rel} exists")
        return
    length = entry.get("length")
    if is_int(length) and length != n:
        ctx.problems.error(where, f"length {length} but {rel} has {n} rows (lerobot derives episode row ranges "
                                  "from these lengths)")
    ti = values.get("task_index")
    tasks = entry.get("tasks")
    if ti is not None and ctx.tasks is not None and isinstance(tasks, list):
        row_tasks = {ctx.tasks[t] for t in np.unique(ti).tolist() if t in ctx.tasks}
        if row_tasks != set(tasks):
            ctx.problems.warn(where, f"tasks {sorted(tasks)} differ from the tasks of its rows {sorted(row_tasks)}")

