"""Assemble a LeRobot v2.1 dataset from staged episode parts: indices, meta/, build-then-swap.

- Episode indices are ``0..N-1`` and stable: recordings already in the dataset keep their order
  (so a re-converted recording keeps its index), new ones are appended, removed ones leave no hole.
- Incremental: a part whose version, index and global row offset are unchanged is hard-linked from
  the current dataset; videos are always hard-linked, never re-encoded.
- ``meta/provenance.jsonl`` records, per episode index, which recording/part/version it holds; it is
  the record of what the dataset contains (Dagster's staleness stops tracking past 100 partitions).
- The new tree is built beside the old one and swapped in: a reader never sees a half-built dataset.
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.arrow import numeric_array, read_parquet
from lerobot_pipeline.core.episode_writer import StagedPart
from lerobot_pipeline.core.fsutil import (
    fresh_build_dir,
    fsync_file,
    link_or_copy,
    remove_stale_builds,
    swap_directory,
    write_json_atomic,
    write_jsonl_atomic,
)
from lerobot_pipeline.core.memory import return_freed_memory
from lerobot_pipeline.core.stats import numeric_stats
from lerobot_pipeline.core.video import probe_video
from lerobot_pipeline.errors import DatasetError


@dataclass(frozen=True)
class DatasetSummary:
    root: Path
    episodes: int
    frames: int
    reused: int  # parts whose parquet was linked unchanged from the previous dataset
    rewritten: int  # parts placed anew (new, re-converted, or shifted)
    removed: int  # recordings dropped since the previous dataset
    provenance: list[dict[str, Any]]


_held = threading.local()  # lock files this thread holds (dataset_lock is re-entrant within a thread)


@contextmanager
def dataset_lock(output: Path) -> Iterator[None]:
    """Serialise assemblies of the same dataset across processes.

    Re-entrant within a thread: a caller that must read the store and assemble from what it read as one
    step (so a slower assembly of an older store never replaces a newer dataset) takes the lock around
    both, and the assembly's own ``dataset_lock`` then passes straight through.
    """
    lock = Path(output).with_name(f".{Path(output).name}.lock").absolute()
    held: set[Path] = _held.__dict__.setdefault("paths", set())
    if lock in held:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        held.add(lock)
        try:
            yield
        finally:
            held.discard(lock)
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_provenance(root: Path) -> list[dict[str, Any]]:
    path = Path(root) / F.PROVENANCE_PATH
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def order_parts(parts: Sequence[StagedPart], previous: list[dict[str, Any]]) -> list[StagedPart]:
    """Recordings already in the dataset first, in their order; then new ones as given."""
    rank: dict[str, int] = {}
    for row in previous:
        rank.setdefault(row["episode_key"], len(rank))
    for p in parts:
        rank.setdefault(p.report.episode_key, len(rank))
    return sorted(parts, key=lambda p: (rank[p.report.episode_key], p.report.part))


def _video_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.height, s.codec_context.width


def _index_stats(n: int, episode_index: int, offset: int, task_index: int) -> dict[str, Any]:
    return {
        "episode_index": numeric_stats(np.full(n, episode_index, np.int64)),
        "index": numeric_stats(np.arange(offset, offset + n, dtype=np.int64)),
        "task_index": numeric_stats(np.full(n, task_index, np.int64)),
    }


def indexed_table(src: Path, episode_index: int, offset: int, task_index: int) -> pa.Table:
    """A staged part's rows with the dataset's episode_index, global index and task_index set."""
    table = read_parquet(src)
    n = table.num_rows
    replace = {
        "episode_index": numeric_array(np.full(n, episode_index), pa.int64()),
        "index": numeric_array(np.arange(offset, offset + n), pa.int64()),
        "task_index": numeric_array(np.full(n, task_index), pa.int64()),
    }
    for name, arr in replace.items():
        table = table.set_column(table.schema.get_field_index(name), name, arr)
    return table


def _write_parquet(src: Path, dst: Path, episode_index: int, offset: int, task_index: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(indexed_table(src, episode_index, offset, task_index), dst)
    return_freed_memory()  # one part's table at a time, not the high-water mark of all of them


def episode_stats(p: StagedPart, episode_index: int, offset: int, task_index: int) -> dict[str, Any]:
    """The part's feature stats plus those of the index columns it gets in the dataset."""
    return p.stats() | _index_stats(p.length, episode_index, offset, task_index)


def provenance_row(p: StagedPart, episode_index: int, offset: int, task_index: int) -> dict[str, Any]:
    """One line of meta/provenance.jsonl: which recording/part/version this episode index holds."""
    r = p.report
    return {
        "episode_index": episode_index, "uid": p.uid, "version": p.version, "offset": offset,
        "task_index": task_index, "length": p.length, "episode_key": r.episode_key,
        "source": r.source, "episode_id": r.episode_id, "part": r.part, "n_parts": r.n_parts,
        "strategy": r.strategy, "config_digest": r.config_digest,
        "capture_start_ns": r.capture_start_ns, "capture_end_ns": r.capture_end_ns,
        "frames_in": r.frames_in, "filled_frames": len(r.filled_frames),
        "padded_frames": r.padded_frames, "bad_images": r.bad_image_count, "long_gaps": r.long_gaps,
        "utilisation": r.utilisation_total,
    }


def verify_build(root: Path, video_files: set[str] | None = None, deep_episodes: set[int] | None = None) -> None:
    """Refuse to swap in a build that fails the conformance check (the old dataset stays).

    ``video_files`` (v3.0) / ``deep_episodes`` (v2.1): read only these files / episodes; the others are hard
    links of files checked when they were written (meta/ is checked whole either way).
    """
    from lerobot_pipeline.core.validate import validate_dataset

    report = validate_dataset(root, video_files=video_files, deep_episodes=deep_episodes)
    if not report.ok:
        first = "; ".join(f"{p.where}: {p.message}" for p in report.errors()[:5])
        raise DatasetError(f"built dataset failed validation, previous dataset kept: {first}")


def require_distinct_parts(parts: Sequence[StagedPart], output: Path) -> None:
    if not parts:
        raise DatasetError(f"no episodes to assemble into {output}")
    uids = [p.uid for p in parts]
    if len(set(uids)) != len(uids):
        raise DatasetError(f"duplicate episode parts given for {output}")


def assemble_dataset(
    parts: Sequence[StagedPart], output: str | Path, config: PipelineConfig,
    progress: Callable[[int, int], None] | None = None, verify: bool = True, sync_sources: bool = False,
) -> DatasetSummary:
    """Build the dataset at ``output`` from ``parts`` (all recordings it should hold) and swap it in.

    With ``verify`` (default) the build is validated before the swap; a failing build is discarded.
    """
    output = Path(output)
    require_distinct_parts(parts, output)
    chunks = config.output.chunks_size
    cams = [c.name for c in config.cameras]
    with dataset_lock(output):
        remove_stale_builds(output)  # left by an assembly killed mid-way (we hold the lock: none is live)
        previous = read_provenance(output)
        prev_by_uid = {row["uid"]: row for row in previous}
        ordered = order_parts(parts, previous)
        tasks: list[str] = []
        for p in ordered:
            if p.task not in tasks:
                tasks.append(p.task)
        first = ordered[0]
        video_info = {}
        for cam in cams:
            probe = probe_video(first.video(cam))
            video_info[cam] = probe.info_block(config.fps)
        expected_size = {cam: (video_info[cam]["video.height"], video_info[cam]["video.width"]) for cam in cams}

        build = fresh_build_dir(output)
        try:
            provenance, episodes, stats_rows = [], [], []
            offset = reused = 0
            written: set[int] = set()  # episodes whose files this build placed anew (the rest: linked, checked)
            for i, p in enumerate(ordered):
                task_index = tasks.index(p.task)
                data_rel = F.data_file(i, chunks)
                prev = prev_by_uid.get(p.uid)
                same = (prev is not None and prev["version"] == p.version and prev["episode_index"] == i
                        and prev["offset"] == offset and prev["task_index"] == task_index)
                if same and (output / data_rel).is_file():
                    link_or_copy(output / data_rel, build / data_rel)
                    reused += 1
                else:
                    _write_parquet(p.parquet, build / data_rel, i, offset, task_index)
                    written.add(i)
                for cam in cams:
                    # an episode the dataset already holds keeps the video it was verified with
                    held = output / F.video_file(i, cam, chunks)
                    src = held if same and held.is_file() else p.video(cam)
                    if src != held:
                        written.add(i)
                    size = None if same else _video_size(src)
                    if size is not None and size != expected_size[cam]:
                        raise DatasetError(
                            f"episode {p.uid} camera {cam}: video is {size} (h, w), "
                            f"the dataset's is {expected_size[cam]}; one dataset needs one resolution per camera"
                        )
                    link_or_copy(src, build / F.video_file(i, cam, chunks))
                    if sync_sources and src != held:
                        fsync_file(src)  # from a store written without fsync: make the dataset's copy durable
                stats_rows.append({"episode_index": i, "stats": episode_stats(p, i, offset, task_index)})
                episodes.append({"episode_index": i, "tasks": [p.task], "length": p.length})
                provenance.append(provenance_row(p, i, offset, task_index))
                offset += p.length
                if progress:
                    progress(i + 1, len(ordered))
            n = len(ordered)
            info = {
                "codebase_version": F.CODEBASE_VERSION,
                "robot_type": config.output.robot_type,
                "total_episodes": n,
                "total_frames": offset,
                "total_tasks": len(tasks),
                "total_videos": n * len(cams),
                "total_chunks": math.ceil(n / chunks),
                "chunks_size": chunks,
                "fps": config.fps,
                "splits": {"train": f"0:{n}"},
                "data_path": F.DATA_PATH,
                "video_path": F.VIDEO_PATH,
                "features": F.build_features(config, video_info),
            }
            write_jsonl_atomic(build / F.TASKS_PATH, [{"task_index": i, "task": t} for i, t in enumerate(tasks)])
            write_jsonl_atomic(build / F.EPISODES_PATH, episodes)
            write_jsonl_atomic(build / F.EPISODES_STATS_PATH, stats_rows)
            write_jsonl_atomic(build / F.PROVENANCE_PATH, provenance)
            write_json_atomic(build / F.INFO_PATH, info)  # last: a complete info.json marks a complete build
            if verify:
                return_freed_memory()
                verify_build(build, deep_episodes=written if previous else None)
            swap_directory(build, output)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    removed = len({r["episode_key"] for r in previous} - {p.report.episode_key for p in parts})
    return DatasetSummary(output, n, offset, reused, n - reused, removed, provenance)
