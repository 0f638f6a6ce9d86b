"""Build tiny, valid LeRobot v2.1 datasets for tests: pyarrow parquet, PyAV-encoded mp4s, consistent meta.

Written independently of the converter under test (no import from ``lerobot_pipeline``), following
``shared/docs/lerobot_v21_format.md``: one parquet per episode with fixed-size float32 lists, timestamps
``frame_index / fps`` (float32), a global ``index``; one mp4 per episode and camera (libx264, GOP 2,
yuv420p, pts k with time base 1/fps); episodes_stats with ``[3, 1, 1]`` image stats in [0, 1].
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
TASKS = ("pick up the cube", "put the cube in the bowl")
STATE_DIM = 4
CAMERA = "observation.images.cam_left"


def data_file(root: Path, ep: int, chunks_size: int = 1000) -> Path:
    return root / DATA_PATH.format(episode_chunk=ep // chunks_size, episode_index=ep)


def video_file(root: Path, ep: int, key: str = CAMERA, chunks_size: int = 1000) -> Path:
    return root / VIDEO_PATH.format(episode_chunk=ep // chunks_size, video_key=key, episode_index=ep)


# ----------------------------------------------------------------------------------------- frames and video
def synthetic_frames(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB: a colour gradient with a square moving one pixel per frame."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     np.full_like(x, (seed * 40) % 256)], axis=-1).astype(np.uint8)
    frames = np.repeat(base[None], n, axis=0)
    for k in range(n):
        x0 = k % max(width - 4, 1)
        frames[k, 2:6, x0:x0 + 4] = (255, 255, 255)
    return frames


def encode_video(path: Path, frames: np.ndarray, fps: int, start_pts: int = 0) -> None:
    """Encode RGB frames as H.264 mp4 like lerobot's encoder settings: GOP 2, yuv420p, frame k at pts k/fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"g": "2", "crf": "30", "bf": "0"}
        for k, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = start_pts + k
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ----------------------------------------------------------------------------------------- parquet
def vector_array(values: np.ndarray) -> pa.Array:
    """(n, D) -> fixed_size_list<float>[D]; (n, A, B) -> fixed_size_list<fixed_size_list<float>[B]>[A]."""
    arr: pa.Array = pa.array(np.ascontiguousarray(values).reshape(-1))
    for size in reversed(values.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, size)
    return arr


def episode_table(ep: int, length: int, fps: int, first_index: int, task_index: int,
                  action_shape: Sequence[int]) -> tuple[pa.Table, dict[str, np.ndarray]]:
    rng = np.random.default_rng(ep)
    state = rng.normal(size=(length, STATE_DIM)).astype(np.float32)
    action = rng.normal(size=(length, *action_shape)).astype(np.float32)
    frame_index = np.arange(length, dtype=np.int64)
    columns = {
        "observation.state": state,
        "action": action,
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(length, ep, dtype=np.int64),
        "index": first_index + frame_index,
        "task_index": np.full(length, task_index, dtype=np.int64),
    }
    table = pa.table({k: vector_array(v) if v.ndim > 1 else pa.array(v) for k, v in columns.items()})
    return table, columns


def numeric_stats(values: np.ndarray) -> dict:
    v = values.reshape(len(values), -1) if values.ndim == 1 else values
    v = v.astype(np.float64)
    return {"min": v.min(axis=0).tolist(), "max": v.max(axis=0).tolist(), "mean": v.mean(axis=0).tolist(),
            "std": v.std(axis=0).tolist(), "count": [len(values)]}


def image_stats(frames: np.ndarray) -> dict:
    chw = frames.transpose(0, 3, 1, 2).astype(np.float64) / 255.0  # (n, 3, H, W)

    def per_channel(fn):
        return fn(chw, axis=(0, 2, 3)).reshape(3, 1, 1).tolist()

    return {"min": per_channel(np.min), "max": per_channel(np.max), "mean": per_channel(np.mean),
            "std": per_channel(np.std), "count": [len(frames)]}


# ----------------------------------------------------------------------------------------- json helpers
def read_json(path: Path):
    return json.loads(path.read_text())


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def edit_json(path: Path, fn: Callable[[dict], None]) -> None:
    obj = read_json(path)
    fn(obj)
    write_json(path, obj)


def edit_jsonl(path: Path, fn: Callable[[list[dict]], None]) -> None:
    rows = read_jsonl(path)
    fn(rows)
    write_jsonl(path, rows)


def edit_parquet(path: Path, fn: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(fn(pq.read_table(path)), path)


def set_column(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, array)


# ----------------------------------------------------------------------------------------- the dataset
def make_v21_dataset(
    root: Path,
    *,
    lengths: Sequence[int] = (6, 9),
    fps: int = 10,
    size: tuple[int, int] = (32, 24),
    cameras: Sequence[str] = (CAMERA,),
    action_shape: Sequence[int] = (STATE_DIM,),
    chunks_size: int = 1000,
) -> Path:
    """Write a valid v2.1 dataset with ``len(lengths)`` episodes; returns ``root``."""
    width, height = size
    root = Path(root)
    joint_names = [f"joint_{i}" for i in range(STATE_DIM)]
    features: dict[str, dict] = {
        "observation.state": {"dtype": "float32", "shape": [STATE_DIM], "names": joint_names},
        "action": {"dtype": "float32", "shape": list(action_shape),
                   "names": joint_names if len(action_shape) == 1 else None},
    }
    for cam in cameras:
        features[cam] = {
            "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": height, "video.width": width, "video.codec": "h264",
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                     "video.channels": 3, "has_audio": False},
        }
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}

    episodes, episode_stats, first_index = [], [], 0
    for ep, length in enumerate(lengths):
        task_index = ep % len(TASKS)
        table, columns = episode_table(ep, length, fps, first_index, task_index, action_shape)
        path = data_file(root, ep, chunks_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        stats = {name: numeric_stats(values) for name, values in columns.items()}
        for c, cam in enumerate(cameras):
            frames = synthetic_frames(length, width, height, seed=ep * 10 + c)
            encode_video(video_file(root, ep, cam, chunks_size), frames, fps)
            stats[cam] = image_stats(frames)
        episodes.append({"episode_index": ep, "tasks": [TASKS[task_index]], "length": length})
        episode_stats.append({"episode_index": ep, "stats": stats})
        first_index += length

    n_episodes = len(lengths)
    used_tasks = sorted({ep % len(TASKS) for ep in range(n_episodes)})
    write_jsonl(root / "meta/episodes.jsonl", episodes)
    write_jsonl(root / "meta/tasks.jsonl", [{"task_index": i, "task": TASKS[i]} for i in used_tasks])
    write_jsonl(root / "meta/episodes_stats.jsonl", episode_stats)
    write_json(root / "meta/info.json", {
        "codebase_version": "v2.1",
        "robot_type": "airbot_play",
        "total_episodes": n_episodes,
        "total_frames": int(sum(lengths)),
        "total_tasks": len(used_tasks),
        "total_videos": n_episodes * len(cameras),
        "total_chunks": math.ceil(n_episodes / chunks_size),
        "chunks_size": chunks_size,
        "fps": fps,
        "splits": {"train": f"0:{n_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cameras else None,
        "features": features,
    })
    return root
