"""Checks on one converted recording before it may enter a dataset (Dagster's blocking check)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core.arrow import flatten_lists, is_list_type, read_parquet, to_numpy
from lerobot_pipeline.core.episode_writer import StagedPart
from lerobot_pipeline.core.video import probe_video


@dataclass(frozen=True)
class EpisodeCheck:
    problems: list[str] = field(default_factory=list)
    video_frames: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems


def _float_leaves(column: pa.ChunkedArray[Any]) -> Iterator[np.ndarray]:
    """The innermost float values of a (possibly nested list) column, chunk by chunk."""
    for chunk in column.chunks:
        while is_list_type(chunk.type):
            chunk = flatten_lists(chunk)
        if pa.types.is_floating(chunk.type):
            yield to_numpy(chunk)


def check_parts(parts: list[StagedPart], config: PipelineConfig) -> EpisodeCheck:
    """Video frames = rows for every camera, timestamp = i/fps, no NaN, alignment within tolerance."""
    problems: list[str] = []
    frames: dict[str, int] = {}
    for p in parts:
        where = p.uid
        try:
            table = read_parquet(p.parquet)
        except Exception as e:  # noqa: BLE001 - any unreadable file is a finding, not a crash
            problems.append(f"{where}: parquet unreadable ({e})")
            continue
        n = table.num_rows
        if n != p.length:
            problems.append(f"{where}: parquet has {n} rows, manifest says {p.length}")
        ts = to_numpy(table.column("timestamp"))
        expected = (np.arange(n) / config.fps).astype(np.float32)
        if not np.array_equal(ts, expected):
            problems.append(f"{where}: timestamp differs from frame_index/fps at row {int(np.argmax(ts != expected))}")
        for name in table.column_names:
            if not all(np.isfinite(v).all() for v in _float_leaves(table.column(name))):
                problems.append(f"{where}: column {name} has NaN or inf")
        for cam in config.cameras:
            try:
                count = probe_video(p.video(cam.name)).frames
            except Exception as e:  # noqa: BLE001
                problems.append(f"{where}: video {cam.name} unreadable ({e})")
                continue
            frames[f"{where}/{cam.name}"] = count
            if count != n:
                problems.append(f"{where}: video {cam.name} has {count} frames for {n} rows")
        r = p.report
        if not r.filled_frames:
            for cam_name, err in r.camera_error_ms.items():
                if err and err.max_ms > config.sync.tolerance_ms:
                    problems.append(f"{where}: camera {cam_name} max error {err.max_ms} ms > sync.tolerance_ms")
            if config.alignment.strategy in ("nearest", "chunking"):  # chunking: the state, like nearest
                for arm, err in r.arm_error_ms.items():
                    if err.max_ms > config.alignment.tolerance_ms:
                        problems.append(f"{where}: arm {arm} max error {err.max_ms} ms > alignment.tolerance_ms")
    return EpisodeCheck(problems, frames)
