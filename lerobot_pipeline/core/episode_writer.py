"""Write one converted recording into the episode store: per part a parquet, one mp4 per camera,
stats and a report. The recording's directory is built aside and swapped in whole.

Store layout (not a LeRobot dataset; ``dataset.py`` assembles datasets from it)::

    <store>/<strategy>/<episode_key>/episode.json           parts, version, report summary
    <store>/<strategy>/<episode_key>/part-000/data.parquet  final columns; indices set at assembly
    <store>/<strategy>/<episode_key>/part-000/videos/<camera>.mp4
    <store>/<strategy>/<episode_key>/part-000/stats.json    stats of every feature but the indices
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
from lerobot_pipeline.core.fsutil import atomic_path, fresh_build_dir, swap_directory, write_json_atomic
from lerobot_pipeline.core.raw import CameraFrames
from lerobot_pipeline.core.report import PartReport
from lerobot_pipeline.core.stats import ImageStatsAccumulator, numeric_stats
from lerobot_pipeline.core.video import VideoEncoder
from lerobot_pipeline.errors import RawDataError
from lerobot_pipeline.ids import safe_join

EPISODE_MANIFEST = "episode.json"


@dataclass(frozen=True)
class PartData:
    """Everything needed to write one part: aligned arrays, camera frame choices, its report."""

    arrays: FrameArrays
    capture_t_ns: np.ndarray  # (L,) int64
    camera_frames: dict[str, np.ndarray]  # camera -> (L,) frame index into CameraFrames, -1 = black
    report: PartReport


@dataclass(frozen=True)
class StagedPart:
    """A part in the store, ready to be placed into a dataset."""

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


def episode_store_dir(store: Path, strategy: str, episode_key: str) -> Path:
    return safe_join(store, strategy, episode_key)


def _decode(path: Path, episode: str) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise RawDataError(episode, "image cannot be decoded", file=str(path))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_size(frames: CameraFrames, episode: str) -> tuple[int, int]:
    """(height, width) of a camera, from its first frame."""
    img = _decode(frames.path(0), episode)
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
                    img = _decode(frames.path(i), episode)
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


def _arrow_table(config: PipelineConfig, data: PartData) -> pa.Table:
    schema = F.parquet_schema(config)
    n = len(data.capture_t_ns)
    a = data.arrays

    def fixed(arr):
        return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1), pa.float32()), arr.shape[1])

    action = fixed(a.action) if a.action.ndim == 2 else pa.array(a.action.tolist(), schema.field(F.ACTION).type)
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


def part_stats(config: PipelineConfig, data: PartData) -> dict:
    n = len(data.capture_t_ns)
    frame_index = np.arange(n, dtype=np.int64)
    return {
        F.STATE_SLAVE: numeric_stats(data.arrays.state_slave),
        F.STATE_MASTER: numeric_stats(data.arrays.state_master),
        F.ACTION: numeric_stats(data.arrays.action),
        F.CAPTURE_TIME: numeric_stats(data.capture_t_ns),
        "timestamp": numeric_stats((frame_index / config.fps).astype(np.float32)),
        "frame_index": numeric_stats(frame_index),
    }


def write_part(
    part_dir: Path, config: PipelineConfig, data: PartData, cameras: dict[str, CameraFrames],
    sizes: dict[str, tuple[int, int]], pool: ThreadPoolExecutor,
) -> dict:
    """Write parquet, videos and stats of one part into ``part_dir`` (inside a build directory)."""
    episode = data.report.episode_key
    n = len(data.capture_t_ns)
    futures = {
        cam: pool.submit(encode_camera, part_dir / "videos" / f"{cam}.mp4", cameras.get(cam),
                         data.camera_frames[cam], sizes[cam], config, episode)
        for cam in data.camera_frames
    }
    with atomic_path(part_dir / "data.parquet") as tmp:
        pq.write_table(_arrow_table(config, data), tmp)
    stats = part_stats(config, data)
    for cam, fut in futures.items():
        image_stats, written = fut.result()
        if written != n:  # cannot happen unless the encoder drops frames; never let it pass silently
            raise RawDataError(episode, f"encoder wrote {written} frames for {n} rows", field=cam)
        stats[F.video_key(cam)] = image_stats
    write_json_atomic(part_dir / "stats.json", stats, indent=None)
    write_json_atomic(part_dir / "report.json", data.report.to_dict())
    return stats


def write_episode(
    store: Path, config: PipelineConfig, parts: list[PartData], cameras: dict[str, CameraFrames],
    sizes: dict[str, tuple[int, int]], jobs: int = 3,
) -> list[StagedPart]:
    """Write all parts of one recording and swap the recording's store directory in whole."""
    first = parts[0].report
    final = episode_store_dir(store, first.strategy, first.episode_key)
    build = fresh_build_dir(final)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for data in parts:
                write_part(build / f"part-{data.report.part:03d}", config, data, cameras, sizes, pool)
        version = uuid.uuid4().hex[:16]
        manifest = {
            "episode_key": first.episode_key, "strategy": first.strategy, "version": version,
            "config_digest": first.config_digest, "task": first.task,
            "parts": [{"part": d.report.part, "length": len(d.capture_t_ns)} for d in parts],
        }
        write_json_atomic(build / EPISODE_MANIFEST, manifest)
        swap_directory(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return load_staged(final)


def load_staged(episode_dir: Path) -> list[StagedPart]:
    """The parts of one stored recording, or [] if it is not (completely) there."""
    manifest_path = Path(episode_dir) / EPISODE_MANIFEST
    if not manifest_path.is_file():
        return []
    m = json.loads(manifest_path.read_text())
    out = []
    for p in m["parts"]:
        d = Path(episode_dir) / f"part-{p['part']:03d}"
        report = PartReport.from_dict(json.loads((d / "report.json").read_text()))
        out.append(StagedPart(d, report.uid, m["version"], p["length"], m["task"], report))
    return out
