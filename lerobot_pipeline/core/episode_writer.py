"""Write one converted recording into the episode store, in stages that Dagster runs as assets.

Store layout (not a LeRobot dataset; ``dataset.py`` assembles datasets from it)::

    <store>/<strategy>/<episode_key>/episode.json                   commit point: current version
    <store>/<strategy>/<episode_key>/versions/<v>/aligned.npz       aligned arrays + camera frame choices
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/report.json
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/data.parquet   final columns; indices set at assembly
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/videos/<camera>.mp4
    <store>/<strategy>/<episode_key>/versions/<v>/part-000/stats.json     written at commit

Stages: :func:`write_aligned` → :func:`write_parquets` and :func:`write_videos` → :func:`commit_episode`.
Every file is written atomically; a version only becomes visible to datasets when ``episode.json``
names it, so a crash mid-way leaves the previous version in force.
"""

from __future__ import annotations

import json
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.align import FrameArrays
from lerobot_pipeline.core.fsutil import atomic_path, write_json_atomic
from lerobot_pipeline.core.raw import CameraFrames
from lerobot_pipeline.core.report import PartReport
from lerobot_pipeline.core.stats import ImageStatsAccumulator, numeric_stats
from lerobot_pipeline.core.video import VideoEncoder
from lerobot_pipeline.errors import DatasetError, RawDataError
from lerobot_pipeline.ids import safe_join

EPISODE_MANIFEST = "episode.json"
PENDING = "pending.json"  # the version being built by the staged (Dagster) path
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

    def stats(self) -> dict:
        return json.loads((self.dir / "stats.json").read_text())


def episode_store_dir(store: str | Path, strategy: str, episode_key: str) -> Path:
    return safe_join(store, strategy, episode_key)


def part_dir(version_dir: Path, part: int) -> Path:
    return Path(version_dir) / f"part-{part:03d}"


# ----------------------------------------------------------------------------- stage 1: aligned frames


def new_version_dir(store: str | Path, strategy: str, episode_key: str) -> Path:
    d = episode_store_dir(store, strategy, episode_key) / "versions" / uuid.uuid4().hex[:16]
    d.mkdir(parents=True)
    return d


def write_aligned(version_dir: Path, parts: list[PartData]) -> None:
    arrays = {}
    for k, p in enumerate(parts):
        arrays[f"{k}/state_slave"] = p.arrays.state_slave
        arrays[f"{k}/state_master"] = p.arrays.state_master
        arrays[f"{k}/action"] = p.arrays.action
        arrays[f"{k}/capture_t_ns"] = p.capture_t_ns
        for cam, idx in p.camera_frames.items():
            arrays[f"{k}/cam/{cam}"] = idx
        write_json_atomic(part_dir(version_dir, k) / "report.json", p.report.to_dict())
    with atomic_path(version_dir / "aligned.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_aligned(version_dir: Path) -> list[PartData]:
    path = Path(version_dir) / "aligned.npz"
    if not path.is_file():
        raise DatasetError(f"aligned frames missing: {path} (materialise aligned_frames first)")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    parts = []
    k = 0
    while f"{k}/capture_t_ns" in data:
        report = PartReport.from_dict(json.loads((part_dir(version_dir, k) / "report.json").read_text()))
        cams = {name.split("/", 2)[2]: v for name, v in data.items() if name.startswith(f"{k}/cam/")}
        parts.append(PartData(
            FrameArrays(data[f"{k}/state_slave"], data[f"{k}/state_master"], data[f"{k}/action"]),
            data[f"{k}/capture_t_ns"], cams, report,
        ))
        k += 1
    return parts


def mark_pending(version_dir: Path, filtered: str | None = None) -> None:
    """Record the version the next stages build (or that the recording was filtered, and why)."""
    episode_dir = Path(version_dir).parent.parent
    write_json_atomic(episode_dir / PENDING, {"version": Path(version_dir).name, "filtered": filtered})


def pending_version(store: str | Path, strategy: str, episode_key: str) -> tuple[Path, str | None]:
    """(version dir, filtered reason or None) recorded by the last aligned_frames run."""
    episode_dir = episode_store_dir(store, strategy, episode_key)
    path = episode_dir / PENDING
    if not path.is_file():
        raise DatasetError(f"{episode_key} [{strategy}]: no aligned frames yet (materialise aligned_frames first)")
    data = json.loads(path.read_text())
    return episode_dir / "versions" / data["version"], data.get("filtered")


def commit_filtered(version_dir: Path, reason: str) -> None:
    """Record that this recording yields no episode under the current config (dataset skips it)."""
    episode_dir = Path(version_dir).parent.parent
    write_json_atomic(episode_dir / EPISODE_MANIFEST, {"version": Path(version_dir).name, "filtered": reason, "parts": []})
    prune_versions(episode_dir)


def read_manifest(episode_dir: str | Path) -> dict | None:
    path = Path(episode_dir) / EPISODE_MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------- stage 2a: parquet


def _arrow_table(config: PipelineConfig, data: PartData) -> pa.Table:
    schema = F.parquet_schema(config)
    n = len(data.capture_t_ns)
    a = data.arrays

    def fixed(arr):
        return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1), pa.float32()), arr.shape[1])

    if a.action.ndim == 2:
        action = fixed(a.action)
    else:  # [L, C, D] -> list<list<float>>
        inner = pa.FixedSizeListArray.from_arrays(pa.array(a.action.reshape(-1), pa.float32()), a.action.shape[2])
        offsets = pa.array(np.arange(0, n * a.action.shape[1] + 1, a.action.shape[1], dtype=np.int32))
        action = pa.ListArray.from_arrays(offsets, inner.cast(pa.list_(pa.float32()))).cast(schema.field(F.ACTION).type)
    frame_index = np.arange(n, dtype=np.int64)
    cols = {
        F.STATE_SLAVE: fixed(a.state_slave),
        F.STATE_MASTER: fixed(a.state_master),
        F.ACTION: action,
        F.CAPTURE_TIME: pa.array(data.capture_t_ns, pa.int64()),
        "timestamp": pa.array((frame_index / config.fps).astype(np.float32), pa.float32()),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(np.zeros(n, np.int64)),
        "index": pa.array(frame_index),
        "task_index": pa.array(np.zeros(n, np.int64)),
    }
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def numeric_part_stats(config: PipelineConfig, data: PartData) -> dict:
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
            pq.write_table(_arrow_table(config, data), tmp)
        write_json_atomic(d / "numeric_stats.json", numeric_part_stats(config, data), indent=None)
        out.append(d / "data.parquet")
    return out


# ----------------------------------------------------------------------------- stage 2b: videos


def decode_jpeg(path: Path, episode: str) -> np.ndarray:
    """RGB uint8 image; :class:`RawDataError` naming the file if it cannot be decoded."""
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise RawDataError(episode, "image cannot be decoded", file=str(path))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_size(frames: CameraFrames, episode: str) -> tuple[int, int]:
    """(height, width) of a camera, from its first frame."""
    img = decode_jpeg(frames.path(0), episode)
    return img.shape[0], img.shape[1]


def encode_camera(
    out: Path, frames: CameraFrames | None, index: np.ndarray, size: tuple[int, int], config: PipelineConfig,
    episode: str,
) -> tuple[dict, int]:
    """Stream the chosen JPEGs of one camera into ``out``; returns (image stats, frames written)."""
    h, w = size
    acc = ImageStatsAccumulator(len(index))
    black = np.zeros((h, w, 3), dtype=np.uint8)
    with atomic_path(out) as tmp:
        enc = VideoEncoder(tmp, config.fps, w, h, config.video)
        try:
            last_i, last_img = None, None
            for k, i in enumerate(index.tolist()):
                if i < 0:
                    img = black
                elif i == last_i:
                    img = last_img
                else:
                    img = decode_jpeg(frames.path(i), episode)
                    if img.shape[:2] != (h, w):
                        raise RawDataError(
                            episode, f"image is {img.shape[1]}x{img.shape[0]}, camera's first frame is {w}x{h}",
                            file=str(frames.path(i)),
                        )
                    last_i, last_img = i, img
                acc.add(k, img)
                enc.add(img)
            written = enc.close()
        except BaseException:
            enc.abort()
            raise
    return acc.result(), written


def write_videos(
    version_dir: Path, config: PipelineConfig, parts: list[PartData], cameras: dict[str, CameraFrames],
    jobs: int = 3,
) -> list[Path]:
    """Encode one mp4 per part and camera (cameras in parallel threads); image stats beside them."""
    if not parts:
        return []
    episode = parts[0].report.episode_key
    base = config.base_camera.name
    base_size = frame_size(cameras[base], episode)
    sizes = {c.name: frame_size(cameras[c.name], episode) if c.name in cameras else base_size for c in config.cameras}
    out = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for k, data in enumerate(parts):
            d = part_dir(version_dir, k)
            n = len(data.capture_t_ns)
            futures = {
                cam: pool.submit(encode_camera, d / "videos" / f"{cam}.mp4", cameras.get(cam), idx, sizes[cam],
                                 config, episode)
                for cam, idx in data.camera_frames.items()
            }
            image_stats = {}
            for cam, fut in futures.items():
                stats, written = fut.result()
                if written != n:  # cannot happen unless the encoder drops frames; never let it pass silently
                    raise RawDataError(episode, f"encoder wrote {written} frames for {n} rows", field=cam)
                image_stats[F.video_key(cam)] = stats
                out.append(d / "videos" / f"{cam}.mp4")
            write_json_atomic(d / "image_stats.json", image_stats, indent=None)
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
