"""Factory fixtures shared by the tests: configs, in-memory raw episodes, hand-written and generated raw files.

Everything is built in code under ``tmp_path`` (no dependency on /work/shared), with real parquet files,
real JPEGs and, downstream, real PyAV encoding. Each factory takes keyword overrides, as LeRobot's
``tests/fixtures/dataset_factories.py`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.config import DEFAULT_JOINT_COLUMNS, PipelineConfig, load_config
from lerobot_pipeline.core.raw import ArmSamples, CameraFrames, EpisodeRef, RawEpisode
from lerobot_pipeline.sample_data import generate_episode

#: Realistic ROS time (2025-11-26), so that float64 precision problems with absolute ns show up.
T0_NS = 1_764_143_235_000_000_000
MS = 1_000_000


# ----------------------------------------------------------------------------- order


def pytest_collection_modifyitems(config, items):
    """Files with the most ``slow`` (daemon, end-to-end) tests first; each file's tests keep their order.
    ``make test`` hands whole files to 2 processes in this order (pytest-xdist ``--dist loadfile``): the
    long files start at once and the many short ones fill in beside them, instead of two long files
    ending the run on one process. Deterministic, as xdist requires every worker to collect the same."""
    slow: dict[str, int] = {}
    first: dict[str, int] = {}
    for n, item in enumerate(items):
        path = str(item.path)
        first.setdefault(path, n)
        slow[path] = slow.get(path, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: (-slow[str(item.path)], first[str(item.path)]))


# ----------------------------------------------------------------------------- configs


@pytest.fixture
def make_config() -> Callable[..., PipelineConfig]:
    """``make_config({"alignment.strategy": "nearest"})``: the built-in defaults plus dotted overrides."""

    def _make(overrides: dict | None = None, **kw) -> PipelineConfig:
        return load_config(overrides={**(overrides or {}), **kw})

    return _make


# ----------------------------------------------------------------------------- in-memory raw data


@pytest.fixture
def make_arm() -> Callable[..., ArmSamples]:
    """``make_arm(t_ns, values=None, name=..., role=...)``; default values: column j of row i = 10*i + j."""

    def _make(t_ns, values=None, *, name: str = "arm", role: str = "slave", joints: int = 2) -> ArmSamples:
        t = np.asarray(t_ns, dtype=np.int64)
        if values is None:
            values = 10.0 * np.arange(len(t))[:, None] + np.arange(joints)[None, :]
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1:
            v = v[:, None]
        return ArmSamples(name, role, t, v, 0, 0, False)

    return _make


@pytest.fixture
def make_raw(tmp_path) -> Callable[..., RawEpisode]:
    """An in-memory :class:`RawEpisode` (no files): ``make_raw(cameras={name: t_ns}, arms=(...), missing=())``."""

    def _make(cameras: dict[str, np.ndarray], arms: tuple[ArmSamples, ...] = (), *, missing: tuple[str, ...] = (),
              episode_id: str = "episode_0001") -> RawEpisode:
        ref = EpisodeRef("local", "task", episode_id, tmp_path / "joints", tmp_path / "images")
        frames = {
            name: CameraFrames(name, tmp_path / name, np.asarray(t, dtype=np.int64), (".jpg",) * len(t), 0, 0)
            for name, t in cameras.items()
        }
        return RawEpisode(ref, tuple(arms), frames, tuple(missing))

    return _make


# ----------------------------------------------------------------------------- hand-written raw files


def arm_table(t_ns, values=None, *, columns=DEFAULT_JOINT_COLUMNS, drop: tuple[str, ...] = ()) -> pa.Table:
    """A joint parquet table in the real layout: ``timestamp_sec``, ``timestamp_nanosec``, then the joints."""
    t = np.asarray(t_ns, dtype=np.int64)
    if values is None:
        values = np.arange(len(t))[:, None] + np.arange(len(columns))[None, :] / 10.0
    v = np.asarray(values, dtype=np.float64)
    data = {"timestamp_sec": t // 1_000_000_000, "timestamp_nanosec": t % 1_000_000_000}
    data.update({c: v[:, j] for j, c in enumerate(columns)})
    for c in drop:
        data.pop(c)
    return pa.table(data)


@pytest.fixture
def write_raw(tmp_path) -> Callable[..., Path]:
    """Write a small raw episode by hand; returns the raw root.

    ``write_raw(arms={arm file: pa.Table}, cameras={camera: [t_ns, ...]}, ...)``: arms not given get a
    regular 250 Hz table; cameras not given get 25 Hz timestamps; ``listed_only`` adds timestamps to
    metadata.json without writing their image; ``image_meta`` updates images/metadata.json.
    """

    def _write(*, root: Path | None = None, task: str = "pick_place", episode_id: str = "episode_0001",
               arms: dict[str, pa.Table] | None = None, cameras: dict[str, list[int]] | None = None,
               listed_only: dict[str, list[int]] | None = None, image_meta: dict | None = None,
               config: PipelineConfig | None = None, seconds: float = 1.0) -> Path:
        cfg = config or PipelineConfig()
        root = Path(root or tmp_path / "raw")
        joints_dir = root / "joints" / task / episode_id
        images_dir = root / "images" / task / episode_id
        joints_dir.mkdir(parents=True)
        images_dir.mkdir(parents=True)
        arms = arms or {}
        n_joint = int(seconds * 250) + 1
        for arm in cfg.robot.arms:
            table = arms.get(arm.file)
            if table is None:
                table = arm_table(T0_NS + np.arange(n_joint) * 4 * MS)
            pq.write_table(table, joints_dir / arm.file)
        (joints_dir / "metadata.json").write_text(json.dumps({"episode_id": episode_id}))
        cameras = dict(cameras or {})
        for cam in cfg.cameras:
            cameras.setdefault(cam.name, [int(T0_NS + k * 40 * MS) for k in range(int(seconds * 25) + 1)])
        listed_only = listed_only or {}
        cam_meta = {}
        for name, stamps in cameras.items():
            (images_dir / name).mkdir()
            for t in stamps:
                img = np.full((16, 16, 3), (int(t) // MS) % 200, np.uint8)
                cv2.imwrite(str(images_dir / name / f"{int(t)}.jpg"), img)
            listed = sorted(int(t) for t in list(stamps) + list(listed_only.get(name, [])))
            cam_meta[name] = {"frame_count": len(listed), "timestamps": listed}
        meta = {"episode_id": episode_id, "image_path": f"/home/recorder/data/images/{task}/{episode_id}",
                "data_path": f"/home/recorder/data/joints/{task}/{episode_id}", "cameras": cam_meta}
        meta.update(image_meta or {})
        (images_dir / "metadata.json").write_text(json.dumps(meta))
        return root

    return _write


# ----------------------------------------------------------------------------- generated raw episodes


@pytest.fixture
def make_episode(tmp_path) -> Callable[..., Path]:
    """``make_episode("episode_0001", seconds=2.5, ...)``: a synthetic raw episode (64x48 JPEGs);
    returns the raw root."""

    def _make(episode_id: str = "episode_0001", *, root: Path | None = None, seconds: float = 2.5,
              size: tuple[int, int] = (64, 48), seed: int = 1, **kw) -> Path:
        root = Path(root or tmp_path / "raw")
        generate_episode(root, episode_id, seconds=seconds, size=size, seed=seed, **kw)
        return root

    return _make
