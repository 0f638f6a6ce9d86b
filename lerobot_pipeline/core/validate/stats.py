"""Per-episode feature statistics: shapes lerobot's aggregate_stats accepts, value ranges, staleness."""

from __future__ import annotations

from typing import Any

import numpy as np

from lerobot_pipeline.core.features import EPISODES_STATS_PATH
from lerobot_pipeline.core.validate.context import STAT_KEYS, Context, Feature
from lerobot_pipeline.core.validate.report import is_int, one_line, short_list


def check_episodes_stats(ctx: Context, lines: list[tuple[int, dict[str, Any]]], episodes: list[int]) -> None:
    p = ctx.problems
    stats_by_ep: dict[int, dict[str, Any]] = {}
    for lineno, obj in lines:
        ep, stats = obj.get("episode_index"), obj.get("stats")
        if not is_int(ep) or not isinstance(stats, dict):
            p.error(f"{EPISODES_STATS_PATH}: line {lineno}", "needs an integer episode_index and a stats object")
            continue
        if ep in stats_by_ep:
            p.error(f"{EPISODES_STATS_PATH}: episode {ep}", f"duplicate line (line {lineno})")
            continue
        stats_by_ep[ep] = stats
    missing = sorted(set(episodes) - set(stats_by_ep))
    if missing:
        p.error(f"{EPISODES_STATS_PATH}: episode_index", f"no stats line for episodes {short_list(missing)}")
    extra = sorted(set(stats_by_ep) - set(episodes))
    if extra:
        p.error(f"{EPISODES_STATS_PATH}: episode_index", f"stats lines for unknown episodes {short_list(extra)}")

    for ep, stats in sorted(stats_by_ep.items()):
        for name, feature in ctx.features.items():
            if feature.has_stats:
                with ctx.stage(f"{EPISODES_STATS_PATH}: episode {ep} / {name}"):
                    check_feature_stats(ctx, ep, feature, stats.get(name))
        declared = ctx.info.get("features") if ctx.info is not None else None
        if isinstance(declared, dict):
            undeclared = sorted(k for k in stats if k not in declared)
            if undeclared:
                p.warn(f"{EPISODES_STATS_PATH}: episode {ep}", f"stats for features not in info.json: {undeclared}")


def check_feature_stats(ctx: Context, ep: int | None, feature: Feature, entry: Any, where: str | None = None) -> None:
    """One feature's stats of episode ``ep`` (None: dataset-wide stats, no per-episode comparisons)."""
    p = ctx.problems
    where = where or f"{EPISODES_STATS_PATH}: episode {ep} / {feature.name}"
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
            p.error(where, f"'{key}' is not a rectangular numeric array: {one_line(entry[key], 80)}")
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
            got = arrays.get(key)
            if got is not None and ((got < 0).any() or (got > 1).any()):
                p.error(where, f"'{key}' has values outside [0, 1] (image stats are pixel values / 255)")
    if "min" in arrays and "max" in arrays and (arrays["min"] > arrays["max"]).any():
        p.error(where, "'min' exceeds 'max'")
    if "std" in arrays and (arrays["std"] < 0).any():
        p.error(where, "'std' is negative")

    summary = ctx.data_summary.get((ep, feature.name)) if ep is not None else None
    if summary is not None:
        stale = [key for key in ("min", "max", "mean") if key in arrays
                 and not np.allclose(arrays[key], summary[key].reshape(arrays[key].shape), rtol=1e-4, atol=1e-5)]
        if stale:
            p.warn(where, f"{', '.join(stale)} do not match the episode's parquet data (stale stats?)")


