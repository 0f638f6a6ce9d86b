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

This package holds the episode and dataset entry points and the metadata files; the arm parquets
are :mod:`.joints`, the camera timelines and JPEG frames :mod:`.cameras`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core.fsutil import write_json_atomic
from lerobot_pipeline.errors import InvalidIdError
from lerobot_pipeline.ids import TASK_DIR_RE, validate_episode_id, validate_source
from lerobot_pipeline.sample_data.cameras import (
    DEFAULT_FPS_BY_ROLE,
    camera_rates,
    camera_timestamps,
    circle_center,
    render_frame,
    write_frames,
)
from lerobot_pipeline.sample_data.joints import (
    MASTER_ALL_NAN_COLUMNS,
    RAW_JOINT_NAMES,
    RAW_QUANTITIES,
    TRIGGER_END_DELAY_NS,
    joint_columns,
    ros_time,
    validation_block,
    write_arms,
)

__all__ = [
    "DEFAULT_EPISODES", "DEFAULT_FPS_BY_ROLE", "DEFAULT_SEED", "DEFAULT_SECONDS", "DEFAULT_SIZE", "DEFAULT_START_NS",
    "DEFAULT_TASK", "MASTER_ALL_NAN_COLUMNS", "RAW_JOINT_NAMES", "RAW_QUANTITIES",
    "circle_center", "episode_seed", "generate_dataset", "generate_episode", "joint_columns", "render_frame",
]

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
#: Trigger time of generated episodes when none is given: 2025-11-26, like the real fixture.
DEFAULT_START_NS = 1_764_143_235_000_000_000
#: Idle time between two consecutive episodes of :func:`generate_dataset`.
EPISODE_GAP_SEC = 10.0
#: Start offset between the timelines of two sources of :func:`generate_dataset`.
SOURCE_OFFSET_NS = 500_000_000

#: Fake recording-machine root written into images/metadata.json (converters must ignore it).
RECORDER_DATA_ROOT = "/home/recorder/data"
METADATA_FILE = "metadata.json"
TIME_FORMAT = "%Y%m%d_%H%M%S"


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
    fps_by_camera = camera_rates(cfg, camera_fps or {})
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

    arm_meta, last_joint_ns = write_arms(joints_dir, cfg, joint_rng, trigger_start, duration_ns, joint_hz, nan_rate)
    trigger_end = last_joint_ns + int(joint_rng.integers(*TRIGGER_END_DELAY_NS))

    cameras = [c for c in cfg.cameras if c.name not in missing_cameras]
    camera_meta: dict[str, dict] = {}
    for cam in cameras:
        cam_index = [c.name for c in cfg.cameras].index(cam.name)
        stamps = camera_timestamps(
            camera_rng, trigger_start, trigger_end, fps_by_camera[cam.name], jitter_ms, drop_rate
        )
        write_frames(images_dir / cam.name, stamps, cam_index, trigger_start, (width, height))
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
        "trigger_start_time": ros_time(trigger_start),
        "trigger_end_time": ros_time(trigger_end),
        "duration_sec": (trigger_end - trigger_start) / 1e9,
        "arms": {name: meta for name, (meta, _) in arm_meta.items()},
        "validation": validation_block(arm_meta),
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


def _wall_clock(ns: int) -> str:
    """The recorder's ``%Y%m%d_%H%M%S`` stamp (UTC) of a time in ns."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime(TIME_FORMAT)
