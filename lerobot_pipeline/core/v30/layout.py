"""LeRobot v3.0 layout (as lerobot 0.4.4 writes it): paths, file numbering, info.json, tasks, stats.

Episodes are concatenated into size-bounded files; ``meta/episodes/chunk-XXX/file-XXX.parquet`` says
where each episode lives: ``data/chunk_index``/``data/file_index``, ``dataset_from_index``/``to_index``
(global rows), per video key ``videos/<key>/chunk_index``/``file_index``/``from_timestamp``/
``to_timestamp`` (seconds inside that mp4), ``tasks``, ``length`` and ``stats/<feature>/<stat>``.
File numbers run ``file-000 .. file-{chunks_size-1}`` inside a chunk, then the next chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core import features as F

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_META_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
TASKS_PATH = "meta/tasks.parquet"
STATS_PATH = "meta/stats.json"
INFO_PATH = F.INFO_PATH
PROVENANCE_PATH = F.PROVENANCE_PATH  # ours, as in v2.1: which recording each episode came from
STAT_NAMES = ("min", "max", "mean", "std", "count")


@dataclass(frozen=True, order=True)
class FileId:
    chunk: int
    file: int

    def next(self, chunks_size: int) -> FileId:
        """The file after this one (lerobot's update_chunk_file_indices)."""
        if self.file == chunks_size - 1:
            return FileId(self.chunk + 1, 0)
        return FileId(self.chunk, self.file + 1)

    def data_path(self) -> str:
        return DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)

    def video_path(self, video_key: str) -> str:
        return VIDEO_PATH.format(video_key=video_key, chunk_index=self.chunk, file_index=self.file)


FIRST_FILE = FileId(0, 0)


def video_columns(video_key: str) -> tuple[str, str, str, str]:
    prefix = f"videos/{video_key}/"
    return prefix + "chunk_index", prefix + "file_index", prefix + "from_timestamp", prefix + "to_timestamp"


def build_info(
    config: PipelineConfig, video_info: dict[str, dict[str, Any]], episodes: int, frames: int, tasks: int,
) -> dict[str, Any]:
    """meta/info.json; non-video features carry ``fps`` as lerobot's v3.0 writer and converter add it."""
    features = F.build_features(config, video_info)
    for ft in features.values():
        if ft["dtype"] != "video":
            ft["fps"] = config.fps
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": config.output.robot_type,
        "total_episodes": episodes,
        "total_frames": frames,
        "total_tasks": tasks,
        "chunks_size": config.output.chunks_size,
        "data_files_size_in_mb": config.output.data_files_size_in_mb,
        "video_files_size_in_mb": config.output.video_files_size_in_mb,
        "fps": config.fps,
        "splits": {"train": f"0:{episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes lerobot's DataFrame(task_index, index=task strings)."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0",
    }
    fields: list[pa.Field[Any]] = [pa.field("task_index", pa.int64()), pa.field("__index_level_0__", pa.string())]
    schema = pa.schema(fields,
                       metadata={"pandas": json.dumps(pandas_meta)})
    return pa.table([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.string())], schema=schema)


def aggregate_stats(per_episode: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset stats from per-episode stats: count-weighted mean, pooled variance (lerobot's formula)."""
    out = {}
    keys = list(dict.fromkeys(k for s in per_episode for k in s))
    for key in keys:
        items = [s[key] for s in per_episode if key in s]
        mean = np.stack([np.asarray(s["mean"], np.float64) for s in items])
        var = np.stack([np.asarray(s["std"], np.float64) ** 2 for s in items])
        count = np.stack([np.asarray(s["count"], np.int64) for s in items])
        total = count.sum(axis=0)
        w = count.reshape(count.shape + (1,) * (mean.ndim - count.ndim))
        total_mean = (mean * w).sum(axis=0) / total
        total_var = ((var + (mean - total_mean) ** 2) * w).sum(axis=0) / total
        out[key] = {
            "min": np.min(np.stack([np.asarray(s["min"]) for s in items]), axis=0).tolist(),
            "max": np.max(np.stack([np.asarray(s["max"]) for s in items]), axis=0).tolist(),
            "mean": total_mean.tolist(), "std": np.sqrt(total_var).tolist(), "count": total.tolist(),
        }
    return out


def flat_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """``{"stats/<feature>/<stat>": value}`` columns of one episode row."""
    return {f"stats/{feature}/{name}": s[name] for feature, s in stats.items() for name in STAT_NAMES if name in s}


def episodes_table(rows: list[dict[str, Any]]) -> pa.Table:
    """meta/episodes rows (dicts with the same keys) as one table; lists stay nested lists."""
    columns = list(rows[0])
    return pa.table({c: pa.array([r[c] for r in rows]) for c in columns})
