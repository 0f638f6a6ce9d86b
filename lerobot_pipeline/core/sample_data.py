"""Synthetic airbot_play recordings in the exact raw layout, for tests, the demo and benchmarks.

The generated episodes copy the real recordings (see ``docs/domain.md`` §2 and the fixture
``airbot_real``) closely enough to exercise every quirk the converter must handle:

* one joint parquet per configured arm, 26 columns in the real order (``timestamp_sec``,
  ``timestamp_nanosec`` as int64, then ``<joint>_{pos,vel,effort}`` as float64), ~250 Hz with
  ±0.3 ms jitter, every arm on its own clock (start offset, slightly different rate), arms starting
  and stopping a few ms apart, joints stopping before the cameras;
* smooth per-joint trajectories (sums of sines); each slave follows its master 20–40 ms late;
* masters have short runs of NaN in the used joint columns (``nan_rate`` of the rows) and
  ``gripper_mapping_controller_vel/effort`` entirely NaN;
* cameras at 25/25/30 Hz (base/sync/downsample) with ±``jitter_ms`` jitter, starting up to ~150 ms
  apart, with dropped frames in bursts of 1–3 (a burst of 2–3 at 30 Hz is the 100–130 ms gap of the
  real ``cam_head``);
* JPEG frames named ``<capture time ns>.jpg`` whose content moves with the capture time and differs
  per camera (see :func:`render_frame`), so that video tests can tell frames apart;
* both ``metadata.json`` files with the real keys, including the recording machine's absolute
  ``image_path``/``data_path`` that a converter must ignore.

Every file is written atomically, images one at a time (bounded memory), and the two
``metadata.json`` files last: a complete ``metadata.json`` means a complete episode.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import ArmConfig, PipelineConfig
from lerobot_pipeline.core.fsutil import atomic_path, write_json_atomic
from lerobot_pipeline.errors import InvalidIdError
from lerobot_pipeline.ids import TASK_DIR_RE, validate_episode_id, validate_source

# ----------------------------------------------------------------------------- defaults

DEFAULT_TASK = "pick_place"
DEFAULT_SECONDS = 5.0
DEFAULT_SIZE = (224, 224)  # (width, height), as in the current rigs
DEFAULT_SEED = 0
DEFAULT_EPISODES = 3
DEFAULT_JOINT_HZ = 250.0
DEFAULT_DROP_RATE = 0.02
DEFAULT_JITTER_MS = 2.0
DEFAULT_NAN_RATE = 0.05
#: Capture rate of a camera by its role when ``camera_fps`` does not name it.
DEFAULT_FPS_BY_ROLE = {"base": 25.0, "sync": 25.0, "downsample": 30.0}
#: Trigger time of generated episodes when none is given: 2025-11-26, like the real fixture.
DEFAULT_START_NS = 1_764_143_235_000_000_000
#: Idle time between two consecutive episodes of :func:`generate_dataset`.
EPISODE_GAP_SEC = 10.0
#: Start offset between the timelines of two sources of :func:`generate_dataset`.
SOURCE_OFFSET_NS = 500_000_000
JPEG_QUALITY = 90

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

CAMERA_START_OFFSET_MS = (-12.0, 150.0)  # first frame relative to the trigger start
CAMERA_STOP_AFTER_JOINTS_MS = (40.0, 80.0)  # cameras keep running after the joints stop
DROP_BURST_LENGTHS = (1, 2, 3)  # consecutive frames lost per drop event
DROP_BURST_WEIGHTS = (0.5, 0.3, 0.2)
MAX_DROP_GAP_MS = 140.0  # the longest real stall seen (cam_head) is ~131 ms

#: Fake recording-machine root written into images/metadata.json (converters must ignore it).
RECORDER_DATA_ROOT = "/home/recorder/data"
METADATA_FILE = "metadata.json"
TIME_FORMAT = "%Y%m%d_%H%M%S"
#: BGR tint per camera position in ``config.cameras`` (cycled when there are more cameras).
CAMERA_TINTS = ((40, 40, 200), (40, 180, 40), (200, 60, 40), (0, 200, 220), (200, 0, 200), (200, 200, 0))


# ----------------------------------------------------------------------------- public API


def generate_episode(
    root: Path,
    episode_id: str,
    *,
    task: str = DEFAULT_TASK,
    seconds: float = DEFAULT_SECONDS,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    config: PipelineConfig | None = None,
    camera_fps: dict[str, float] | None = None,
    drop_rate: float = DEFAULT_DROP_RATE,
    jitter_ms: float = DEFAULT_JITTER_MS,
    nan_rate: float = DEFAULT_NAN_RATE,
    missing_cameras: tuple[str, ...] = (),
    joint_hz: float = DEFAULT_JOINT_HZ,
    start_ns: int | None = None,
) -> Path:
    """Write one synthetic raw episode under the raw root ``root`` and return its joints directory.

    Layout: ``root/joints/<task>/<episode_id>/{<arm.file>..., metadata.json}`` and
    ``root/images/<task>/<episode_id>/{<camera>/<timestamp_ns>.jpg..., metadata.json}``.

    ``seconds`` is the trigger duration; ``size`` is (width, height) of the JPEG frames;
    ``camera_fps`` overrides the capture rate of named cameras (default by role:
    :data:`DEFAULT_FPS_BY_ROLE`); ``drop_rate`` is the share of camera frames lost (in bursts);
    ``jitter_ms`` the uniform jitter of camera timestamps; ``nan_rate`` the share of master rows
    with NaN in the used joint columns (``config.robot.joint_columns``); ``missing_cameras`` are
    neither written nor listed in the metadata; ``start_ns`` is the trigger start time (default
    :data:`DEFAULT_START_NS`). The same arguments always produce the same files.

    Raises :class:`InvalidIdError` for a bad episode id or task name, :class:`FileExistsError` when
    the episode already exists under ``root``, and :class:`ValueError` for impossible parameters.
    """
    cfg = config or PipelineConfig()
    validate_episode_id(episode_id)
    _validate_task(task)
    width, height = _check_params(seconds, size, drop_rate, jitter_ms, nan_rate, joint_hz)
    fps_by_camera = _camera_rates(cfg, camera_fps or {})
    unknown = sorted(set(missing_cameras) - set(fps_by_camera))
    if unknown:
        raise ValueError(f"missing_cameras names unknown cameras {unknown}; configured: {sorted(fps_by_camera)}")

    root = Path(root)
    joints_dir = root / "joints" / task / episode_id
    images_dir = root / "images" / task / episode_id
    for d in (joints_dir, images_dir):
        if d.exists() and any(d.iterdir()):
            raise FileExistsError(f"episode directory {d} already exists and is not empty")

    trigger_start = DEFAULT_START_NS if start_ns is None else int(start_ns)
    duration_ns = int(round(seconds * 1e9))
    joint_rng = np.random.default_rng([seed, 0])
    camera_rng = np.random.default_rng([seed, 1])

    arm_meta, last_joint_ns = _write_arms(joints_dir, cfg, joint_rng, trigger_start, duration_ns, joint_hz, nan_rate)
    trigger_end = last_joint_ns + int(joint_rng.integers(*TRIGGER_END_DELAY_NS))

    cameras = [c for c in cfg.cameras if c.name not in missing_cameras]
    camera_meta: dict[str, dict] = {}
    for cam in cameras:
        cam_index = [c.name for c in cfg.cameras].index(cam.name)
        stamps = _camera_timestamps(
            camera_rng, trigger_start, trigger_end, fps_by_camera[cam.name], jitter_ms, drop_rate
        )
        _write_frames(images_dir / cam.name, stamps, cam_index, trigger_start, (width, height))
        camera_meta[cam.name] = {"frame_count": int(len(stamps)), "timestamps": [int(t) for t in stamps]}

    last_image_ns = max((m["timestamps"][-1] for m in camera_meta.values()), default=trigger_end)
    images_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(images_dir / METADATA_FILE, {
        "start_time": _wall_clock(trigger_start),
        "episode_id": episode_id,
        "image_path": f"{RECORDER_DATA_ROOT}/images/{task}/{episode_id}",
        "data_path": f"{RECORDER_DATA_ROOT}/joints/{task}/{episode_id}",
        "cameras": camera_meta,
        "end_time": _wall_clock(last_image_ns),
    })
    write_json_atomic(joints_dir / METADATA_FILE, {
        "episode_id": episode_id,
        "trigger_start_time": _ros_time(trigger_start),
        "trigger_end_time": _ros_time(trigger_end),
        "duration_sec": (trigger_end - trigger_start) / 1e9,
        "arms": {name: meta for name, (meta, _) in arm_meta.items()},
        "validation": _validation_block(arm_meta),
    })
    return joints_dir


def generate_dataset(
    root: Path,
    *,
    episodes: int = DEFAULT_EPISODES,
    seconds: float = DEFAULT_SECONDS,
    size: tuple[int, int] = DEFAULT_SIZE,
    sources: list[str] | None = None,
    seed: int = DEFAULT_SEED,
    task: str = DEFAULT_TASK,
    config: PipelineConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``episodes`` episodes (``episode_0000``, ``episode_0001``, ...) and return their joint dirs.

    Without ``sources`` the episodes go directly under the raw root ``root``; with sources each one
    gets its own raw root ``root/<source>/`` holding the same episode ids (same ids on two rigs are
    two different episodes). Every episode has its own seed derived deterministically from ``seed``,
    the source's position and the episode's index; episodes follow each other in time, and sources
    record in parallel. ``progress(done, total)`` is called after each episode.
    """
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    roots: list[Path]
    if sources is None:
        roots = [Path(root)]
    else:
        if len(set(sources)) != len(sources):
            raise ValueError(f"sources must be unique, got {sources}")
        roots = [Path(root) / validate_source(s) for s in sources]
    spacing_ns = int(round((seconds + EPISODE_GAP_SEC) * 1e9))
    total = len(roots) * episodes
    done = 0
    out: list[Path] = []
    for source_index, source_root in enumerate(roots):
        for i in range(episodes):
            out.append(generate_episode(
                source_root,
                f"episode_{i:04d}",
                task=task,
                seconds=seconds,
                size=size,
                seed=episode_seed(seed, source_index, i),
                config=config,
                start_ns=DEFAULT_START_NS + i * spacing_ns + source_index * SOURCE_OFFSET_NS,
            ))
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def episode_seed(seed: int, source_index: int, episode_index: int) -> int:
    """The seed :func:`generate_dataset` gives episode ``episode_index`` of source ``source_index``."""
    return int(np.random.SeedSequence([seed, source_index, episode_index]).generate_state(1)[0])


def render_frame(camera_index: int, frame_index: int, t_sec: float, size: tuple[int, int]) -> np.ndarray:
    """The BGR image camera number ``camera_index`` captures ``t_sec`` seconds after the trigger.

    A gradient background tinted per camera, a filled circle whose position is a function of
    ``t_sec`` (and of the camera), and ``frame_index`` (the frame's position in the camera's
    file list) drawn as large text. Tests may call it to predict what a decoded frame should show.
    """
    width, height = size
    img = _background(camera_index, width, height).copy()
    cx, cy = circle_center(camera_index, t_sec, size)
    radius = max(3, min(width, height) // 8)
    cv2.circle(img, (cx, cy), radius, (255, 255, 255), thickness=-1, lineType=cv2.LINE_AA)
    cv2.circle(img, (cx, cy), max(1, radius // 2), (0, 0, 0), thickness=-1, lineType=cv2.LINE_AA)
    scale = min(width, height) / 100.0
    thickness = max(1, int(round(scale * 2)))
    cv2.putText(img, str(frame_index), (max(2, width // 20), height - max(4, height // 12)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return img


def circle_center(camera_index: int, t_sec: float, size: tuple[int, int]) -> tuple[int, int]:
    """Pixel centre (x, y) of the moving circle of :func:`render_frame` at ``t_sec``."""
    width, height = size
    phase = 2.1 * camera_index
    x = width * (0.5 + 0.3 * math.cos(2 * math.pi * 0.4 * t_sec + phase))
    y = height * (0.45 + 0.25 * math.sin(2 * math.pi * 0.65 * t_sec + phase))
    return int(round(x)), int(round(y))


# ----------------------------------------------------------------------------- parameters


def _validate_task(task: str) -> None:
    if not isinstance(task, str) or not TASK_DIR_RE.match(task) or ".." in task:
        raise InvalidIdError(f"invalid task name {task!r}: use letters, digits, '_', '-' or '.'")


def _check_params(seconds, size, drop_rate, jitter_ms, nan_rate, joint_hz) -> tuple[int, int]:
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if len(size) != 2 or any(int(v) != v or v < 16 for v in size):
        raise ValueError(f"size must be (width, height) with integers >= 16, got {size}")
    if not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be within [0, 1), got {drop_rate}")
    if not 0 <= nan_rate < 1:
        raise ValueError(f"nan_rate must be within [0, 1), got {nan_rate}")
    if jitter_ms < 0:
        raise ValueError(f"jitter_ms must be >= 0, got {jitter_ms}")
    if not joint_hz > 0:
        raise ValueError(f"joint_hz must be > 0, got {joint_hz}")
    return int(size[0]), int(size[1])


def _camera_rates(cfg: PipelineConfig, overrides: dict[str, float]) -> dict[str, float]:
    """Capture rate per configured camera: ``overrides`` first, else by role."""
    names = [c.name for c in cfg.cameras]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"camera_fps names unknown cameras {unknown}; configured: {names}")
    rates = {c.name: float(overrides.get(c.name, DEFAULT_FPS_BY_ROLE[c.role])) for c in cfg.cameras}
    bad = {n: r for n, r in rates.items() if not r > 0}
    if bad:
        raise ValueError(f"camera rates must be > 0, got {bad}")
    return rates


# ----------------------------------------------------------------------------- joints


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
    def random(cls, rng: np.random.Generator, n_joints: int) -> "_Motion":
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


def _write_arms(
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
        arm_meta[arm.name] = (_arm_metadata(rng, arm, stamps, motion_joints), 100.0 * nan_cells / (len(stamps) * len(columns)))
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
        "first_msg_time": _ros_time(int(stamps[0])),
        "last_msg_time": _ros_time(int(stamps[-1])),
        "avg_frequency_hz": len(stamps) / span if span > 0 else 0.0,
        "file": arm.file,
        "joints_detected": sorted(motion_joints),
    }


def _validation_block(arm_meta: dict[str, tuple[dict, float]]) -> dict:
    counts = [meta["total_frames"] for meta, _ in arm_meta.values()]
    warnings = [f"{name}: High NaN ratio ({ratio:.2f}%)" for name, (_, ratio) in arm_meta.items() if ratio > 5.0]
    return {
        "status": "passed",
        "timestamp_monotonic": True,
        "max_frame_count_diff": int(max(counts) - min(counts)),
        "warnings": warnings,
    }


# ----------------------------------------------------------------------------- cameras


def _camera_timestamps(
    rng: np.random.Generator, trigger_start: int, joints_end: int, fps: float, jitter_ms: float, drop_rate: float,
) -> np.ndarray:
    """Capture times (int64 ns, strictly ascending) of one camera, with jitter and dropped bursts."""
    period = 1e9 / fps
    first = trigger_start + int(rng.uniform(*CAMERA_START_OFFSET_MS) * 1e6)
    last = joints_end + int(rng.uniform(*CAMERA_STOP_AFTER_JOINTS_MS) * 1e6)
    n = max(1, int((last - first) // period) + 1)
    jitter = min(jitter_ms * 1e6, period * 0.45)  # never reorders frames
    offsets = np.arange(n) * period + rng.uniform(-jitter, jitter, size=n)
    keep = np.ones(n, dtype=bool)
    lengths, weights = _drop_bursts(period)
    if lengths:
        mean_burst = float(np.dot(lengths, weights))
        next_allowed = 0  # a kept frame separates two bursts, so gaps never merge
        for start in np.flatnonzero(rng.random(n) < drop_rate / mean_burst):
            length = int(rng.choice(lengths, p=weights))
            if start >= next_allowed:
                keep[start: start + length] = False
                next_allowed = start + length + 1
    keep[0] = keep[-1] = True  # the camera's extent stays what it recorded
    return first + np.round(offsets[keep]).astype(np.int64)


def _drop_bursts(period_ns: float) -> tuple[list[int], list[float]]:
    """Burst lengths (and their weights) whose gap stays within :data:`MAX_DROP_GAP_MS`.

    At 30 Hz bursts of 1, 2 and 3 frames give gaps of ~67, 100 and 133 ms; at 25 Hz only 1 and 2.
    """
    allowed = [(n, w) for n, w in zip(DROP_BURST_LENGTHS, DROP_BURST_WEIGHTS)
               if (n + 1) * period_ns <= MAX_DROP_GAP_MS * 1e6]
    total = sum(w for _, w in allowed)
    return [n for n, _ in allowed], [w / total for _, w in allowed]


def _write_frames(cam_dir: Path, stamps: np.ndarray, camera_index: int, trigger_start: int, size: tuple[int, int]) -> None:
    """Render, encode and atomically write one JPEG per timestamp, one at a time."""
    cam_dir.mkdir(parents=True, exist_ok=True)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY]
    for i, ts in enumerate(stamps):
        img = render_frame(camera_index, i, (int(ts) - trigger_start) / 1e9, size)
        ok, buf = cv2.imencode(".jpg", img, params)
        if not ok:  # pragma: no cover - cv2 only fails on invalid images
            raise RuntimeError(f"cv2 could not encode frame {i} of {cam_dir}")
        with atomic_path(cam_dir / f"{int(ts)}.jpg") as tmp:
            tmp.write_bytes(buf.tobytes())


@functools.lru_cache(maxsize=32)
def _background(camera_index: int, width: int, height: int) -> np.ndarray:
    """Per-camera tinted gradient (read-only; callers copy it)."""
    tint = np.array(CAMERA_TINTS[camera_index % len(CAMERA_TINTS)], dtype=np.float32)
    gx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    gy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    ramp = np.concatenate([np.broadcast_to(gx, (height, width, 1)),
                           np.broadcast_to(gy, (height, width, 1)),
                           np.broadcast_to((gx + gy) / 2, (height, width, 1))], axis=2)
    img = 0.6 * tint + 0.4 * 255.0 * np.roll(ramp, camera_index, axis=2)
    out = np.clip(img, 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------- small helpers


def _ros_time(ns: int) -> dict:
    return {"sec": int(ns) // 1_000_000_000, "nanosec": int(ns) % 1_000_000_000}


def _wall_clock(ns: int) -> str:
    """The recorder's ``%Y%m%d_%H%M%S`` stamp (UTC) of a time in ns."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime(TIME_FORMAT)
