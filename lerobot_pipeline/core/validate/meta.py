"""meta/ checks shared by both formats (info.json header and features) and v2.1's jsonl files and totals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np

from lerobot_pipeline.core.features import EPISODES_PATH, INFO_PATH, TASKS_PATH
from lerobot_pipeline.core.validate.context import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_FEATURES,
    REQUIRED_INFO_KEYS,
    TOTAL_KEYS,
    VISUAL_DTYPES,
    VISUAL_STATS_SHAPE,
    Context,
    Feature,
    format_episode_path,
)
from lerobot_pipeline.core.validate.report import is_int, one_line, short_list


def check_info(ctx: Context, info: Any, *, required: tuple[str, ...] = REQUIRED_INFO_KEYS,
               totals: tuple[str, ...] = TOTAL_KEYS, templates: bool = True) -> None:
    """info.json header and features; ``ctx.version`` is the format expected; v2.1 path templates if ``templates``."""
    p = ctx.problems
    if not isinstance(info, dict):
        p.error(INFO_PATH, f"expected a JSON object, got {type(info).__name__}")
        return
    ctx.info = info
    for key in required:
        if key not in info:
            p.error(f"{INFO_PATH}: {key}", "required key missing")
    if "robot_type" not in info:
        p.warn(f"{INFO_PATH}: robot_type", "missing (lerobot writes it, null if unknown)")
    elif not isinstance(info["robot_type"], (str, type(None))):
        p.warn(f"{INFO_PATH}: robot_type", f"should be a string or null, got {info['robot_type']!r}")

    version = info.get("codebase_version")
    if "codebase_version" in info and version != ctx.version:
        p.error(
            f"{INFO_PATH}: codebase_version",
            f"is {version!r}, expected {ctx.version!r} (v2.0 makes lerobot look for meta/stats.json and "
            "skip episodes_stats.jsonl; v2.1 and v3.0 are different layouts)",
        )

    for key in ("fps", "chunks_size"):  # each kept on the context when valid
        if key in info:
            value = info[key]
            if is_int(value) and value > 0:
                setattr(ctx, key, value)
            else:
                p.error(f"{INFO_PATH}: {key}", f"must be an integer > 0, got {value!r}")

    for key in totals:
        if key in info and not (is_int(info[key]) and info[key] >= 0):
            p.error(f"{INFO_PATH}: {key}", f"must be an integer >= 0, got {info[key]!r}")

    check_features(ctx, info.get("features"))

    if templates and "data_path" in info:
        ctx.data_path = check_template(ctx, "data_path", info["data_path"], video=False)
    if templates and "video_path" in info:
        template = info["video_path"]
        if template is None:
            if ctx.video_keys:
                p.error(f"{INFO_PATH}: video_path", f"is null but there are video features {ctx.video_keys}")
        else:
            ctx.video_path = check_template(ctx, "video_path", template, video=True)


def check_template(ctx: Context, key: str, template: Any, *, video: bool) -> str | None:
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


def check_features(ctx: Context, features: Any) -> None:
    p = ctx.problems
    if features is None:
        return  # missing key already reported
    if not isinstance(features, dict):
        p.error(f"{INFO_PATH}: features", f"must be an object, got {type(features).__name__}")
        return
    for name, ft in features.items():
        feature = check_feature(ctx, name, ft)
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


def check_feature(ctx: Context, name: str, ft: Any) -> Feature | None:
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
    if not valid_dtype(dtype):
        p.error(where, f"dtype {dtype!r} is not 'video', 'image', 'string' or a numeric numpy dtype")
        well_formed = False

    shape = ft.get("shape")
    if not (isinstance(shape, list) and shape and all(is_int(d) and d > 0 for d in shape)):
        p.error(where, f"shape must be a non-empty list of positive integers, got {shape!r}")
        well_formed = False
    if not well_formed:
        return None
    shape_t: tuple[int, ...] = tuple(cast("list[int]", shape))  # checked above

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
            check_video_info_block(ctx, where, ft.get("info"))
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
    return Feature(name, cast(str, dtype), shape_t) if well_formed else None  # dtype: checked above


def valid_dtype(dtype: Any) -> bool:
    if dtype in ("video", "image", "string"):
        return True
    if not isinstance(dtype, str):
        return False
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        return False


def check_video_info_block(ctx: Context, where: str, block: Any) -> None:
    if block is None:
        ctx.problems.warn(where, "no 'info' block (lerobot writes video.height/width/codec/pix_fmt/fps from episode 0)")
    elif not isinstance(block, dict):
        ctx.problems.warn(where, f"'info' must be an object, got {type(block).__name__}")


# ---------------------------------------------------------------------------------------------------------
# meta/tasks.jsonl and meta/episodes.jsonl
# ---------------------------------------------------------------------------------------------------------


def check_tasks(ctx: Context, lines: list[tuple[int, dict[str, Any]]]) -> None:
    p = ctx.problems
    tasks: dict[int, str] = {}
    for lineno, obj in lines:
        where = f"{TASKS_PATH}: line {lineno}"
        index, task = obj.get("task_index"), obj.get("task")
        if not is_int(index) or not isinstance(task, str):
            p.error(where, f"needs an integer task_index and a string task, got {one_line(obj, 120)}")
            continue
        if index in tasks:
            p.error(where, f"duplicate task_index {index}")
            continue
        tasks[index] = task
    if sorted(tasks) != list(range(len(tasks))):
        p.error(f"{TASKS_PATH}: task_index", f"values must be 0..{len(tasks) - 1}, got {short_list(sorted(tasks))}")
    seen: set[str] = set()
    for index, task in sorted(tasks.items()):
        if task in seen:
            p.warn(f"{TASKS_PATH}: task_index {index}", f"task string {task!r} appears more than once")
        seen.add(task)
    ctx.tasks = tasks
    ctx.task_lines = len(lines)


def check_episodes(ctx: Context, lines: list[tuple[int, dict[str, Any]]]) -> None:
    p = ctx.problems
    episodes: dict[int, dict[str, Any]] = {}
    known_tasks = set(ctx.tasks.values()) if ctx.tasks is not None else None
    order: list[int] = []
    for lineno, obj in lines:
        ep = obj.get("episode_index")
        if not is_int(ep) or ep < 0:
            p.error(f"{EPISODES_PATH}: line {lineno}", f"episode_index must be an integer >= 0, got {ep!r}")
            continue
        where = f"{EPISODES_PATH}: episode {ep}"
        if ep in episodes:
            p.error(where, f"duplicate episode_index (line {lineno})")
            continue
        length = obj.get("length")
        if not (is_int(length) and length > 0):
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
                f"values must be 0..{len(episodes) - 1} without gaps, got {short_list(sorted(episodes))}")
    elif order != sorted(order):
        p.warn(f"{EPISODES_PATH}: episode_index", "lines are not in episode order (lerobot sorts them)")
    ctx.episodes = episodes
    ctx.episodes_lines = len(lines)


def episodes_to_check(ctx: Context) -> list[int]:
    """Episodes whose files must exist: 0..total_episodes-1 (what the loader expects) plus episodes.jsonl's."""
    eps = set(ctx.episodes or ())
    total = ctx.info.get("total_episodes") if ctx.info else None
    if is_int(total) and total > 0:
        # guard against an absurd total (each missing file is a problem anyway; the totals check names it)
        bound = max(len(eps), count_parquet(ctx)) + 1000
        eps.update(range(min(total, bound)))
    return sorted(eps)


def count_parquet(ctx: Context) -> int:
    data_dir = ctx.root / "data"
    return sum(1 for _ in data_dir.rglob("*.parquet")) if data_dir.is_dir() else 0




def check_totals(ctx: Context) -> None:
    info = ctx.info
    if info is None:
        return
    p = ctx.problems

    def total(key: str) -> int | None:
        value = info.get(key)
        return value if is_int(value) and value >= 0 else None

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

