"""Write one converted recording into the episode store, stage by stage (the Dagster step and the CLI alike).

Store layout (not a LeRobot dataset; ``dataset.py`` assembles datasets from it)::

    <store>/<strategy>/<episode_key>/episode.json                   commit point: current version
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/report.json
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/data.parquet   final columns; indices set at assembly
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/videos/<camera>.mp4
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/stats.json     written at commit

Stages: :func:`write_reports` → :func:`write_parquets` and ``camera_videos.write_videos`` → :func:`commit_episode`.
Every file is written atomically; a version only becomes visible to datasets when ``episode.json``
names it, so a crash mid-way leaves the previous version in force.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.align import FrameArrays
from lerobot_pipeline.core.arrow import numeric_array
from lerobot_pipeline.core.fsutil import atomic_path, write_json_atomic
from lerobot_pipeline.core.memory import return_freed_memory
from lerobot_pipeline.core.report import PartReport
from lerobot_pipeline.core.stats import numeric_stats
from lerobot_pipeline.errors import DatasetError
from lerobot_pipeline.ids import safe_join

EPISODE_MANIFEST = "episode.json"
GENERATION = ".generation"  # <store>/<strategy>/.generation: changes on every commit of that strategy
KEEP_VERSIONS = 2  # the committed one and its predecessor (a dataset build may still be reading it)


@dataclass(frozen=True)
class PartData:
    """Everything needed to write one part: aligned arrays, camera frame choices, its report."""

    arrays: FrameArrays
    capture_t_ns: np.ndarray  # (L,) int64
    camera_frames: dict[str, np.ndarray]  # camera -> (L,) frame index into CameraFrames, -1 = black
    report: PartReport


@dataclass(frozen=True)
class StagedPart:
    """A committed part in the store, ready to be placed into a dataset."""

    dir: Path
    uid: str
    version: str
    length: int
    task: str
    report: PartReport

    @property
    def parquet(self) -> Path:
        return self.dir / "data.parquet"

    def video(self, camera: str) -> Path:
        return self.dir / "videos" / f"{camera}.mp4"

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads((self.dir / "stats.json").read_text())
        return stats


def episode_store_dir(store: str | Path, strategy: str, episode_key: str) -> Path:
    return safe_join(store, strategy, episode_key)


def part_dir(version_dir: Path, part: int) -> Path:
    return Path(version_dir) / f"part-{part:03d}"


# ----------------------------------------------------------------------------- stage 1: aligned frames


def new_version_dir(store: str | Path, strategy: str, episode_key: str) -> Path:
    d = episode_store_dir(store, strategy, episode_key) / "versions" / uuid.uuid4().hex[:16]
    d.mkdir(parents=True)
    return d


def write_reports(version_dir: Path, parts: list[PartData]) -> None:
    """Each part's report (alignment figures, fills, provenance) beside where its files will go."""
    for k, p in enumerate(parts):
        write_json_atomic(part_dir(version_dir, k) / "report.json", p.report.to_dict())


def commit_filtered(version_dir: Path, reason: str) -> None:
    """Record that this recording yields no episode under the current config (dataset skips it)."""
    episode_dir = Path(version_dir).parent.parent
    write_json_atomic(episode_dir / EPISODE_MANIFEST,
                      {"version": Path(version_dir).name, "filtered": reason, "parts": []})
    bump_generation(episode_dir.parent)
    prune_versions(episode_dir)


def bump_generation(strategy_dir: Path) -> None:
    """Record that a commit happened under ``<store>/<strategy>`` (after its manifest is in place): whoever
    remembers the generation it last saw knows in one file read whether anything changed since."""
    write_json_atomic(Path(strategy_dir) / GENERATION, {"generation": uuid.uuid4().hex})


def store_generation(store: str | Path, strategy: str) -> str | None:
    """The token of the last commit of ``strategy`` in the store (None: nothing ever committed)."""
    path = safe_join(store, strategy) / GENERATION
    try:
        generation: str | None = json.loads(path.read_text())["generation"]
        return generation
    except (OSError, ValueError, KeyError):
        return None


def read_manifest(episode_dir: str | Path) -> dict[str, Any] | None:
    path = Path(episode_dir) / EPISODE_MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------- stage 2a: parquet


PARQUET_ROW_GROUP_ROWS = 4096  # rows built and encoded at once: arrow buffers stay a few MB at any episode length


def _arrow_table(config: PipelineConfig, data: PartData, start: int = 0, stop: int | None = None) -> pa.Table:
    """Rows ``[start, stop)`` of one part as an arrow table of the final schema."""
    schema = F.parquet_schema(config)
    stop = len(data.capture_t_ns) if stop is None else stop
    n = stop - start
    a = data.arrays

    def fixed(arr: np.ndarray) -> pa.FixedSizeListArray[Any]:
        arr = arr[start:stop]
        return pa.FixedSizeListArray.from_arrays(numeric_array(arr.reshape(-1), pa.float32()), arr.shape[1])

    if a.action.ndim == 2:
        action = fixed(a.action)
    else:  # [L, C, D] -> list<list<float>>, built from offsets (a cast would import pyarrow.compute: 0.12 s)
        chunk = a.action[start:stop]
        _, c, d = chunk.shape
        inner = pa.ListArray.from_arrays(  # type: ignore[call-overload]  # stubs: offsets must be an Int32Array
            numeric_array(np.arange(0, n * c * d + 1, d), pa.int32()), numeric_array(chunk.reshape(-1), pa.float32()))
        action = pa.ListArray.from_arrays(  # type: ignore[call-overload]
            numeric_array(np.arange(0, n * c + 1, c), pa.int32()), inner, type=schema.field(F.ACTION).type)
    frame_index = np.arange(start, stop, dtype=np.int64)
    cols = {
        F.STATE_SLAVE: fixed(a.state_slave),
        F.STATE_MASTER: fixed(a.state_master),
        F.ACTION: action,
        F.CAPTURE_TIME: numeric_array(data.capture_t_ns[start:stop], pa.int64()),
        "timestamp": numeric_array(frame_index / config.fps, pa.float32()),
        "frame_index": numeric_array(frame_index, pa.int64()),
        "episode_index": numeric_array(np.zeros(n), pa.int64()),
        "index": numeric_array(frame_index, pa.int64()),
        "task_index": numeric_array(np.zeros(n), pa.int64()),
    }
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def write_part_parquet(path: Path, config: PipelineConfig, data: PartData,
                       rows_per_group: int = PARQUET_ROW_GROUP_ROWS) -> None:
    """One part's rows, built and written a row group at a time (never the whole table in memory).

    Without dictionary encoding: float columns never fit a dictionary, and trying costs the writer ~17 MB of
    buffers. The file is the store's; assembly rewrites every dataset file with the default writer."""
    n = len(data.capture_t_ns)
    with pq.ParquetWriter(path, F.parquet_schema(config), use_dictionary=False) as writer:
        for start in range(0, max(n, 1), rows_per_group):
            writer.write_table(_arrow_table(config, data, start, min(start + rows_per_group, n)))


def numeric_part_stats(config: PipelineConfig, data: PartData) -> dict[str, Any]:
    frame_index = np.arange(len(data.capture_t_ns), dtype=np.int64)
    return {
        F.STATE_SLAVE: numeric_stats(data.arrays.state_slave),
        F.STATE_MASTER: numeric_stats(data.arrays.state_master),
        F.ACTION: numeric_stats(data.arrays.action),
        F.CAPTURE_TIME: numeric_stats(data.capture_t_ns),
        "timestamp": numeric_stats((frame_index / config.fps).astype(np.float32)),
        "frame_index": numeric_stats(frame_index),
    }


def write_parquets(version_dir: Path, config: PipelineConfig, parts: list[PartData]) -> list[Path]:
    out = []
    for k, data in enumerate(parts):
        d = part_dir(version_dir, k)
        with atomic_path(d / "data.parquet") as tmp:
            write_part_parquet(tmp, config, data)
        write_json_atomic(d / "numeric_stats.json", numeric_part_stats(config, data), indent=None)
        out.append(d / "data.parquet")
        return_freed_memory()  # one part's writer buffers and stats temporaries at a time
    return out


# ----------------------------------------------------------------------------- stage 3: commit


def commit_episode(version_dir: Path) -> list[StagedPart]:
    """Merge stats, then point ``episode.json`` at this version (atomic) and prune old versions."""
    version_dir = Path(version_dir)
    episode_dir = version_dir.parent.parent
    reports = []
    k = 0
    while (part_dir(version_dir, k) / "report.json").is_file():
        d = part_dir(version_dir, k)
        for name in ("data.parquet", "numeric_stats.json", "image_stats.json"):
            if not (d / name).is_file():
                raise DatasetError(f"cannot commit {version_dir}: {d / name} is missing")
        stats = json.loads((d / "numeric_stats.json").read_text()) | json.loads((d / "image_stats.json").read_text())
        write_json_atomic(d / "stats.json", stats, indent=None)
        reports.append(PartReport.from_dict(json.loads((d / "report.json").read_text())))
        k += 1
    if not reports:
        raise DatasetError(f"cannot commit {version_dir}: no parts")
    first = reports[0]
    manifest = {
        "episode_key": first.episode_key, "strategy": first.strategy, "version": version_dir.name,
        "config_digest": first.config_digest, "task": first.task,
        "parts": [{"part": r.part, "length": r.frames_out} for r in reports],
    }
    write_json_atomic(episode_dir / EPISODE_MANIFEST, manifest)
    bump_generation(episode_dir.parent)
    prune_versions(episode_dir)
    return load_staged(episode_dir)


def prune_versions(episode_dir: Path, keep: int = KEEP_VERSIONS) -> None:
    versions = episode_dir / "versions"
    if not versions.is_dir():
        return
    current = json.loads((episode_dir / EPISODE_MANIFEST).read_text())["version"]
    others = sorted((p for p in versions.iterdir() if p.is_dir() and p.name != current),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[keep - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def load_staged(episode_dir: str | Path) -> list[StagedPart]:
    """The committed parts of one stored recording, or [] if none is committed."""
    episode_dir = Path(episode_dir)
    manifest_path = episode_dir / EPISODE_MANIFEST
    if not manifest_path.is_file():
        return []
    m = json.loads(manifest_path.read_text())
    if m.get("filtered"):
        return []
    vdir = episode_dir / "versions" / m["version"]
    out = []
    for p in m["parts"]:
        d = part_dir(vdir, p["part"])
        report = PartReport.from_dict(json.loads((d / "report.json").read_text()))
        out.append(StagedPart(d, report.uid, m["version"], p["length"], m["task"], report))
    return out
