"""What one conversion did, in numbers a person can check: frames, fills, drops, errors, utilisation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ErrorStats:
    """Alignment error of one camera or arm over the output frames, in milliseconds."""

    mean_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, err_ms: np.ndarray) -> ErrorStats | None:
        e = err_ms[np.isfinite(err_ms)]
        if len(e) == 0:
            return None
        return cls(round(float(e.mean()), 3), round(float(np.percentile(e, 95)), 3), round(float(e.max()), 3))


@dataclass(frozen=True)
class PartReport:
    """One LeRobot episode made from (part of) one recording."""

    episode_key: str
    source: str
    episode_id: str
    task: str
    strategy: str
    config_digest: str
    part: int
    n_parts: int
    fps: int
    frames_in: int  # base-camera frames in the whole recording
    frames_out: int  # rows of this part
    start_frame: int  # first base-camera frame of this part
    capture_start_ns: int
    capture_end_ns: int
    trimmed_start: int  # whole recording: invalid frames cut at the start
    trimmed_end: int
    dropped_gaps: int  # whole recording: invalid frames removed by gap_policy=split
    dropped_short: int  # whole recording: frames of too-short pieces
    filled_frames: list[int]  # frame indices (in this part) kept under gap_policy=fill
    filled_by: dict[str, int]  # camera/arm name -> frames of this part it had no valid partner for
    camera_error_ms: dict[str, ErrorStats | None]
    arm_error_ms: dict[str, ErrorStats]
    utilisation: dict[str, float]  # per arm: share of samples used by the whole recording's output
    utilisation_total: float
    nan_filled: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # chunking, per master arm: hist[k] = frames of this part whose action chunk has k padded steps
    padded_steps: dict[str, list[int]] = field(default_factory=dict)
    bad_images: dict[str, dict[str, str]] = field(default_factory=dict)  # camera -> {file: reason}, whole recording
    long_gaps: int = 0  # whole recording: gaps longer than sync.max_fill_ms, cut (or the episode refused)

    @property
    def padded_frames(self) -> int:
        """Frames with at least one padded chunk step (the largest count among the master arms)."""
        return max((sum(h[1:]) for h in self.padded_steps.values()), default=0)

    @property
    def bad_image_count(self) -> int:
        return sum(len(files) for files in self.bad_images.values())

    @property
    def uid(self) -> str:
        return f"{self.episode_key}#{self.part}"

    @property
    def duration_s(self) -> float:
        return self.frames_out / self.fps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartReport:
        d = dict(d)  # fields added later (padded_steps, bad_images, long_gaps) default when absent
        d["camera_error_ms"] = {k: ErrorStats(**v) if v else None for k, v in d["camera_error_ms"].items()}
        d["arm_error_ms"] = {k: ErrorStats(**v) for k, v in d["arm_error_ms"].items()}
        return cls(**d)

    def summary_line(self) -> str:
        part = f" part {self.part + 1}/{self.n_parts}" if self.n_parts > 1 else ""
        return (
            f"{self.episode_key}{part}: {self.frames_out} frames ({self.duration_s:.1f} s), "
            f"filled {len(self.filled_frames)}, trimmed {self.trimmed_start}+{self.trimmed_end}, "
            f"utilisation {self.utilisation_total:.0%}"
        )
