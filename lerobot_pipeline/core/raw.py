"""Read one raw airbot_play episode: joint parquet files per arm and camera timestamps.

Layout (domain.md §2): ``RAW_ROOT/joints/<task>/<episode_id>/<arm file>`` + ``metadata.json`` and
``RAW_ROOT/images/<task>/<episode_id>/<camera>/<timestamp_ns>.jpg`` + ``metadata.json``. Only this
relative layout is used; the absolute ``image_path``/``data_path`` stored in metadata.json by the
recording machine are never followed. Image pixels are not read here (the video writer streams them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from lerobot_pipeline.config import CameraConfig, PipelineConfig
from lerobot_pipeline.core.joints import (  # re-exported
    ArmSamples as ArmSamples,
    fill_nans_by_time as fill_nans_by_time,
    read_arm as read_arm,
)
from lerobot_pipeline.core.jpeg import ABSENT, jpeg_problem
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
class CameraFrames:
    """One camera's frames: capture times and where each JPEG is (the file name is the time).

    ``bad`` holds the frames that exist on the timeline but have no usable image (listed but
    absent, empty, truncated, undecodable): frame index -> reason. They are missing frames of the
    camera at that instant (never chosen as a partner, never shifting the others).
    """

    name: str
    directory: Path
    t_ns: np.ndarray  # (n,) int64, strictly increasing
    suffixes: tuple[str, ...]  # per-frame file suffix (almost always all ".jpg")
    listed_but_missing: int  # in metadata.json, no file on disk (also in ``bad``)
    unlisted_files: int  # on disk, not in metadata.json (ignored; reported)
    bad: dict[int, str] = field(default_factory=dict)

    def path(self, i: int) -> Path:
        return self.directory / f"{int(self.t_ns[i])}{self.suffixes[i]}"

    def file_name(self, i: int) -> str:
        return f"{int(self.t_ns[i])}{self.suffixes[i]}"

    def good_index(self) -> np.ndarray:
        """Indices of the frames with a usable image, ascending."""
        mask = np.ones(len(self.t_ns), dtype=bool)
        mask[np.fromiter(self.bad, dtype=np.int64, count=len(self.bad))] = False
        return np.flatnonzero(mask)

    def bad_files(self) -> dict[str, str]:
        """File name -> reason for every bad frame, in time order."""
        return {self.file_name(i): self.bad[i] for i in sorted(self.bad)}


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
                skipped.append((name, f"episode id also used by task '{seen[ep_dir.name]}'; "
                                      "ids must be unique per source"))
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


# ----------------------------------------------------------------------------- cameras


def _load_json(path: Path, ep: str) -> dict[str, Any]:
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


def _listed_timestamps(ref: EpisodeRef, cam: CameraConfig, cam_meta: object, warnings: list[str]) -> np.ndarray:
    ts = cam_meta.get("timestamps") if isinstance(cam_meta, dict) else None
    if not isinstance(ts, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ts):
        raise RawDataError(
            ref.key, "timestamps must be a list of integer ns", file=str(ref.images_dir / METADATA_FILE),
            field=f"cameras.{cam.name}.timestamps",
        )
    listed = np.asarray(ts, dtype=np.int64)
    if np.any(np.diff(listed) < 0):
        warnings.append(f"{cam.name}: timestamps in metadata.json are not ascending; sorted by time")
    unique = np.unique(listed)
    if len(unique) < len(listed):
        warnings.append(f"{cam.name}: {len(listed) - len(unique)} repeated timestamp(s) in metadata.json; counted once")
    return unique


def _names(times: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(f"{int(t)}" for t in times[:limit])
    return shown + (f", ... ({len(times)} in all)" if len(times) > limit else "")


def read_camera(ref: EpisodeRef, cam: CameraConfig, meta: dict[str, Any], warnings: list[str],
                extra_bad: Mapping[str, str] | None = None) -> CameraFrames | None:
    """Frames of one camera: metadata.json's timestamps (the recorder's manifest), checked on disk.

    Every listed frame stays on the timeline; one whose file is absent or fails :func:`jpeg_problem`
    (or is named in ``extra_bad``: file name -> reason) is a bad frame. Files on disk that
    metadata.json does not list are ignored and reported. Without timestamps in metadata.json the
    files on disk are the frames. No file on disk at all: the camera is missing (None).
    """
    directory = ref.images_dir / cam.name
    cams_meta = cast("dict[str, Any]", meta.get("cameras") if isinstance(meta.get("cameras"), dict) else {})
    cam_meta = cams_meta.get(cam.name)
    on_disk = _list_frames(directory) if directory.is_dir() else {}
    if not on_disk:
        return None  # missing or empty directory: filtering.require_all_cameras decides
    disk = np.fromiter(on_disk.keys(), dtype=np.int64, count=len(on_disk))
    if cam_meta is None:
        warnings.append(f"{cam.name}: no timestamps in metadata.json, using the {len(on_disk)} files found")
        t_ns = np.unique(disk)
        missing = unlisted = 0
    else:
        t_ns = _listed_timestamps(ref, cam, cam_meta, warnings)
        absent = np.setdiff1d(t_ns, disk)
        extra = np.setdiff1d(disk, t_ns)
        missing, unlisted = len(absent), len(extra)
        if missing:
            warnings.append(f"{cam.name}: {missing} frame(s) listed in metadata.json have no file "
                            f"({_names(absent)}); missing frames (gap policy)")
        if unlisted:
            warnings.append(f"{cam.name}: {unlisted} file(s) not listed in metadata.json ({_names(extra)}); ignored")
    suffixes = tuple(on_disk.get(int(t), ".jpg") for t in t_ns)
    frames = CameraFrames(cam.name, directory, t_ns, suffixes, missing, unlisted)
    bad = {}
    for i in range(len(t_ns)):  # one stat + two small reads per file: the check must see every frame
        problem = ABSENT if int(t_ns[i]) not in on_disk else jpeg_problem(frames.path(i))
        if problem:
            bad[i] = problem
    if extra_bad:
        index = {frames.file_name(i): i for i in range(len(t_ns))}
        for name, reason in extra_bad.items():
            if name in index:
                bad.setdefault(index[name], reason)
            else:
                warnings.append(f"{cam.name}: bad file {name} is not a frame of this camera; ignored")
    n_bad = len(bad) - missing
    if n_bad:
        warnings.append(f"{cam.name}: {n_bad} unusable image file(s); missing frames (gap policy)")
    return CameraFrames(cam.name, directory, t_ns, suffixes, missing, unlisted, bad)


def joint_warnings(a: ArmSamples) -> list[str]:
    """What reading one arm's joint file changed, in words (part of the episode's warnings)."""
    warnings = []
    if a.nan_filled:
        warnings.append(f"{a.name}: filled {a.nan_filled} NaN value(s) from time neighbours")
    if a.nan_dropped:
        warnings.append(f"{a.name}: dropped {a.nan_dropped} sample(s) in NaN runs longer than "
                        "2 x alignment.tolerance_ms (no data there: gap policy)")
    if a.duplicates_dropped:
        warnings.append(f"{a.name}: dropped {a.duplicates_dropped} sample(s) with a repeated timestamp")
    if a.reordered:
        warnings.append(f"{a.name}: timestamps were not monotonic; samples sorted by time")
    return warnings


def read_cameras(
    ref: EpisodeRef, config: PipelineConfig, extra_bad: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, CameraFrames], tuple[str, ...], list[str]]:
    """Everything of an episode but its joint samples: (cameras, missing cameras, warnings), the warnings in
    the order :func:`read_episode` gives them after the joints' own."""
    warnings: list[str] = []
    try:  # the joints' metadata.json marks the episode complete; its content is not needed
        _load_json(ref.joints_dir / METADATA_FILE, ref.key)
    except RawDataError as e:
        warnings.append(f"joints {METADATA_FILE} is not valid JSON or not an object ({e}); not used")
    meta = _load_json(ref.images_dir / METADATA_FILE, ref.key)
    cameras: dict[str, CameraFrames] = {}
    missing: list[str] = []
    for cam in config.cameras:
        frames = read_camera(ref, cam, meta, warnings, (extra_bad or {}).get(cam.name))
        if frames is None:
            missing.append(cam.name)
            warnings.append(f"{cam.name}: no image files (directory missing or empty); camera missing")
        else:
            cameras[cam.name] = frames
    return cameras, tuple(missing), warnings


def read_episode(
    ref: EpisodeRef, config: PipelineConfig, extra_bad: Mapping[str, Mapping[str, str]] | None = None,
) -> RawEpisode:
    """Read joints and camera timestamps of one episode; raise :class:`RawDataError` if unusable.

    ``extra_bad`` (camera -> {file name: reason}) marks more frames bad, e.g. JPEGs that passed the
    structural check but failed a strict decode in the video stage, which then aligns again.
    """
    arms = tuple(read_arm(ref, arm, config) for arm in config.robot.arms)
    warnings = [w for a in arms for w in joint_warnings(a)]
    cameras, missing, camera_warnings = read_cameras(ref, config, extra_bad)
    return RawEpisode(ref, arms, cameras, missing, tuple(warnings + camera_warnings))
