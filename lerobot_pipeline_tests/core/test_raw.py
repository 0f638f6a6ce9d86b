"""Reading raw episodes (core/raw.py): joints with their quirks, camera listings, discovery."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lerobot_pipeline.config import DEFAULT_JOINT_COLUMNS
from lerobot_pipeline.core.raw import discover_episodes, find_episode, read_episode
from lerobot_pipeline.errors import InvalidIdError, RawDataError
from lerobot_pipeline_tests.conftest import MS, T0_NS, arm_table

NAN = np.nan


def values_with(column: int, col_values, n: int) -> np.ndarray:
    """(n, 7) joint values: ``col_values`` in ``column``, 1.0 elsewhere."""
    v = np.ones((n, len(DEFAULT_JOINT_COLUMNS)))
    v[:, column] = col_values
    return v


def read(root, make_config, episode_id="episode_0001", **overrides):
    cfg = make_config(overrides)
    return read_episode(find_episode(root, episode_id, cfg), cfg)


# ----------------------------------------------------------------------------- joints


def test_timestamps_combine_sec_and_nanosec(write_raw, make_config):
    t = T0_NS + np.array([0, 3_999_871, 8_000_129])
    root = write_raw(arms={"left_slave.parquet": arm_table(t)})
    arm = read(root, make_config).arm("left_slave")
    np.testing.assert_array_equal(arm.t_ns, t)
    assert arm.t_ns.dtype == np.int64
    np.testing.assert_array_equal(arm.values[:, 0], [0.0, 1.0, 2.0])
    assert arm.values.shape == (3, 7) and arm.role == "slave"


def test_nans_are_filled_by_linear_interpolation_in_time(write_raw, make_config):
    # uneven, realistic (non-round) sample times; joint1_pos: NaN, 2, NaN, NaN, 8, NaN
    dt = np.array([0, 1_000_001, 2_000_003, 5_000_007, 11_000_011, 15_000_013])
    col = [NAN, 2.0, NAN, NAN, 8.0, NAN]
    root = write_raw(arms={"left_master.parquet": arm_table(T0_NS + dt, values_with(0, col, 6))})
    raw = read(root, make_config)
    arm = raw.arm("left_master")
    # row 2: 2 + 6 * (2_000_003 - 1_000_001) / (11_000_011 - 1_000_001); row 3 likewise; ends take the edge value
    expected = [2.0, 2.0,
                2.0 + 6.0 * 1_000_002 / 10_000_010,
                2.0 + 6.0 * 4_000_006 / 10_000_010,
                8.0, 8.0]
    np.testing.assert_allclose(arm.values[:, 0], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(arm.values[:, 1:], 1.0)  # other columns untouched
    assert arm.nan_filled == 4
    assert any("left_master: filled 4 NaN" in w for w in raw.warnings)
    assert raw.arm("left_slave").nan_filled == 0


def test_unused_all_nan_columns_are_ignored(write_raw, make_config):
    t = T0_NS + np.arange(5) * 4 * MS
    table = arm_table(t)
    table = table.append_column("gripper_mapping_controller_vel", [np.full(5, NAN)])
    root = write_raw(arms={"right_master.parquet": table})
    assert read(root, make_config).arm("right_master").nan_filled == 0


def test_all_nan_used_column_names_file_and_field(write_raw, make_config):
    t = T0_NS + np.arange(5) * 4 * MS
    root = write_raw(arms={"right_master.parquet": arm_table(t, values_with(2, NAN, 5))})
    with pytest.raises(RawDataError) as exc:
        read(root, make_config)
    e = exc.value
    assert e.field == "joint3_pos" and e.file.endswith("right_master.parquet")
    assert "joint3_pos" in str(e) and "right_master.parquet" in str(e) and "episode_0001" in str(e)


def test_missing_column_names_the_field(write_raw, make_config):
    t = T0_NS + np.arange(5) * 4 * MS
    root = write_raw(arms={"left_slave.parquet": arm_table(t, drop=("eef_gripper_joint_pos",))})
    with pytest.raises(RawDataError, match="eef_gripper_joint_pos") as exc:
        read(root, make_config)
    assert exc.value.field == "eef_gripper_joint_pos" and exc.value.file.endswith("left_slave.parquet")


def test_configured_columns_are_read(write_raw, make_config):
    # another rig: 2 joints per arm, custom column names
    t = T0_NS + np.arange(4) * 4 * MS
    cols = ("a_pos", "b_pos")
    tables = {f: arm_table(t, np.arange(8).reshape(4, 2) * 1.0, columns=cols)
              for f in ("left_slave.parquet", "left_master.parquet", "right_slave.parquet", "right_master.parquet")}
    root = write_raw(arms=tables)
    raw = read(root, make_config, **{"robot.joints_per_arm": 2, "robot.joint_columns": list(cols)})
    np.testing.assert_array_equal(raw.arm("left_slave").values, np.arange(8).reshape(4, 2))


def test_non_monotonic_timestamps_are_sorted_and_warned(write_raw, make_config):
    dt = np.array([0, 8, 4, 12]) * MS
    root = write_raw(arms={"left_slave.parquet": arm_table(T0_NS + dt, values_with(0, [0.0, 8.0, 4.0, 12.0], 4))})
    raw = read(root, make_config)
    arm = raw.arm("left_slave")
    np.testing.assert_array_equal(arm.t_ns, T0_NS + np.array([0, 4, 8, 12]) * MS)
    np.testing.assert_array_equal(arm.values[:, 0], [0.0, 4.0, 8.0, 12.0])  # values travel with their time
    assert arm.reordered
    assert any("left_slave" in w and "not monotonic" in w for w in raw.warnings)
    assert not raw.arm("right_slave").reordered


def test_duplicate_timestamps_are_dropped(write_raw, make_config):
    dt = np.array([0, 4, 4, 8, 8, 8, 12]) * MS
    col = [0.0, 4.0, 99.0, 8.0, 98.0, 97.0, 12.0]
    root = write_raw(arms={"right_slave.parquet": arm_table(T0_NS + dt, values_with(0, col, 7))})
    raw = read(root, make_config)
    arm = raw.arm("right_slave")
    np.testing.assert_array_equal(arm.t_ns, T0_NS + np.array([0, 4, 8, 12]) * MS)
    np.testing.assert_array_equal(arm.values[:, 0], [0.0, 4.0, 8.0, 12.0])  # the first of equal times is kept
    assert arm.duplicates_dropped == 3
    assert any("right_slave: dropped 3" in w for w in raw.warnings)


def test_empty_joint_file_is_an_error(write_raw, make_config):
    root = write_raw(arms={"left_master.parquet": arm_table(np.array([], dtype=np.int64))})
    with pytest.raises(RawDataError, match="no rows") as exc:
        read(root, make_config)
    assert exc.value.file.endswith("left_master.parquet")


# ----------------------------------------------------------------------------- cameras


def test_listed_but_absent_image_is_a_bad_frame_on_the_timeline(write_raw, make_config):
    stamps = [T0_NS + k * 40 * MS for k in (0, 1, 3, 4)]
    ghost = T0_NS + 2 * 40 * MS
    root = write_raw(cameras={"cam_right": stamps}, listed_only={"cam_right": [ghost]})
    raw = read(root, make_config)
    cam = raw.cameras["cam_right"]
    # the listed frame stays at its instant (nothing after it shifts) and is marked bad, by file
    np.testing.assert_array_equal(cam.t_ns, sorted(stamps + [ghost]))
    assert cam.bad == {2: "listed in metadata.json but absent"}
    assert cam.bad_files() == {f"{ghost}.jpg": "listed in metadata.json but absent"}
    assert cam.good_index().tolist() == [0, 1, 3, 4]
    assert cam.listed_but_missing == 1 and cam.unlisted_files == 0
    assert any(f"cam_right: 1 frame(s) listed in metadata.json have no file ({ghost})" in w for w in raw.warnings)


def test_file_on_disk_not_in_metadata_is_ignored_and_reported(write_raw, make_config):
    root = write_raw(seconds=0.2)
    images = root / "images" / "pick_place" / "episode_0001"
    extra = T0_NS + 500 * MS
    (images / "cam_head" / f"{extra}.jpg").write_bytes((images / "cam_head" / f"{T0_NS}.jpg").read_bytes())
    raw = read(root, make_config)
    cam = raw.cameras["cam_head"]
    assert extra not in cam.t_ns and len(cam.t_ns) == 6 and cam.unlisted_files == 1 and not cam.bad
    assert any(f"cam_head: 1 file(s) not listed in metadata.json ({extra}); ignored" in w for w in raw.warnings)


def test_absolute_paths_in_metadata_are_ignored(write_raw, make_config, tmp_path):
    elsewhere = tmp_path / "does" / "not" / "exist"
    root = write_raw(image_meta={"image_path": str(elsewhere), "data_path": str(elsewhere)})
    raw = read(root, make_config)
    assert not elsewhere.exists()
    assert raw.missing_cameras == ()
    images = root / "images" / "pick_place" / "episode_0001"
    for name, cam in raw.cameras.items():
        assert cam.directory == images / name
        assert len(cam.t_ns) == 26 and cam.path(0).is_file()


def test_camera_without_metadata_or_files_is_missing(write_raw, make_config):
    root = write_raw(seconds=0.2)
    images = root / "images" / "pick_place" / "episode_0001"
    meta = json.loads((images / "metadata.json").read_text())
    del meta["cameras"]["cam_head"]
    (images / "metadata.json").write_text(json.dumps(meta))
    for f in (images / "cam_head").iterdir():
        f.unlink()
    raw = read(root, make_config)
    assert raw.missing_cameras == ("cam_head",) and "cam_head" not in raw.cameras


def test_bad_camera_timestamps_in_metadata_name_the_field(write_raw, make_config):
    root = write_raw(seconds=0.2)
    images = root / "images" / "pick_place" / "episode_0001"
    meta = json.loads((images / "metadata.json").read_text())
    meta["cameras"]["cam_left"]["timestamps"] = ["not", "numbers"]
    (images / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(RawDataError) as exc:
        read(root, make_config)
    assert exc.value.field == "cameras.cam_left.timestamps" and exc.value.file.endswith("metadata.json")


# ----------------------------------------------------------------------------- finding episodes


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "episode 1", "ep|1", ""])
def test_find_episode_refuses_unsafe_ids(write_raw, make_config, bad):
    root = write_raw()
    with pytest.raises(InvalidIdError):
        find_episode(root, bad, make_config())


def test_find_episode_locates_the_task_and_reports_absent_ids(write_raw, make_config):
    root = write_raw(task="fold_towel")
    ref = find_episode(root, "episode_0001", make_config(), source="robot_1")
    assert (ref.task, ref.source, ref.key) == ("fold_towel", "robot_1", "robot_1.episode_0001")
    assert ref.joints_dir == (root / "joints" / "fold_towel" / "episode_0001").resolve()
    assert ref.task_text == "fold towel"
    with pytest.raises(RawDataError, match="not found"):
        find_episode(root, "episode_0002", make_config())


@pytest.mark.parametrize("missing", ["joints/pick_place/episode_0001/right_master.parquet",
                                     "joints/pick_place/episode_0001/metadata.json",
                                     "images/pick_place/episode_0001/metadata.json"])
def test_find_episode_reports_incomplete_episodes(write_raw, make_config, missing):
    root = write_raw()
    (root / missing).unlink()
    with pytest.raises(RawDataError, match="raw files are not all there yet") as exc:
        find_episode(root, "episode_0001", make_config())
    assert exc.value.file.endswith(missing)


def test_discover_episodes_skips_incomplete_ones_with_a_reason(write_raw, make_config):
    root = write_raw(episode_id="episode_0001")
    write_raw(root=root, episode_id="episode_0002")
    write_raw(root=root, episode_id="episode_0003")
    (root / "images" / "pick_place" / "episode_0002" / "metadata.json").unlink()
    (root / "joints" / "pick_place" / "bad id").mkdir()
    refs, skipped = discover_episodes(root, make_config(), source="robot_2")
    assert [r.episode_id for r in refs] == ["episode_0001", "episode_0003"]
    assert all(r.source == "robot_2" and r.task == "pick_place" for r in refs)
    reasons = dict(skipped)
    assert set(reasons) == {"pick_place/episode_0002", "pick_place/bad id"}
    assert "incomplete" in reasons["pick_place/episode_0002"] and "metadata.json" in reasons["pick_place/episode_0002"]
    assert "invalid episode id" in reasons["pick_place/bad id"]


def test_discover_episodes_without_joints_directory_is_an_error(tmp_path, make_config):
    with pytest.raises(RawDataError, match="joints"):
        discover_episodes(tmp_path, make_config())


def test_null_timestamps_name_the_file_and_field(write_raw, make_config, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = make_config()
    root = write_raw()
    (ref,), _ = discover_episodes(root, cfg, "local")
    path = ref.joints_dir / cfg.robot.arms[0].file
    table = pq.read_table(path)
    sec = table.column("timestamp_sec").to_pylist()
    sec[3] = None
    table = table.set_column(table.schema.get_field_index("timestamp_sec"), "timestamp_sec", pa.array(sec, pa.int64()))
    pq.write_table(table, path)
    with pytest.raises(RawDataError, match="timestamps are not integers") as e:
        read_episode(ref, cfg)
    assert e.value.field == "timestamp_sec" and str(path) in str(e.value)
