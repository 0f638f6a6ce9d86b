"""Tests of the synthetic raw-episode generator (lerobot_pipeline.sample_data)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.config import DEFAULT_JOINT_COLUMNS, PipelineConfig
from lerobot_pipeline.errors import InvalidIdError
from lerobot_pipeline.sample_data import (
    DEFAULT_START_NS,
    MASTER_ALL_NAN_COLUMNS,
    circle_center,
    generate_dataset,
    generate_episode,
    render_frame,
)

REAL_JOINTS = Path("/work/shared/fixtures/airbot_real/joints/quad_arm_task/episode_0001")
REAL_IMAGES = Path("/work/shared/fixtures/airbot_real/images/quad_arm_task/episode_0001")
# a cross-check against the real recordings' format where they are at hand; a user's clone has none
needs_real = pytest.mark.skipif(not (REAL_JOINTS.is_dir() and REAL_IMAGES.is_dir()),
                                reason=f"real recordings not found at {REAL_JOINTS.parents[2]}")
CFG = PipelineConfig()
ARM_FILES = [a.file for a in CFG.robot.arms]
CAMERAS = [c.name for c in CFG.cameras]
EXPECTED_COLUMNS = ["timestamp_sec", "timestamp_nanosec"] + [
    f"{j}_{q}"
    for j in ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "eef_gripper_joint",
              "gripper_mapping_controller")
    for q in ("pos", "vel", "effort")
]


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> Path:
    """One default 5-second episode, shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("raw")
    return generate_episode(root, "episode_0007", seed=3)


def _root_of(joints_dir: Path) -> Path:
    return joints_dir.parents[2]


def _images_dir(joints_dir: Path) -> Path:
    return _root_of(joints_dir) / "images" / joints_dir.parent.name / joints_dir.name


def _stamps_ns(path: Path) -> np.ndarray:
    t = pq.read_table(path, columns=["timestamp_sec", "timestamp_nanosec"])
    return t.column(0).to_numpy() * 1_000_000_000 + t.column(1).to_numpy()


def _frame(path: Path):
    return pq.read_table(path).to_pandas()


def _image_meta(joints_dir: Path) -> dict:
    return json.loads((_images_dir(joints_dir) / "metadata.json").read_text())


def _joint_meta(joints_dir: Path) -> dict:
    return json.loads((joints_dir / "metadata.json").read_text())


# ----------------------------------------------------------------------------- layout


def test_layout_and_file_names(episode: Path):
    root = _root_of(episode)
    assert episode == root / "joints" / "pick_place" / "episode_0007"
    assert sorted(p.name for p in episode.iterdir()) == sorted(ARM_FILES + ["metadata.json"])
    images = root / "images" / "pick_place" / "episode_0007"
    assert sorted(p.name for p in images.iterdir()) == sorted(CAMERAS + ["metadata.json"])
    for cam in CAMERAS:
        names = [p.name for p in (images / cam).iterdir()]
        assert names and all(n.endswith(".jpg") and n[:-4].isdigit() for n in names)
    # no temporary files left behind by the atomic writes
    assert not [p for p in root.rglob("*") if p.name.endswith(".partial")]


@needs_real
def test_metadata_keys_match_the_real_recording(episode: Path):
    real_joint = json.loads((REAL_JOINTS / "metadata.json").read_text())
    real_image = json.loads((REAL_IMAGES / "metadata.json").read_text())
    joint, image = _joint_meta(episode), _image_meta(episode)
    assert list(joint) == list(real_joint)
    assert list(image) == list(real_image)
    real_arm = next(iter(real_joint["arms"].values()))
    assert list(joint["arms"]) == [a.name for a in CFG.robot.arms]
    for arm in joint["arms"].values():
        assert list(arm) == list(real_arm)
        assert arm["joints_detected"] == real_arm["joints_detected"]
    assert set(joint["validation"]) == set(real_joint["validation"])
    assert set(joint["trigger_start_time"]) == {"sec", "nanosec"}
    assert joint["episode_id"] == image["episode_id"] == "episode_0007"
    for key in ("image_path", "data_path"):  # fake absolute paths of a recording machine
        assert image[key].startswith("/") and not Path(image[key]).exists()
    for key in ("start_time", "end_time"):
        assert len(image[key]) == 15 and image[key][8] == "_"


def test_joint_metadata_agrees_with_the_parquet_files(episode: Path):
    meta = _joint_meta(episode)
    start = meta["trigger_start_time"]["sec"] * 10**9 + meta["trigger_start_time"]["nanosec"]
    end = meta["trigger_end_time"]["sec"] * 10**9 + meta["trigger_end_time"]["nanosec"]
    assert start == DEFAULT_START_NS
    assert meta["duration_sec"] == pytest.approx((end - start) / 1e9)
    for arm in CFG.robot.arms:
        info = meta["arms"][arm.name]
        ts = _stamps_ns(episode / info["file"])
        assert info["total_frames"] == len(ts)
        assert info["first_msg_time"]["sec"] * 10**9 + info["first_msg_time"]["nanosec"] == ts[0]
        assert info["last_msg_time"]["sec"] * 10**9 + info["last_msg_time"]["nanosec"] == ts[-1]
        assert start <= ts[0] and ts[-1] <= end
        assert info["avg_frequency_hz"] == pytest.approx(250, rel=0.01)


# ----------------------------------------------------------------------------- joints


@needs_real
def test_parquet_schema_matches_the_real_files(episode: Path):
    real = pq.read_schema(REAL_JOINTS / "left_master.parquet")
    assert real.names == EXPECTED_COLUMNS
    for file in ARM_FILES:
        schema = pq.read_schema(episode / file)
        assert schema.names == EXPECTED_COLUMNS
        assert len(schema.names) == 26
        assert [str(schema.field(n).type) for n in schema.names] == [str(real.field(n).type) for n in real.names]


def test_joint_samples_are_about_250_hz_with_small_jitter(episode: Path):
    for file in ARM_FILES:
        ts = _stamps_ns(episode / file)
        dt_ms = np.diff(ts) / 1e6
        assert np.all(dt_ms > 0)
        assert np.median(dt_ms) == pytest.approx(4.0, abs=0.05)
        assert dt_ms.min() > 3.3 and dt_ms.max() < 4.7
        assert dt_ms.std() > 0  # jittered, not a perfect grid
        assert len(ts) == pytest.approx(5.0 * 250, rel=0.01)


def test_every_arm_has_its_own_clock(episode: Path):
    firsts = [_stamps_ns(episode / f)[0] for f in ARM_FILES]
    lasts = [_stamps_ns(episode / f)[-1] for f in ARM_FILES]
    assert len(set(firsts)) == len(firsts)
    assert len(set(lasts)) == len(lasts)
    assert max(firsts) - min(firsts) < 8_000_000  # a few ms apart
    assert all(f - DEFAULT_START_NS < 8_000_000 for f in firsts)


def test_masters_have_nans_and_slaves_do_not(episode: Path):
    used = list(DEFAULT_JOINT_COLUMNS)
    for arm in CFG.robot.arms:
        df = pq.read_table(episode / arm.file).to_pandas()
        if arm.role == "master":
            rows_with_nan = df[used].isna().any(axis=1).mean()
            assert 0.02 <= rows_with_nan <= 0.08
            for col in used:
                assert df[col].isna().any()
            for col in MASTER_ALL_NAN_COLUMNS:
                assert df[col].isna().all()
            assert not df[used].iloc[[0, -1]].isna().any().any()  # ends stay usable
        else:
            assert not df.isna().any().any()


def test_slave_follows_its_master_with_a_delay(episode: Path):
    """The slave's joint1 matches its master's joint1 best when shifted by 20-40 ms."""
    master = pq.read_table(episode / "left_master.parquet").to_pandas()
    slave = pq.read_table(episode / "left_slave.parquet").to_pandas()
    tm, ts = _stamps_ns(episode / "left_master.parquet"), _stamps_ns(episode / "left_slave.parquet")
    ok = master["joint1_pos"].notna().to_numpy()
    errors = {}
    for delay_ms in range(0, 61, 2):
        predicted = np.interp(ts - delay_ms * 1_000_000, tm[ok], master["joint1_pos"].to_numpy()[ok])
        errors[delay_ms] = float(np.mean(np.abs(predicted[100:-100] - slave["joint1_pos"].to_numpy()[100:-100])))
    best = min(errors, key=errors.get)
    assert 18 <= best <= 42
    assert slave["joint1_pos"].std() > 0.01  # it moves


def test_nan_rate_zero_leaves_only_the_gripper_mapping_columns_empty(tmp_path: Path):
    ep = generate_episode(tmp_path, "episode_0000", seconds=1.0, nan_rate=0.0, drop_rate=0.0)
    df = pq.read_table(ep / "left_master.parquet").to_pandas()
    assert set(df.columns[df.isna().any()]) == set(MASTER_ALL_NAN_COLUMNS)


# ----------------------------------------------------------------------------- cameras


def test_image_timestamps_equal_file_names_and_ascend(episode: Path):
    meta = _image_meta(episode)
    assert list(meta["cameras"]) == CAMERAS
    for cam, info in meta["cameras"].items():
        stamps = info["timestamps"]
        assert all(isinstance(t, int) for t in stamps)
        assert info["frame_count"] == len(stamps)
        assert all(b > a for a, b in zip(stamps, stamps[1:]))
        files = sorted(int(p.stem) for p in (_images_dir(episode) / cam).glob("*.jpg"))
        assert files == stamps


def test_camera_rates_and_start_spread(episode: Path):
    meta = _image_meta(episode)
    expected = {"cam_left": 25.0, "cam_right": 25.0, "cam_head": 30.0}
    for cam, info in meta["cameras"].items():
        stamps = np.array(info["timestamps"])
        assert 1e9 / np.median(np.diff(stamps)) == pytest.approx(expected[cam], rel=0.05)
        assert stamps[0] - DEFAULT_START_NS < 150_000_000 + 1
        assert len(stamps) == pytest.approx(5.0 * expected[cam], rel=0.1)
    firsts = [info["timestamps"][0] for info in meta["cameras"].values()]
    assert len(set(firsts)) == len(firsts)


def test_camera_fps_override_and_jitter(tmp_path: Path):
    ep = generate_episode(tmp_path, "episode_0000", seconds=2.0, camera_fps={"cam_head": 15.0},
                          drop_rate=0.0, jitter_ms=2.0)
    meta = _image_meta(ep)["cameras"]
    head = np.diff(meta["cam_head"]["timestamps"]) / 1e6
    left = np.diff(meta["cam_left"]["timestamps"]) / 1e6
    assert np.median(head) == pytest.approx(1000 / 15, abs=3)
    assert 36 <= left.min() and left.max() <= 44  # 40 ms ± 2 × 2 ms, nothing dropped
    assert left.std() > 0.1
    with pytest.raises(ValueError, match="cam_nope"):
        generate_episode(tmp_path, "episode_0001", camera_fps={"cam_nope": 10.0})


def test_dropped_frames_make_real_cam_head_gaps(tmp_path: Path):
    ep = generate_episode(tmp_path, "episode_0000", seconds=20.0, size=(32, 32), drop_rate=0.1, seed=5)
    meta = _image_meta(ep)["cameras"]
    head = np.diff(meta["cam_head"]["timestamps"]) / 1e6
    assert np.any((head >= 95) & (head <= 140))  # a 100–130 ms stall
    assert head.max() <= 145
    dropped = 1 - (len(head) + 1) / (20.0 * 30)
    assert 0.03 < dropped < 0.2


def test_missing_cameras_are_neither_written_nor_listed(tmp_path: Path):
    ep = generate_episode(tmp_path, "episode_0000", seconds=1.0, missing_cameras=("cam_head",))
    images = _images_dir(ep)
    assert sorted(p.name for p in images.iterdir()) == ["cam_left", "cam_right", "metadata.json"]
    assert list(_image_meta(ep)["cameras"]) == ["cam_left", "cam_right"]
    with pytest.raises(ValueError, match="cam_nope"):
        generate_episode(tmp_path, "episode_0001", missing_cameras=("cam_nope",))


def _decode(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None
    return img.astype(np.int16)


def test_frame_content_differs_per_camera_and_over_time(episode: Path):
    meta = _image_meta(episode)["cameras"]
    images = _images_dir(episode)
    first = {cam: _decode(images / cam / f"{meta[cam]['timestamps'][0]}.jpg") for cam in CAMERAS}
    assert first["cam_left"].shape == (224, 224, 3)
    for a in CAMERAS:
        for b in CAMERAS:
            if a < b:
                assert np.abs(first[a] - first[b]).mean() > 10, (a, b)
    for cam in CAMERAS:
        later = _decode(images / cam / f"{meta[cam]['timestamps'][len(meta[cam]['timestamps']) // 2]}.jpg")
        assert np.abs(first[cam] - later).mean() > 2, cam
        # consecutive frames differ too (the counter and the circle move)
        second = _decode(images / cam / f"{meta[cam]['timestamps'][1]}.jpg")
        assert np.abs(first[cam] - second).max() > 50, cam


def test_decoded_frames_match_render_frame(episode: Path):
    """A decoded JPEG is (up to compression) what render_frame predicts for its capture time."""
    meta = _image_meta(episode)["cameras"]
    cam_index, cam = 2, CAMERAS[2]
    stamps = meta[cam]["timestamps"]
    i = 40
    decoded = _decode(_images_dir(episode) / cam / f"{stamps[i]}.jpg")
    t = (stamps[i] - DEFAULT_START_NS) / 1e9
    assert np.abs(decoded - render_frame(cam_index, i, t, (224, 224))).mean() < 3
    t_next = (stamps[i + 1] - DEFAULT_START_NS) / 1e9
    assert np.abs(decoded - render_frame(cam_index, i + 1, t_next, (224, 224))).mean() > 3
    x, y = circle_center(cam_index, t, (224, 224))
    assert decoded[y, x].max() < 60  # the circle's dark centre


def test_size_is_width_by_height(tmp_path: Path):
    ep = generate_episode(tmp_path, "episode_0000", seconds=0.5, size=(64, 48))
    cam_dir = _images_dir(ep) / "cam_left"
    assert _decode(next(cam_dir.glob("*.jpg"))).shape == (48, 64, 3)


# ----------------------------------------------------------------------------- determinism, datasets


def test_same_seed_gives_identical_episodes(tmp_path: Path):
    a = generate_episode(tmp_path / "a", "episode_0000", seconds=1.0, seed=11)
    b = generate_episode(tmp_path / "b", "episode_0000", seconds=1.0, seed=11)
    c = generate_episode(tmp_path / "c", "episode_0000", seconds=1.0, seed=12)
    root_a, root_b = _root_of(a), _root_of(b)
    files_a = sorted(p.relative_to(root_a) for p in root_a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(root_b) for p in root_b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (root_a / rel).read_bytes() == (root_b / rel).read_bytes(), rel
    assert not pq.read_table(a / "left_slave.parquet").equals(pq.read_table(c / "left_slave.parquet"))
    assert _image_meta(a) != _image_meta(c)


def test_dataset_without_sources(tmp_path: Path):
    calls = []
    dirs = generate_dataset(tmp_path, episodes=2, seconds=0.5, size=(32, 32),
                            progress=lambda d, t: calls.append((d, t)))
    assert dirs == [tmp_path / "joints" / "pick_place" / f"episode_{i:04d}" for i in range(2)]
    assert calls == [(1, 2), (2, 2)]
    assert all((d / "metadata.json").exists() for d in dirs)
    # per-episode seeds differ, episodes follow each other in time
    t0, t1 = (_stamps_ns(d / "left_slave.parquet")[0] for d in dirs)
    assert t1 - t0 > 5e9
    assert not np.array_equal(
        pq.read_table(dirs[0] / "left_slave.parquet").column("joint1_pos").to_numpy()[:10],
        pq.read_table(dirs[1] / "left_slave.parquet").column("joint1_pos").to_numpy()[:10],
    )


def test_dataset_with_sources_has_one_raw_root_per_source(tmp_path: Path):
    dirs = generate_dataset(tmp_path, episodes=2, seconds=0.5, size=(32, 32), sources=["robot_1", "robot_2"],
                            task="fold_cloth")
    assert dirs == [
        tmp_path / s / "joints" / "fold_cloth" / f"episode_{i:04d}" for s in ("robot_1", "robot_2") for i in range(2)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["robot_1", "robot_2"]
    for s in ("robot_1", "robot_2"):
        assert sorted(p.name for p in (tmp_path / s).iterdir()) == ["images", "joints"]
        assert (tmp_path / s / "images" / "fold_cloth" / "episode_0001" / "metadata.json").exists()
    # the same episode id on two rigs is a different recording
    assert not pq.read_table(dirs[0] / "left_master.parquet").equals(pq.read_table(dirs[2] / "left_master.parquet"))


def test_dataset_is_deterministic(tmp_path: Path):
    a = generate_dataset(tmp_path / "a", episodes=2, seconds=0.5, size=(32, 32), seed=4)
    b = generate_dataset(tmp_path / "b", episodes=2, seconds=0.5, size=(32, 32), seed=4)
    for da, db in zip(a, b):
        assert _frame(da / "right_master.parquet").equals(_frame(db / "right_master.parquet"))  # NaN == NaN
        assert _image_meta(da) == _image_meta(db)


# ----------------------------------------------------------------------------- validation, config, speed


def test_invalid_ids_are_refused(tmp_path: Path):
    for bad in ("../escape", "ep 1", "", "a/b"):
        with pytest.raises(InvalidIdError):
            generate_episode(tmp_path, bad)
    with pytest.raises(InvalidIdError):
        generate_dataset(tmp_path, episodes=1, sources=["robot/1"])
    with pytest.raises(InvalidIdError):
        generate_episode(tmp_path, "episode_0000", task="../x")
    assert not any(tmp_path.iterdir())


def test_existing_episode_is_not_overwritten(tmp_path: Path):
    generate_episode(tmp_path, "episode_0000", seconds=0.5, size=(32, 32))
    with pytest.raises(FileExistsError):
        generate_episode(tmp_path, "episode_0000", seconds=0.5, size=(32, 32))


def test_follows_the_configured_arms_and_cameras(tmp_path: Path):
    cfg = PipelineConfig(
        robot=type(CFG.robot)(type="single_arm", arms=(
            type(CFG.robot.arms[0])("arm", "follower.parquet", "slave"),
            type(CFG.robot.arms[0])("leader", "leader.parquet", "master"),
        )),
        cameras=(type(CFG.cameras[0])("wrist", "base"), type(CFG.cameras[0])("top", "downsample")),
    )
    ep = generate_episode(tmp_path, "episode_0000", seconds=1.0, config=cfg)
    assert sorted(p.name for p in ep.iterdir()) == ["follower.parquet", "leader.parquet", "metadata.json"]
    meta = _image_meta(ep)["cameras"]
    assert list(meta) == ["wrist", "top"]
    assert meta["top"]["frame_count"] > meta["wrist"]["frame_count"]
    assert list(_joint_meta(ep)["arms"]) == ["arm", "leader"]


def test_a_five_second_episode_is_fast(tmp_path: Path):
    start = time.perf_counter()
    generate_episode(tmp_path, "episode_0000", seconds=5.0)
    assert time.perf_counter() - start < 3.0
