"""Assemble a LeRobot v3.0 dataset from staged episode parts, incrementally, built aside and swapped in.

Same input, ordering and index rules as the v2.1 path (``core/dataset.py``): indices ``0..N-1`` are
stable, recordings already in the dataset keep their place. Episodes are concatenated into
size-bounded files (:mod:`placement`); files holding only unchanged episodes are hard-linked from the
current dataset, the open (last) data file and each camera's last mp4 are rewritten with the new
episodes appended (video packets remuxed, never re-encoded), then ``meta/`` is written. The new tree
is validated and swapped in whole (``fsutil.swap_directory``): a reader never sees it half-written.
Removing or re-converting an episode rewrites the files from that episode on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.arrow import read_parquet
from lerobot_pipeline.core.dataset import (
    DatasetSummary,
    dataset_lock,
    episode_stats,
    indexed_table,
    order_parts,
    provenance_row,
    read_provenance,
    require_distinct_parts,
    verify_build,
)
from lerobot_pipeline.core.episode_writer import StagedPart
from lerobot_pipeline.core.fsutil import (
    fresh_build_dir,
    link_or_copy,
    swap_directory,
    write_json_atomic,
    write_jsonl_atomic,
)
from lerobot_pipeline.core.v30 import layout as L
from lerobot_pipeline.core.v30.placement import FilePlan, OldFile, plan_files
from lerobot_pipeline.core.v30.video_concat import Segment, concat_videos
from lerobot_pipeline.core.video import probe_video
from lerobot_pipeline.errors import DatasetError

MB = 1024 * 1024


@dataclass(frozen=True)
class V30Summary(DatasetSummary):
    files_written: int = 0  # data/video/meta files written anew in this build
    files_linked: int = 0  # data/video files hard-linked unchanged from the previous build
    bytes_written: int = 0


def read_episodes_meta(root: Path) -> list[dict[str, Any]] | None:
    """The episode rows of a v3.0 dataset at ``root`` (stats columns left out), or None if it is not one."""
    info_path = Path(root) / L.INFO_PATH
    if not info_path.is_file() or json.loads(info_path.read_text()).get("codebase_version") != L.CODEBASE_VERSION:
        return None
    files = sorted((Path(root) / "meta" / "episodes").glob("*/*.parquet"))
    rows: list[dict[str, Any]] = []
    for path in files:
        table = read_parquet(path)
        table = table.select([c for c in table.column_names if not c.startswith("stats/")])
        rows.extend(table.to_pylist())
    return sorted(rows, key=lambda r: r["episode_index"])


def _unchanged_prefix(ordered: list[StagedPart], previous: list[dict[str, Any]], prev_meta: list[dict[str, Any]] | None,
                      task_of: Callable[[StagedPart], int]) -> int:
    """How many leading episodes are exactly as in the previous v3.0 build (same part, index, offset)."""
    if prev_meta is None or len(prev_meta) != len(previous):
        return 0
    keep = offset = 0
    for i, (p, prev) in enumerate(zip(ordered, previous)):
        same = (prev["uid"] == p.uid and prev["version"] == p.version and prev["episode_index"] == i
                and prev["offset"] == offset and prev["task_index"] == task_of(p))
        if not same:
            break
        keep, offset = i + 1, offset + p.length
    return keep


class _Build:
    """Writes the files of one build, counting what is linked and what is written."""

    def __init__(self, output: Path, build: Path):
        self.output, self.build = output, build
        self.linked = self.written = self.bytes = 0
        self.videos: set[str] = set()  # video files written in this build

    def link(self, rel: str) -> None:
        if not (self.output / rel).is_file():
            raise DatasetError(f"{self.output}: {rel} listed in meta/episodes but missing; re-run with a full rebuild")
        link_or_copy(self.output / rel, self.build / rel)
        self.linked += 1

    def wrote(self, rel: str) -> None:
        self.written += 1
        self.bytes += (self.build / rel).stat().st_size


def _old_files(prev_meta: list[dict[str, Any]], output: Path, fid_of: Callable[[dict[str, Any]], L.FileId],
               path_of: Callable[[L.FileId], str]) -> dict[L.FileId, OldFile]:
    counts: dict[L.FileId, int] = {}
    for row in prev_meta:
        counts[fid_of(row)] = counts.get(fid_of(row), 0) + 1
    return {fid: OldFile((output / path_of(fid)).stat().st_size if (output / path_of(fid)).is_file() else 0, n)
            for fid, n in counts.items()}


def _place(
    b: _Build, ordered: list[StagedPart], keep: int, prev_meta: list[dict[str, Any]] | None,
    fid_of: Callable[[dict[str, Any]], L.FileId], path_of: Callable[[L.FileId], str],
    source_of: Callable[[StagedPart], Path], bound_bytes: int, chunks: int,
) -> tuple[list[FilePlan], list[L.FileId]]:
    """Plan the files of one kind (data, or one camera's videos); link the unchanged ones."""
    prev_locs = [fid_of(r) for r in prev_meta or []]
    old = _old_files(prev_meta or [], b.output, fid_of, path_of) if keep else {}
    plans, locs = plan_files(prev_locs, [p.length for p in ordered], keep, old,
                             [source_of(p).stat().st_size for p in ordered[keep:]], bound_bytes, chunks)
    for plan in plans:
        if plan.link:
            b.link(path_of(plan.fid))
    return plans, locs


def assemble_dataset_v30(
    parts: Sequence[StagedPart], output: str | Path, config: PipelineConfig,
    progress: Callable[[int, int], None] | None = None, verify: bool = True,
    bounds_bytes: tuple[int, int] | None = None, sync_sources: bool = False,
) -> V30Summary:
    """Build (or update) the v3.0 dataset at ``output`` holding exactly ``parts``; validated, then swapped in.

    ``sync_sources`` is accepted for the v2.1 signature: every file v3.0 places anew it writes (and syncs)
    itself; it links only files of the previous dataset.

    ``bounds_bytes`` (data, video) overrides ``output.data_files_size_in_mb``/``video_files_size_in_mb``
    (tests and benchmarks use tiny bounds to make files roll over).
    """
    output = Path(output)
    require_distinct_parts(parts, output)
    chunks = config.output.chunks_size
    cams = [c.name for c in config.cameras]
    keys = sorted(F.video_key(c) for c in cams)
    cam_of = {F.video_key(c): c for c in cams}
    data_bound, video_bound = bounds_bytes or (config.output.data_files_size_in_mb * MB,
                                               config.output.video_files_size_in_mb * MB)
    with dataset_lock(output):
        previous = read_provenance(output)
        prev_meta = read_episodes_meta(output)
        ordered = order_parts(parts, previous)
        tasks = list(dict.fromkeys(p.task for p in ordered))
        task_of = {p.uid: tasks.index(p.task) for p in ordered}
        keep = _unchanged_prefix(ordered, previous, prev_meta, lambda p: task_of[p.uid])
        video_info = {c: probe_video(ordered[0].video(c)).info_block(config.fps) for c in cams}
        offsets, total = [], 0
        for p in ordered:
            offsets.append(total)
            total += p.length
        build = fresh_build_dir(output)
        b = _Build(output, build)
        try:
            def data_fid(r: dict[str, Any]) -> L.FileId:
                return L.FileId(r["data/chunk_index"], r["data/file_index"])

            data_plans, data_locs = _place(b, ordered, keep, prev_meta, data_fid, L.FileId.data_path,
                                           lambda p: p.parquet, data_bound, chunks)
            for plan in data_plans:
                if not plan.link:
                    _write_data_file(b, plan, ordered, offsets, task_of)
            video_locs, from_frames = {}, {}
            for key in keys:
                chunk_col, file_col = L.video_columns(key)[:2]

                def vid_fid(r: dict[str, Any], chunk_col: str = chunk_col, file_col: str = file_col) -> L.FileId:
                    return L.FileId(r[chunk_col], r[file_col])

                def vid_path(fid: L.FileId, key: str = key) -> str:
                    return fid.video_path(key)

                def vid_source(p: StagedPart, key: str = key) -> Path:
                    return p.video(cam_of[key])

                plans, video_locs[key] = _place(b, ordered, keep, prev_meta, vid_fid, vid_path, vid_source,
                                                video_bound, chunks)
                for plan in plans:
                    if not plan.link:
                        _write_video_file(b, plan, key, cam_of[key], ordered, config.fps)
                from_frames[key] = _frames_before(video_locs[key], [p.length for p in ordered])
                if progress:
                    progress(keys.index(key) + 1, len(keys))
            rows, stats_rows, provenance = [], [], []
            for i, p in enumerate(ordered):
                stats = episode_stats(p, i, offsets[i], task_of[p.uid])
                stats_rows.append(stats)
                row: dict[str, Any] = {"episode_index": i, "data/chunk_index": data_locs[i].chunk,
                                       "data/file_index": data_locs[i].file,
                                       "dataset_from_index": offsets[i], "dataset_to_index": offsets[i] + p.length}
                for key in keys:
                    c_col, f_col, from_col, to_col = L.video_columns(key)
                    start = from_frames[key][i] / config.fps
                    row |= {c_col: video_locs[key][i].chunk, f_col: video_locs[key][i].file,
                            from_col: start, to_col: start + p.length / config.fps}
                row |= {"tasks": [p.task], "length": p.length, **L.flat_stats(stats),
                        "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
                rows.append(row)
                provenance.append(provenance_row(p, i, offsets[i], task_of[p.uid]))
            _write_meta(b, config, video_info, rows, stats_rows, tasks, provenance, total)
            if verify:
                verify_build(build, video_files=b.videos)
            swap_directory(build, output)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    removed = len({r["episode_key"] for r in previous} - {p.report.episode_key for p in parts})
    linked = {plan.fid for plan in data_plans if plan.link}
    reused = sum(1 for i in range(keep) if data_locs[i] in linked)  # episodes whose data file was linked
    return V30Summary(output, len(ordered), total, reused, len(ordered) - reused, removed, provenance,
                      b.written, b.linked, b.bytes)


def _frames_before(locs: list[L.FileId], lengths: list[int]) -> list[int]:
    """Per episode: frames of the earlier episodes in the same file (its start inside that mp4)."""
    seen: dict[L.FileId, int] = {}
    out = []
    for fid, n in zip(locs, lengths):
        out.append(seen.get(fid, 0))
        seen[fid] = out[-1] + n
    return out


def _write_data_file(b: _Build, plan: FilePlan, ordered: list[StagedPart], offsets: list[int],
                     task_of: dict[str, int]) -> None:
    rel = plan.fid.data_path()
    tables = []
    if plan.old_units:
        tables.append(read_parquet(b.output / rel).slice(0, plan.old_units))
    for i in plan.new:
        p = ordered[i]
        tables.append(indexed_table(p.parquet, i, offsets[i], task_of[p.uid]))
    (b.build / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), b.build / rel)
    b.wrote(rel)


def _write_video_file(b: _Build, plan: FilePlan, key: str, cam: str, ordered: list[StagedPart], fps: int) -> None:
    rel = plan.fid.video_path(key)
    segments = [Segment(b.output / rel, plan.old_units, f"{rel} (episodes kept from the previous build)")] \
        if plan.old_units else []
    segments += [Segment(ordered[i].video(cam), None, f"episode {ordered[i].uid} camera {cam}") for i in plan.new]
    counts = concat_videos(segments, b.build / rel, fps)
    b.videos.add(rel)
    for i, n in zip(plan.new, counts[-len(plan.new):] if plan.new else []):
        if n != ordered[i].length:
            raise DatasetError(f"episode {ordered[i].uid} camera {cam}: video has {n} frames, "
                               f"the episode has {ordered[i].length} rows")
    b.wrote(rel)


def _write_meta(
    b: _Build, config: PipelineConfig, video_info: dict[str, dict[str, Any]], rows: list[dict[str, Any]],
    stats_rows: list[dict[str, Any]], tasks: list[str], provenance: list[dict[str, Any]], total: int,
) -> None:
    build = b.build
    episodes_rel = L.EPISODES_META_PATH.format(chunk_index=0, file_index=0)
    (build / episodes_rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(L.episodes_table(rows), build / episodes_rel)
    pq.write_table(L.tasks_table(tasks), build / L.TASKS_PATH)
    write_json_atomic(build / L.STATS_PATH, L.aggregate_stats(stats_rows))
    write_jsonl_atomic(build / L.PROVENANCE_PATH, provenance)
    info = L.build_info(config, video_info, len(rows), total, len(tasks))
    write_json_atomic(build / L.INFO_PATH, info)  # last: a complete info.json marks a complete build
    for rel in (episodes_rel, L.TASKS_PATH, L.STATS_PATH, L.PROVENANCE_PATH, L.INFO_PATH):
        b.wrote(rel)
