"""LeRobot v2.1 schema and layout: feature definitions, path templates, chunk arithmetic.

Every path inside a dataset is spelled here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from lerobot_pipeline.config import PipelineConfig

CODEBASE_VERSION = "v2.1"
INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
PROVENANCE_PATH = "meta/provenance.jsonl"  # ours: which recording each episode came from
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

STATE_SLAVE = "observation.state.slave"
STATE_MASTER = "observation.state.master"
ACTION = "action"
CAPTURE_TIME = "capture_time_ns"  # provenance: real capture time of each frame (base camera)
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def video_key(camera: str) -> str:
    return f"observation.images.{camera}"


def episode_chunk(episode_index: int, chunks_size: int) -> int:
    return episode_index // chunks_size


def data_file(episode_index: int, chunks_size: int) -> str:
    return DATA_PATH.format(episode_chunk=episode_chunk(episode_index, chunks_size), episode_index=episode_index)


def video_file(episode_index: int, camera: str, chunks_size: int) -> str:
    return VIDEO_PATH.format(
        episode_chunk=episode_chunk(episode_index, chunks_size), video_key=video_key(camera),
        episode_index=episode_index,
    )


def joint_names(config: PipelineConfig, role: str) -> list[str]:
    return [f"{arm.name}.{col}" for arm in config.robot.arms_by_role(role) for col in config.robot.joint_columns]


def action_shape(config: PipelineConfig) -> list[int]:
    dim = len(joint_names(config, "master"))
    if config.alignment.strategy == "chunking":
        return [config.alignment.chunk_size, dim]
    return [dim]


def build_features(config: PipelineConfig, video_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """info.json ``features`` for this config; ``video_info[camera]`` comes from the encoded files."""
    slave, master = joint_names(config, "slave"), joint_names(config, "master")
    a_shape = action_shape(config)
    features: dict[str, Any] = {
        STATE_SLAVE: {"dtype": "float32", "shape": [len(slave)], "names": slave},
        STATE_MASTER: {"dtype": "float32", "shape": [len(master)], "names": master},
        ACTION: {"dtype": "float32", "shape": a_shape, "names": master if len(a_shape) == 1 else None},
        CAPTURE_TIME: {"dtype": "int64", "shape": [1], "names": None},
    }
    for cam in config.cameras:
        info = video_info[cam.name]
        features[video_key(cam.name)] = {
            "dtype": "video",
            "shape": [info["video.height"], info["video.width"], 3],
            "names": ["height", "width", "channels"],
            "info": info,
        }
    features.update(json.loads(json.dumps(DEFAULT_FEATURES)))
    return features


def parquet_schema(config: PipelineConfig) -> pa.Schema:
    """Arrow schema of an episode parquet file, with the 🤗 datasets feature metadata LeRobot writes."""
    slave, master = len(joint_names(config, "slave")), len(joint_names(config, "master"))
    a_shape = action_shape(config)
    f32 = pa.float32()
    action_type = pa.list_(f32, a_shape[0]) if len(a_shape) == 1 else pa.list_(pa.list_(f32))
    fields = [
        pa.field(STATE_SLAVE, pa.list_(f32, slave)),
        pa.field(STATE_MASTER, pa.list_(f32, master)),
        pa.field(ACTION, action_type),
        pa.field(CAPTURE_TIME, pa.int64()),
        pa.field("timestamp", f32),
        pa.field("frame_index", pa.int64()),
        pa.field("episode_index", pa.int64()),
        pa.field("index", pa.int64()),
        pa.field("task_index", pa.int64()),
    ]

    def seq(n: int) -> dict[str, Any]:
        return {"feature": {"dtype": "float32", "_type": "Value"}, "length": n, "_type": "Sequence"}

    hf = {
        STATE_SLAVE: seq(slave),
        STATE_MASTER: seq(master),
        ACTION: seq(a_shape[0]) if len(a_shape) == 1 else {"shape": a_shape, "dtype": "float32", "_type": "Array2D"},
        CAPTURE_TIME: {"dtype": "int64", "_type": "Value"},
        "timestamp": {"dtype": "float32", "_type": "Value"},
        **{k: {"dtype": "int64", "_type": "Value"} for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": hf}})})

