"""Read one raw airbot_play episode: joint parquet files per arm and camera timestamps.

Layout (domain.md §2): ``RAW_ROOT/joints/<task>/<episode_id>/<arm file>`` + ``metadata.json`` and
``RAW_ROOT/images/<task>/<episode_id>/<camera>/<timestamp_ns>.jpg`` + ``metadata.json``. Only this
relative layout is used; the absolute ``image_path``/``data_path`` stored in metadata.json by the
recording machine are never followed. Image pixels are not read here (the video writer streams them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import ArmConfig, CameraConfig, PipelineConfig
from lerobot_pipeline.errors import InvalidIdError, RawDataError
from lerobot_pipeline.ids import (
    DEFAULT_SOURCE,
    TASK_DIR_RE,
    episode_key,
    safe_join,
    validate_episode_id,
)

METADATA_FILE = "metadata.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class EpisodeRef:
    """Where one raw episode lives. ``key`` is its Dagster partition key."""

    source: str
    task: str
    episode_id: str
    joints_dir: Path
    images_dir: Path

    @property
    def key(self) -> str:
        return episode_key(self.source, self.episode_id)

    @property
    def task_text(self) -> str:
        return self.task.replace("_", " ")


@dataclass(frozen=True)
class ArmSamples:
    """One arm's joint samples, sorted by time, NaNs already filled."""

    name: str
    role: str
    t_ns: np.ndarray  # (n,) int64, strictly increasing
    values: np.ndarray  # (n, joints) float64
    nan_filled: int  # number of values filled from time neighbours
    duplicates_dropped: int
    reordered: bool


@dataclass(frozen=True)
class CameraFrames:
    """One camera's frames: capture times and where each JPEG is (the file name is the time)."""

    name: str
    directory: Path
    t_ns: np.ndarray  # (n,) int64, strictly increasing
    suffixes: tuple[str, ...]  # per-frame file suffix (almost always all ".jpg")
    listed_but_missing: int  # in metadata.json, no file on disk
    unlisted_files: int  # on disk, not in metadata.json (used; reported)

    def path(self, i: int) -> Path:
        return self.directory / f"{int(self.t_ns[i])}{self.suffixes[i]}"


@dataclass(frozen=True)
class RawEpisode:
    ref: EpisodeRef
    arms: tuple[ArmSamples, ...]
    cameras: dict[str, CameraFrames]
    missing_cameras: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def arm(self, name: str) -> ArmSamples:
        return next(a for a in self.arms if a.name == name)


# ----------------------------------------------------------------------------- discovery


def _is_complete(joints_dir: Path, images_dir: Path, config: PipelineConfig) -> str | None:
    """None when every file the converter needs is present, else the first missing one."""
    for arm in config.robot.arms:
        if not (joints_dir / arm.file).is_file():
            return str(joints_dir / arm.file)
    if not (joints_dir / METADATA_FILE).is_file():
        return str(joints_dir / METADATA_FILE)
    if not (images_dir / METADATA_FILE).is_file():
        return str(images_dir / METADATA_FILE)
    return None


def discover_episodes(
    raw_root: str | Path, config: PipelineConfig, source: str = DEFAULT_SOURCE
) -> tuple[list[EpisodeRef], list[tuple[str, str]]]:
    """All complete episodes under ``raw_root`` (sorted by task, id) and ``(name, reason)`` of skipped ones."""
    root = Path(raw_root)
    joints_root = root / "joints"
    if not joints_root.is_dir():
        raise RawDataError("*", f"no 'joints' directory under raw root {root}", file=str(joints_root))
    found: list[EpisodeRef] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for task_dir in sorted(p for p in joints_root.iterdir() if p.is_dir()):
        if not TASK_DIR_RE.match(task_dir.name):
            skipped.append((task_dir.name, "task directory name has unsafe characters"))
            continue
        for ep_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
            name = f"{task_dir.name}/{ep_dir.name}"
            try:
                validate_episode_id(ep_dir.name)
            except InvalidIdError as e:
                skipped.append((name, str(e)))
                continue
            images_dir = root / "images" / task_dir.name / ep_dir.name
            missing = _is_complete(ep_dir, images_dir, config)
            if missing:
                skipped.append((name, f"incomplete: {missing} not found"))
                continue
            if ep_dir.name in seen:
                skipped.append((name, f"episode id also used by task '{seen[ep_dir.name]}'; ids must be unique per source"))
                continue
            seen[ep_dir.name] = task_dir.name
            found.append(EpisodeRef(source, task_dir.name, ep_dir.name, ep_dir, images_dir))
    return found, skipped


def find_episode(
    raw_root: str | Path, episode_id: str, config: PipelineConfig, source: str = DEFAULT_SOURCE
) -> EpisodeRef:
    """Locate one episode by id under any task; raises :class:`RawDataError` if absent or incomplete."""
    validate_episode_id(episode_id)
    root = Path(raw_root)
    joints_root = root / "joints"
    matches = []
    if joints_root.is_dir():
        for task_dir in sorted(p for p in joints_root.iterdir() if p.is_dir() and TASK_DIR_RE.match(p.name)):
            ep_dir = safe_join(joints_root, task_dir.name, episode_id)
            if ep_dir.is_dir():
                matches.append(task_dir.name)
    if not matches:
        raise RawDataError(episode_id, f"not found under {joints_root}/<task>/", file=str(joints_root))
    if len(matches) > 1:
        raise RawDataError(episode_id, f"ambiguous: present in tasks {matches}")
    task = matches[0]
    joints_dir = safe_join(joints_root, task, episode_id)
    images_dir = safe_join(root, "images", task, episode_id)
    missing = _is_complete(joints_dir, images_dir, config)
    if missing:
        raise RawDataError(episode_id, "raw files are not all there yet", file=missing)
    return EpisodeRef(source, task, episode_id, joints_dir, images_dir)


# ----------------------------------------------------------------------------- joints


def fill_nans_by_time(t_ns: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int, list[int]]:
    """Fill non-finite values per column by linear interpolation between time neighbours.

    Values before the first / after the last finite sample take that sample. Returns the filled
    array, the number of filled values and the indices of columns that have no finite value at all.
    """
    out = values.astype(np.float64, copy=True)
    filled = 0
    empty_columns: list[int] = []
    # relative times: absolute ROS ns (~1.8e18) are only exact to 256 ns as float64
    t = (t_ns - t_ns[0]).astype(np.float64) if len(t_ns) else t_ns.astype(np.float64)
    for j in range(out.shape[1]):
        col = out[:, j]
        bad = ~np.isfinite(col)
        n_bad = int(bad.sum())
        if n_bad == 0:
            continue
        if n_bad == len(col):
            empty_columns.append(j)
            continue
        col[bad] = np.interp(t[bad], t[~bad], col[~bad])
        filled += n_bad
    return out, filled, empty_columns


def read_arm(ref: EpisodeRef, arm: ArmConfig, config: PipelineConfig) -> ArmSamples:
    robot = config.robot
    path = ref.joints_dir / arm.file
    ep = ref.key
    wanted = [robot.timestamp_sec_column, robot.timestamp_nanosec_column, *robot.joint_columns]
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise RawDataError(ep, "joint file is missing", file=str(path)) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RawDataError(ep, f"not a readable parquet file ({e})", file=str(path)) from None
    for col in wanted:
        if col not in schema.names:
            raise RawDataError(ep, "column is missing", file=str(path), field=col)
    try:
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowInvalid, OSError) as e:
        raise RawDataError(ep, f"cannot read parquet data ({e})", file=str(path)) from None
    if table.num_rows == 0:
        raise RawDataError(ep, "joint file has no rows", file=str(path))
    try:
        sec = table.column(wanted[0]).to_numpy().astype(np.int64)
        nsec = table.column(wanted[1]).to_numpy().astype(np.int64)
    except (pa.ArrowInvalid, ValueError, TypeError) as e:
        raise RawDataError(ep, f"timestamps are not integers ({e})", file=str(path), field=wanted[0]) from None
    t_ns = sec * 1_000_000_000 + nsec
    cols = []
    for col in robot.joint_columns:
        try:
            cols.append(table.column(col).to_numpy(zero_copy_only=False).astype(np.float64))
        except (ValueError, TypeError, pa.ArrowInvalid) as e:
            raise RawDataError(ep, f"values are not numeric ({e})", file=str(path), field=col) from None
    values = np.column_stack(cols)

    reordered = bool(np.any(np.diff(t_ns) < 0))
    if reordered:
        order = np.argsort(t_ns, kind="stable")
        t_ns, values = t_ns[order], values[order]
    keep = np.ones(len(t_ns), dtype=bool)
    keep[1:] = np.diff(t_ns) > 0
    duplicates = int((~keep).sum())
    if duplicates:
        t_ns, values = t_ns[keep], values[keep]

    values, filled, empty = fill_nans_by_time(t_ns, values)
    if empty:
        raise RawDataError(ep, "column has no finite value at all", file=str(path), field=robot.joint_columns[empty[0]])
    return ArmSamples(arm.name, arm.role, t_ns, values, filled, duplicates, reordered)


# ----------------------------------------------------------------------------- cameras


def _load_json(path: Path, ep: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise RawDataError(ep, "metadata file is missing", file=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RawDataError(ep, f"metadata is not valid JSON ({e})", file=str(path)) from None
    if not isinstance(data, dict):
        raise RawDataError(ep, "metadata is not a JSON object", file=str(path))
    return data


def _list_frames(directory: Path) -> dict[int, str]:
    frames: dict[int, str] = {}
    with os.scandir(directory) as it:
        for entry in it:
            stem, dot, suffix = entry.name.rpartition(".")
            if dot and ("." + suffix.lower()) in IMAGE_SUFFIXES and stem.isdigit():
                frames[int(stem)] = "." + suffix
    return frames


def read_camera(ref: EpisodeRef, cam: CameraConfig, meta: dict, warnings: list[str]) -> CameraFrames | None:
    ep = ref.key
    directory = ref.images_dir / cam.name
    cams_meta = meta.get("cameras") if isinstance(meta.get("cameras"), dict) else {}
    cam_meta = cams_meta.get(cam.name)
    on_disk = _list_frames(directory) if directory.is_dir() else {}
    if cam_meta is None and not on_disk:
        return None
    listed: np.ndarray | None = None
    if cam_meta is not None:
        ts = cam_meta.get("timestamps") if isinstance(cam_meta, dict) else None
        if not isinstance(ts, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ts):
            raise RawDataError(
                ep, "timestamps must be a list of integer ns", file=str(ref.images_dir / METADATA_FILE),
                field=f"cameras.{cam.name}.timestamps",
            )
        listed = np.asarray(ts, dtype=np.int64)
    if listed is None:
        warnings.append(f"{cam.name}: no timestamps in metadata.json, using the {len(on_disk)} files found")
        present = np.array(sorted(on_disk), dtype=np.int64)
        missing = unlisted = 0
    else:
        disk = np.fromiter(on_disk.keys(), dtype=np.int64, count=len(on_disk))
        present = disk  # the files actually there; differences with metadata.json are reported
        missing = int(len(np.setdiff1d(listed, disk)))
        unlisted = int(len(np.setdiff1d(disk, listed)))
        if missing:
            warnings.append(f"{cam.name}: {missing} frame(s) listed in metadata.json have no file; skipped")
        if unlisted:
            warnings.append(f"{cam.name}: {unlisted} file(s) not listed in metadata.json; used")
    present = np.unique(present)
    if len(present) == 0:
        return None
    suffixes = tuple(on_disk[int(t)] for t in present)
    return CameraFrames(cam.name, directory, present, suffixes, missing, unlisted)


def read_episode(ref: EpisodeRef, config: PipelineConfig) -> RawEpisode:
    """Read joints and camera timestamps of one episode; raise :class:`RawDataError` if unusable."""
    warnings: list[str] = []
    arms = tuple(read_arm(ref, arm, config) for arm in config.robot.arms)
    for a in arms:
        if a.nan_filled:
            warnings.append(f"{a.name}: filled {a.nan_filled} NaN value(s) from time neighbours")
        if a.duplicates_dropped:
            warnings.append(f"{a.name}: dropped {a.duplicates_dropped} sample(s) with a repeated timestamp")
        if a.reordered:
            warnings.append(f"{a.name}: timestamps were not monotonic; samples sorted by time")
    meta = _load_json(ref.images_dir / METADATA_FILE, ref.key)
    cameras: dict[str, CameraFrames] = {}
    missing: list[str] = []
    for cam in config.cameras:
        frames = read_camera(ref, cam, meta, warnings)
        if frames is None:
            missing.append(cam.name)
        else:
            cameras[cam.name] = frames
    return RawEpisode(ref, arms, cameras, tuple(missing), tuple(warnings))
