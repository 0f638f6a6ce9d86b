"""The joint half of a synthetic episode: one parquet per arm and the arms' metadata.

Smooth sum-of-sines trajectories per master, each slave following its master 20–40 ms late, every arm
on its own ~250 Hz clock with ±0.3 ms jitter, short NaN runs in the masters' used columns (see the
package docstring of :mod:`lerobot_pipeline.sample_data`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import ArmConfig, PipelineConfig
from lerobot_pipeline.core.fsutil import atomic_path

#: Joint names of one airbot_play arm, in the real column order; each has pos, vel and effort.
RAW_JOINT_NAMES = (
    "joint1", "joint2", "joint3", "joint4", "joint5", "joint6",
    "eef_gripper_joint", "gripper_mapping_controller",
)
RAW_QUANTITIES = ("pos", "vel", "effort")
#: Columns that are NaN in every row of a master arm in the real recordings.
MASTER_ALL_NAN_COLUMNS = ("gripper_mapping_controller_vel", "gripper_mapping_controller_effort")
#: Rest pose (rad; metres for the two gripper joints) the trajectories oscillate around.
REST_POSE = (0.2, -0.95, 1.55, 0.0, 0.6, 0.0, 0.035, 0.037)
#: Total oscillation amplitude per joint (the gripper stays within 0.005..0.065 m).
MOTION_AMPLITUDE = (0.35, 0.25, 0.3, 0.4, 0.35, 0.6, 0.03, 0.03)
SINES_PER_JOINT = 3
MOTION_FREQ_HZ = (0.05, 0.6)

JOINT_JITTER_NS = 300_000  # ±0.3 ms per joint sample
ARM_START_SPREAD_NS = 8_000_000  # each arm's first sample 0–8 ms after the trigger
ARM_STOP_SPREAD_NS = 8_000_000  # and its last one 0–8 ms before the trigger end
ARM_RATE_SPREAD = 0.002  # relative rate difference between arm clocks (±0.2 %)
TRIGGER_END_DELAY_NS = (1_000_000, 5_000_000)  # trigger end after the last joint sample
SLAVE_DELAY_MS = (20.0, 40.0)
POS_NOISE, VEL_NOISE, EFFORT_NOISE = 2e-4, 3e-3, 1e-2
NAN_RUN_LENGTHS = (1, 2, 3, 4)  # master NaN runs are this many consecutive rows


def joint_columns(cfg: PipelineConfig) -> list[str]:
    """Column names of a generated arm parquet, in the real order (26 for the default config).

    Used joint columns of ``cfg`` that are not among the real airbot_play columns are appended.
    """
    values = [f"{j}_{q}" for j in RAW_JOINT_NAMES for q in RAW_QUANTITIES]
    values += [c for c in cfg.robot.joint_columns if c not in values]
    return [cfg.robot.timestamp_sec_column, cfg.robot.timestamp_nanosec_column, *values]


@dataclass(frozen=True)
class _Motion:
    """A smooth multi-joint trajectory: per joint, a rest value plus a sum of sines."""

    offset: np.ndarray  # (J,)
    amp: np.ndarray  # (J, K)
    freq: np.ndarray  # (J, K) Hz
    phase: np.ndarray  # (J, K)

    @classmethod
    def random(cls, rng: np.random.Generator, n_joints: int) -> _Motion:
        rest = np.array([REST_POSE[j % len(REST_POSE)] for j in range(n_joints)])
        total = np.array([MOTION_AMPLITUDE[j % len(MOTION_AMPLITUDE)] for j in range(n_joints)])
        weights = rng.dirichlet(np.ones(SINES_PER_JOINT), size=n_joints)
        return cls(
            offset=rest,
            amp=weights * total[:, None],
            freq=rng.uniform(*MOTION_FREQ_HZ, size=(n_joints, SINES_PER_JOINT)),
            phase=rng.uniform(0, 2 * np.pi, size=(n_joints, SINES_PER_JOINT)),
        )

    def evaluate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities, both (len(t), J), at times ``t`` (seconds)."""
        arg = 2 * np.pi * self.freq[None] * t[:, None, None] + self.phase[None]  # (N, J, K)
        pos = self.offset + np.sum(self.amp * np.sin(arg), axis=2)
        vel = np.sum(self.amp * 2 * np.pi * self.freq * np.cos(arg), axis=2)
        return pos, vel


def _master_of(cfg: PipelineConfig) -> dict[str, str]:
    """Pair every arm with the master whose motion it shows (a master with itself).

    A slave follows the master of the same name with ``slave`` replaced by ``master``
    (``left_slave`` → ``left_master``), else the master at the same position among masters.
    """
    masters = [a.name for a in cfg.robot.arms_by_role("master")]
    slaves = [a.name for a in cfg.robot.arms_by_role("slave")]
    pairs = {m: m for m in masters}
    for i, s in enumerate(slaves):
        twin = s.replace("slave", "master")
        pairs[s] = twin if twin in masters else masters[i % len(masters)]
    return pairs


def write_arms(
    joints_dir: Path, cfg: PipelineConfig, rng: np.random.Generator,
    trigger_start: int, duration_ns: int, joint_hz: float, nan_rate: float,
) -> tuple[dict[str, tuple[dict, float]], int]:
    """Write one parquet per arm; return ``{arm: (metadata, nan_ratio)}`` and the last sample time."""
    columns = joint_columns(cfg)
    value_columns = columns[2:]
    motion_joints = [c[: -len("_pos")] for c in value_columns if c.endswith("_pos")]
    extra = [c for c in value_columns if not c.endswith(("_pos", "_vel", "_effort"))]
    master_of = _master_of(cfg)
    motions = {a.name: _Motion.random(rng, len(motion_joints) + len(extra)) for a in cfg.robot.arms_by_role("master")}
    schema = pa.schema([pa.field(c, pa.int64() if i < 2 else pa.float64()) for i, c in enumerate(columns)])

    arm_meta: dict[str, tuple[dict, float]] = {}
    last_ns = trigger_start
    for arm in cfg.robot.arms:
        stamps = _arm_timestamps(rng, trigger_start, duration_ns, joint_hz)
        last_ns = max(last_ns, int(stamps[-1]))
        data = _arm_values(rng, arm, motions[master_of[arm.name]], stamps, trigger_start,
                           motion_joints, extra, value_columns)
        if arm.role == "master":
            _add_master_nans(rng, data, cfg.robot.joint_columns, nan_rate)
        arrays = {
            columns[0]: (stamps // 1_000_000_000).astype(np.int64),
            columns[1]: (stamps % 1_000_000_000).astype(np.int64),
            **data,
        }
        table = pa.table({c: arrays[c] for c in columns}, schema=schema)
        with atomic_path(joints_dir / arm.file) as tmp:
            pq.write_table(table, tmp)
        nan_cells = sum(int(np.isnan(v).sum()) for v in data.values())
        nan_percent = 100.0 * nan_cells / (len(stamps) * len(columns))
        arm_meta[arm.name] = (_arm_metadata(rng, arm, stamps, motion_joints), nan_percent)
    return arm_meta, last_ns


def _arm_timestamps(rng: np.random.Generator, trigger_start: int, duration_ns: int, joint_hz: float) -> np.ndarray:
    """One arm's sample times (int64 ns): its own start, stop and rate, ±0.3 ms jitter."""
    period = 1e9 / (joint_hz * (1 + rng.uniform(-ARM_RATE_SPREAD, ARM_RATE_SPREAD)))
    start_offset = int(rng.integers(0, ARM_START_SPREAD_NS))
    span = duration_ns - int(rng.integers(0, ARM_STOP_SPREAD_NS)) - start_offset
    n = max(1, int(span // period) + 1)
    jitter = min(JOINT_JITTER_NS, period / 4)
    # offsets stay small floats (exact to the ns); absolute ns do not fit a float64 exactly
    offsets = np.arange(n) * period + rng.uniform(-jitter, jitter, size=n)
    offsets[0] = 0.0
    return trigger_start + start_offset + np.round(offsets).astype(np.int64)


def _arm_values(
    rng: np.random.Generator, arm: ArmConfig, motion: _Motion, stamps: np.ndarray, trigger_start: int,
    motion_joints: list[str], extra: list[str], value_columns: list[str],
) -> dict[str, np.ndarray]:
    """Float64 value columns of one arm: the master's motion, late by 20–40 ms on a slave."""
    t = (stamps - trigger_start) / 1e9
    if arm.role == "slave":
        t = t - rng.uniform(*SLAVE_DELAY_MS) / 1e3
    pos, vel = motion.evaluate(t)
    n = len(stamps)
    effort_gain = 3.0 if arm.role == "slave" else 0.5  # slaves carry the load
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(motion_joints):
        p = pos[:, j] + rng.normal(0, POS_NOISE, n)
        out[f"{name}_pos"] = p
        out[f"{name}_vel"] = vel[:, j] + rng.normal(0, VEL_NOISE, n)
        out[f"{name}_effort"] = effort_gain * (p - motion.offset[j]) + rng.normal(0, EFFORT_NOISE, n)
    for k, name in enumerate(extra):
        out[name] = pos[:, len(motion_joints) + k] + rng.normal(0, POS_NOISE, n)
    return {c: out[c].astype(np.float64) for c in value_columns}


def _add_master_nans(
    rng: np.random.Generator, data: dict[str, np.ndarray], used_columns: Iterable[str], nan_rate: float,
) -> None:
    """Blank the used columns in short runs covering ~``nan_rate`` of the rows (never the first
    or last row), and the always-empty gripper_mapping_controller vel/effort columns."""
    for c in MASTER_ALL_NAN_COLUMNS:
        if c in data:
            data[c][:] = np.nan
    n = len(next(iter(data.values())))
    target = int(round(nan_rate * n))
    if n < 3 or target == 0:
        return
    rows = np.zeros(n, dtype=bool)
    for _ in range(10 * target):  # bounded: each run adds at least one row in the common case
        if rows.sum() >= target:
            break
        start = int(rng.integers(1, n - 1))
        length = int(rng.choice(NAN_RUN_LENGTHS))
        rows[start: min(start + length, n - 1)] = True
    for c in used_columns:
        data[c][rows] = np.nan


def _arm_metadata(rng: np.random.Generator, arm: ArmConfig, stamps: np.ndarray, motion_joints: list[str]) -> dict:
    namespace = f"PZ51C0252{int(rng.integers(0, 10**7)):07d}"
    span = (int(stamps[-1]) - int(stamps[0])) / 1e9
    return {
        "namespace": namespace,
        "topic": f"/{namespace}/joint_states",
        "total_frames": int(len(stamps)),
        "first_msg_time": ros_time(int(stamps[0])),
        "last_msg_time": ros_time(int(stamps[-1])),
        "avg_frequency_hz": len(stamps) / span if span > 0 else 0.0,
        "file": arm.file,
        "joints_detected": sorted(motion_joints),
    }


def validation_block(arm_meta: dict[str, tuple[dict, float]]) -> dict:
    counts = [meta["total_frames"] for meta, _ in arm_meta.values()]
    warnings = [f"{name}: High NaN ratio ({ratio:.2f}%)" for name, (_, ratio) in arm_meta.items() if ratio > 5.0]
    return {
        "status": "passed",
        "timestamp_monotonic": True,
        "max_frame_count_diff": int(max(counts) - min(counts)),
        "warnings": warnings,
    }


def ros_time(ns: int) -> dict:
    """A time in ns as the ``{"sec", "nanosec"}`` pair of the joint metadata."""
    return {"sec": int(ns) // 1_000_000_000, "nanosec": int(ns) % 1_000_000_000}

