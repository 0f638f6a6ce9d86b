"""LeRobot v3.0 checks (lerobot 0.4.4): episodes concatenated into files, located by meta/episodes.

What lerobot 0.4.4's loader relies on: every data file under data/ is read in path order and row
``i`` of that concatenation is global index ``i``; ``meta/episodes`` rows are taken by position as
episode indices; episode e's rows are ``dataset_from_index..dataset_to_index`` and its frame k is
decoded at ``from_timestamp + timestamp`` in its mp4. So beyond the shared feature checks this
verifies offsets contiguity, per-episode lengths vs data rows vs video frames in each from/to window,
timestamps = frame_index/fps, per-episode and dataset stats, and each file's video header.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lerobot_pipeline.core.arrow import read_parquet
from lerobot_pipeline.core.features import INFO_PATH
from lerobot_pipeline.core.v30 import layout as L
from lerobot_pipeline.core.validate.context import STAT_KEYS, TIMESTAMP_TOLERANCE_S, Context, Feature, read_json
from lerobot_pipeline.core.validate.meta import check_info
from lerobot_pipeline.core.validate.parquet import (
    check_default_columns,
    check_episode_entry,
    read_file_values,
    summarise,
)
from lerobot_pipeline.core.validate.report import is_int, one_line, short_list
from lerobot_pipeline.core.validate.stats import check_feature_stats
from lerobot_pipeline.core.validate.videos import (
    check_frame_times,
    check_video_header,
    compare_video_info_block,
    read_probe,
)
from lerobot_pipeline.core.video import VideoProbe

V30 = L.CODEBASE_VERSION
EPISODES_DIR = "meta/episodes"
REQUIRED_INFO_KEYS = (
    "codebase_version", "total_episodes", "total_frames", "total_tasks", "chunks_size", "data_files_size_in_mb",
    "video_files_size_in_mb", "fps", "splits", "data_path", "video_path", "features",
)
TOTAL_KEYS = ("total_episodes", "total_frames", "total_tasks")
LOCATION_COLUMNS = ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index",
                    "data/chunk_index", "data/file_index")


def validate_v30(ctx: Context, *, check_videos: bool, decode_videos: bool, video_files: set[str] | None = None) -> None:
    with ctx.stage(INFO_PATH):
        info = read_json(ctx, INFO_PATH)
        if info is not None:
            check_info(ctx, info, required=REQUIRED_INFO_KEYS, totals=TOTAL_KEYS, templates=False)
            if ctx.info is not None:
                _check_templates(ctx, ctx.info)
    with ctx.stage(L.TASKS_PATH):
        _check_tasks(ctx)
    rows: list[dict[str, Any]] | None = None
    with ctx.stage(EPISODES_DIR):
        rows = _read_episode_rows(ctx)
        if rows is not None:
            _check_episode_rows(ctx, rows)
    if rows is None:
        return
    with ctx.stage("data files"):
        _check_data(ctx, rows)
    stats = [_row_stats(r) for r in rows]
    with ctx.stage(f"{EPISODES_DIR}: stats"):
        _check_episode_stats(ctx, rows, stats)
    with ctx.stage(L.STATS_PATH):
        _check_dataset_stats(ctx, stats)
    with ctx.stage("info.json totals"):
        _check_totals(ctx, rows)
    if check_videos:
        with ctx.stage("videos"):
            _check_videos(ctx, rows, decode_videos, video_files)


def _check_templates(ctx: Context, info: dict[str, Any]) -> None:
    for key, video in (("data_path", False), ("video_path", True)):
        template = info.get(key)
        where = f"{INFO_PATH}: {key}"
        if template is None:
            if video and ctx.video_keys:
                ctx.problems.error(where, f"is null but there are video features {ctx.video_keys}")
            continue
        try:
            extra = {"video_key": "k"} if video else {}
            a, b = (template.format(chunk_index=0, file_index=i, **extra) for i in (0, 1))
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as e:
            ctx.problems.error(where, f"{template!r} cannot be formatted with {{chunk_index}}, {{file_index}}"
                                      f"{', {video_key}' if video else ''}: {type(e).__name__}: {e}")
            continue
        if a == b or a.startswith("/") or ".." in Path(a).parts:
            ctx.problems.error(where, f"{template!r} must be a relative path that depends on file_index")
            continue
        if not video and not a.startswith("data/"):
            ctx.problems.error(where, f"{template!r} is not under data/ (lerobot loads the parquet files under data/)")
        setattr(ctx, key, template)


def _check_tasks(ctx: Context) -> None:
    path = ctx.root / L.TASKS_PATH
    if not path.is_file():
        ctx.problems.error(L.TASKS_PATH, "missing (lerobot falls back to the Hugging Face Hub and fails offline)")
        return
    try:
        table = read_parquet(path)
    except Exception as e:  # noqa: BLE001
        ctx.problems.error(L.TASKS_PATH, f"cannot be read as parquet: {one_line(e)}")
        return
    meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
    index_cols = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    text_col = index_cols[0] if index_cols else "task"
    if "task_index" not in table.column_names or text_col not in table.column_names:
        ctx.problems.error(L.TASKS_PATH, f"needs a task_index column and the task strings as its pandas index, got "
                                         f"columns {table.column_names} (lerobot reads tasks.iloc[i].name)")
        return
    indices: list[Any] = table.column("task_index").to_pylist()  # as read: not yet checked
    texts: list[Any] = table.column(text_col).to_pylist()
    if sorted(indices) != list(range(len(indices))):
        ctx.problems.error(f"{L.TASKS_PATH}: task_index", f"values must be 0..{len(indices) - 1}, got "
                                                          f"{short_list(sorted(indices))}")
    if indices != sorted(indices):
        ctx.problems.error(f"{L.TASKS_PATH}: task_index", "rows must be in task_index order (lerobot looks a "
                                                          "task up by position)")
    if len(set(texts)) != len(texts):
        ctx.problems.warn(L.TASKS_PATH, "a task string appears more than once")
    ctx.tasks = dict(zip(indices, texts))
    ctx.task_lines = len(indices)


def _read_episode_rows(ctx: Context) -> list[dict[str, Any]] | None:
    files = sorted((ctx.root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        ctx.problems.error(EPISODES_DIR, "no chunk-*/file-*.parquet (lerobot cannot locate any episode)")
        return None
    rows: list[dict[str, Any]] = []
    for path in files:
        rel = path.relative_to(ctx.root).as_posix()
        try:
            table = read_parquet(path)
        except Exception as e:  # noqa: BLE001
            ctx.problems.error(rel, f"cannot be read as parquet: {one_line(e)}")
            return None
        required = list(LOCATION_COLUMNS) + [c for k in ctx.video_keys for c in L.video_columns(k)]
        missing = [c for c in required if c not in table.column_names]
        if missing:
            ctx.problems.error(rel, f"columns missing: {missing} (lerobot locates episodes with them)")
            return None
        rows.extend(table.to_pylist())
    return rows


def _check_episode_rows(ctx: Context, rows: list[dict[str, Any]]) -> None:
    p = ctx.problems
    eps = [r["episode_index"] for r in rows]
    if eps != list(range(len(rows))):
        p.error(f"{EPISODES_DIR}: episode_index", f"must be 0..{len(rows) - 1} in row order (lerobot takes row i as "
                                                  f"episode i), got {short_list(eps)}")
    known = set(ctx.tasks.values()) if ctx.tasks is not None else None
    expected_from = 0
    for i, r in enumerate(rows):
        where = f"{EPISODES_DIR}: episode {r['episode_index']}"
        length, lo, hi = r["length"], r["dataset_from_index"], r["dataset_to_index"]
        if not (is_int(length) and length > 0):
            p.error(where, f"length must be an integer > 0, got {length!r}")
            continue
        if lo != expected_from:
            p.error(where, f"dataset_from_index is {lo}, expected {expected_from} (the previous episode's "
                           "dataset_to_index: episodes must be contiguous)")
        if hi - lo != length:
            p.error(where, f"dataset_to_index - dataset_from_index = {hi - lo} but length is {length}")
        expected_from = hi
        tasks = r["tasks"]
        if not (isinstance(tasks, list) and all(isinstance(t, str) for t in tasks)):
            p.error(where, f"tasks must be a list of strings, got {tasks!r}")
        elif known is not None and set(tasks) - known:
            p.error(where, f"tasks {sorted(set(tasks) - known)!r} are not in {L.TASKS_PATH}")
        if i and _fid(r, "data") < _fid(rows[i - 1], "data"):
            p.error(where, "data file goes backwards (data files are read in path order)")
        for key in ctx.video_keys:
            _check_video_window(ctx, where, key, r, rows[i - 1] if i else None)
    ctx.episodes = {r["episode_index"]: r for r in rows if is_int(r["episode_index"])}
    ctx.episodes_lines = len(rows)


def _fid(row: dict[str, Any], prefix: str) -> tuple[int, int]:
    return row[f"{prefix}/chunk_index"], row[f"{prefix}/file_index"]


def _check_video_window(ctx: Context, where: str, key: str, row: dict[str, Any], prev: dict[str, Any] | None) -> None:
    _, _, from_col, to_col = L.video_columns(key)
    start, end = row[from_col], row[to_col]
    here, there = _fid(row, f"videos/{key}"), _fid(prev, f"videos/{key}") if prev else None
    expected = prev[to_col] if prev is not None and here == there else 0.0
    if abs(start - expected) > TIMESTAMP_TOLERANCE_S:
        ctx.problems.warn(where, f"{from_col} is {start:.6f}, expected {expected:.6f} (right after the previous "
                                 "episode in the same file, 0 in a new one)")
    if ctx.fps and abs((end - start) - row["length"] / ctx.fps) > TIMESTAMP_TOLERANCE_S:
        ctx.problems.error(where, f"{to_col} - {from_col} = {end - start:.6f} s but length/fps = "
                                  f"{row['length'] / ctx.fps:.6f} s")
    if there is not None and here < there:
        ctx.problems.error(where, f"video file of {key} goes backwards")


def _by_file(rows: list[dict[str, Any]], prefix: str) -> dict[tuple[int, int], list[dict[str, Any]]]:
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(_fid(r, prefix), []).append(r)
    return out


def _check_data(ctx: Context, rows: list[dict[str, Any]]) -> None:
    if ctx.data_path is None:
        return
    files = _by_file(rows, "data")
    expected = {ctx.data_path.format(chunk_index=c, file_index=f): fid for fid in files for c, f in [fid]}
    for path in sorted((ctx.root / "data").rglob("*.parquet")) if (ctx.root / "data").is_dir() else []:
        rel = path.relative_to(ctx.root).as_posix()
        if rel not in expected:
            ctx.problems.error(rel, "stray parquet file: no episode is in it, but lerobot's loader reads every "
                                    "*.parquet under data/")
    for rel, fid in sorted(expected.items()):
        if not (ctx.root / rel).is_file():
            listed = short_list([r['episode_index'] for r in files[fid]])
            ctx.problems.error(rel, f"missing: data file of episodes {listed}")
            continue
        with ctx.stage(rel):
            _check_data_file(ctx, rel, files[fid])


def _check_data_file(ctx: Context, rel: str, eps: list[dict[str, Any]]) -> None:
    read = read_file_values(ctx, rel)
    if read is None:
        return
    n, values = read
    start = eps[0]["dataset_from_index"]
    covered = eps[-1]["dataset_to_index"] - start
    if n != covered:
        ctx.problems.error(rel, f"has {n} rows but its episodes {eps[0]['episode_index']}..{eps[-1]['episode_index']} "
                                f"cover {covered} (dataset_from_index..dataset_to_index)")
    for r in eps:
        ep = r["episode_index"]
        a, b = r["dataset_from_index"] - start, min(r["dataset_to_index"] - start, n)
        if b <= a:
            continue
        sliced = {name: arr[a:b] for name, arr in values.items()}
        ctx.rows[ep] = b - a
        summarise(ctx, ep, sliced, b - a)
        check_default_columns(ctx, ep, f"{rel}: episode {ep}", sliced, b - a, r["dataset_from_index"])
        check_episode_entry(ctx, ep, rel, sliced, b - a, EPISODES_DIR)


def _row_stats(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for col, value in row.items():
        if col.startswith("stats/"):
            feature, _, name = col[len("stats/"):].rpartition("/")
            stats.setdefault(feature, {})[name] = value
    return stats


def _check_episode_stats(ctx: Context, rows: list[dict[str, Any]], stats: list[dict[str, Any]]) -> None:
    """Every episode's stats; screened for all episodes at once, the per-episode check names what is wrong."""
    for name, feature in ctx.features.items():
        if not feature.has_stats:
            continue
        for i in _stats_suspects(ctx, name, feature, rows, stats):
            ep = rows[i]["episode_index"]
            check_feature_stats(ctx, ep, feature, stats[i].get(name), where=f"{EPISODES_DIR}: episode {ep} / {name}")


def _stats_suspects(
    ctx: Context, name: str, feature: Feature, rows: list[dict[str, Any]], stats: list[dict[str, Any]],
) -> list[int]:
    """Indices of episodes whose stats of ``name`` may have a problem (all of them if they do not stack)."""
    everyone = list(range(len(rows)))
    try:
        a = {k: np.asarray([s[name][k] for s in stats], dtype=np.float64) for k in STAT_KEYS}
    except (KeyError, ValueError, TypeError):
        return everyone
    n = len(rows)
    if a["count"].shape != (n, 1) or any(a[k].shape != (n, *feature.stats_shape) for k in STAT_KEYS[:4]):
        return everyone
    flat = {k: v.reshape(n, -1) for k, v in a.items()}
    bad = np.zeros(n, bool)
    for v in flat.values():
        bad |= ~np.isfinite(v).all(axis=1)
    count = flat["count"][:, 0]
    bad |= (count < 1) | (count != np.round(count))
    if feature.is_visual:
        for k in STAT_KEYS[:4]:
            bad |= ((flat[k] < 0) | (flat[k] > 1)).any(axis=1)
    else:
        n_rows = np.array([ctx.rows.get(r["episode_index"], -1) for r in rows])
        bad |= (n_rows >= 0) & (count != n_rows)
    bad |= (flat["min"] > flat["max"]).any(axis=1) | (flat["std"] < 0).any(axis=1)
    have = [i for i, r in enumerate(rows) if (r["episode_index"], name) in ctx.data_summary]
    if have:
        for k in ("min", "max", "mean"):
            summary = np.stack([ctx.data_summary[(rows[i]["episode_index"], name)][k].reshape(-1) for i in have])
            if summary.shape != flat[k][have].shape:
                return everyone
            close = np.isclose(flat[k][have], summary, rtol=1e-4, atol=1e-5).all(axis=1)
            bad[np.asarray(have)[~close]] = True
    suspects: list[int] = np.flatnonzero(bad).tolist()
    return suspects


def _check_stats(ctx: Context, ep: int | None, stats: dict[str, Any], where: str) -> None:
    for name, feature in ctx.features.items():
        if feature.has_stats:
            check_feature_stats(ctx, ep, feature, stats.get(name), where=f"{where} / {name}")


def _check_dataset_stats(ctx: Context, per_episode: list[dict[str, Any]]) -> None:
    stats = read_json(ctx, L.STATS_PATH)
    if not isinstance(stats, dict):
        return
    _check_stats(ctx, None, stats, L.STATS_PATH)
    if not all(per_episode):
        return
    try:
        expected = L.aggregate_stats(per_episode)
    except (ValueError, TypeError, KeyError):
        return  # per-episode stats of mismatched shapes or missing keys: reported per episode already
    for name, agg in expected.items():
        entry = stats.get(name)
        if not isinstance(entry, dict):
            continue
        stale = [k for k in ("min", "max", "mean", "std", "count") if k in entry and np.shape(entry[k]) ==
                 np.shape(agg[k]) and not np.allclose(entry[k], agg[k], rtol=1e-4, atol=1e-5)]
        if stale:
            ctx.problems.warn(f"{L.STATS_PATH}: {name}", f"{', '.join(stale)} do not aggregate the per-episode stats "
                                                         "(stale stats?)")


def _check_totals(ctx: Context, rows: list[dict[str, Any]]) -> None:
    info, p = ctx.info, ctx.problems
    if info is None:
        return
    n = len(rows)
    frames = sum(r["length"] for r in rows if is_int(r["length"]))
    checks = (("total_episodes", n, f"{EPISODES_DIR} has {n} episodes"),
              ("total_frames", frames, f"the episode lengths add up to {frames}"),
              ("total_tasks", ctx.task_lines, f"{L.TASKS_PATH} has {ctx.task_lines} tasks"))
    for key, actual, what in checks:
        if actual is not None and is_int(info.get(key)) and info[key] != actual:
            p.error(f"{INFO_PATH}: {key}", f"is {info[key]} but {what}")
    if ctx.data_path is not None and frames != ctx.frames:
        p.error(f"{INFO_PATH}: total_frames", f"the data files hold {ctx.frames} rows, the episodes {frames}")
    splits = info.get("splits")
    if not (isinstance(splits, dict) and splits.get("train") == f"0:{n}"):
        p.error(f"{INFO_PATH}: splits", f"is {splits!r}, expected {{'train': '0:{n}'}}")


def _check_videos(ctx: Context, rows: list[dict[str, Any]], decode: bool, only: set[str] | None) -> None:
    if ctx.video_path is None:
        return
    expected_all = set()
    for key in ctx.video_keys:
        for fid, eps in sorted(_by_file(rows, f"videos/{key}").items()):
            rel = ctx.video_path.format(video_key=key, chunk_index=fid[0], file_index=fid[1])
            expected_all.add(rel)
            if not (ctx.root / rel).is_file():
                ctx.problems.error(rel, f"missing: video of {key} for episodes "
                                        f"{short_list([r['episode_index'] for r in eps])}")
                continue
            if only is not None and rel not in only:
                continue
            probe = read_probe(ctx, rel, rel, decode)
            if probe is None:
                continue
            with ctx.stage(rel):
                _check_video_file(ctx, key, rel, probe, eps)
            if fid == _fid(rows[0], f"videos/{key}"):
                compare_video_info_block(ctx, key, probe)
    videos_dir = ctx.root / "videos"
    for path in sorted(videos_dir.rglob("*.mp4")) if videos_dir.is_dir() else []:
        rel = path.relative_to(ctx.root).as_posix()
        if rel not in expected_all:
            ctx.problems.warn(rel, "stray video file: no episode is in it")


def _check_video_file(ctx: Context, key: str, rel: str, probe: VideoProbe, eps: list[dict[str, Any]]) -> None:
    rate_ok = check_video_header(ctx, rel, rel, ctx.features[key], probe)
    times = np.asarray(probe.times)
    half = 0.5 / ctx.fps if ctx.fps else TIMESTAMP_TOLERANCE_S
    _, _, from_col, to_col = L.video_columns(key)
    used = 0
    for r in eps:
        start, end = r[from_col], r[to_col]
        window = times[(times >= start - half) & (times < end - half)]
        used += len(window)
        ep = r["episode_index"]
        check_frame_times(ctx, f"episode {ep} / {key}", rel, window.tolist(), 0, start, ctx.rows.get(ep, r["length"]),
                          rate_ok)
    if len(times) > used:
        ctx.problems.warn(rel, f"{len(times) - used} frames lie outside every episode's from/to window")
