"""convert_episode end to end on a short synthetic recording: parquet rows, frame-exact videos, stats.

Real files only: generated JPEGs, parquet read back with pyarrow, mp4s encoded and decoded with PyAV.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.config import PipelineConfig, load_config
from lerobot_pipeline.core.convert import AlignedEpisode, align_episode, convert_episode
from lerobot_pipeline.core.episode_writer import StagedPart
from lerobot_pipeline.core.raw import RawEpisode, find_episode, read_episode
from lerobot_pipeline.core.video import decode_frames, probe_video
from lerobot_pipeline.sample_data import generate_episode

FPS = 25
SIZE = (64, 48)  # (width, height)
CAMERAS = ("cam_left", "cam_right", "cam_head")
COLUMNS = ["observation.state.slave", "observation.state.master", "action", "capture_time_ns",
           "timestamp", "frame_index", "episode_index", "index", "task_index"]


@dataclass(frozen=True)
class Converted:
    cfg: PipelineConfig
    raw: RawEpisode
    aligned: AlignedEpisode
    staged: list[StagedPart]


def convert(raw_root: Path, store: Path, episode_id: str = "episode_0001", **overrides) -> Converted:
    cfg = load_config(overrides=overrides)
    ref = find_episode(raw_root, episode_id, cfg)
    raw = read_episode(ref, cfg)
    staged = convert_episode(ref, cfg, store)
    return Converted(cfg, raw, align_episode(raw, cfg), staged)


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate_episode(root, "episode_0001", seconds=2.5, size=SIZE, seed=1)
    generate_episode(root, "episode_0002", seconds=2.0, size=SIZE, seed=2, missing_cameras=("cam_head",))
    return root


@pytest.fixture(scope="module", params=["nearest", "chunking", "window"])
def converted(request, raw_root, tmp_path_factory) -> Converted:
    return convert(raw_root, tmp_path_factory.mktemp("store"), **{"alignment.strategy": request.param})


@functools.cache
def jpeg_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference on the 0..255 scale."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def assert_frame_exact(video: Path, frames, index: np.ndarray) -> None:
    """Decoded frame k shows the JPEG ``index[k]``: close to it, and closer than to either neighbour."""
    own, neighbour = [], []
    decoded = list(decode_frames(video))
    assert len(decoded) == len(index)
    for k, (t, rgb) in enumerate(decoded):
        assert t == pytest.approx(k / FPS, abs=1e-6)
        i = int(index[k])
        own.append(mad(rgb, jpeg_rgb(frames.path(i))))
        others = [mad(rgb, jpeg_rgb(frames.path(j))) for j in (i - 1, i + 1) if 0 <= j < len(frames.t_ns)]
        neighbour.append(min(others))
        assert own[-1] < 6.0, f"{video.name} frame {k}: differs from its JPEG {i} by {own[-1]:.2f}"
        assert own[-1] < neighbour[-1], f"{video.name} frame {k} looks more like a neighbour of JPEG {i}"
    # on the whole video, a one-frame shift would cost at least twice the coding error
    assert np.mean(own) < 0.6 * np.mean(neighbour)


# ----------------------------------------------------------------------------- parquet


def test_single_part_with_the_reported_rows(converted):
    (staged,) = converted.staged
    (part,) = converted.aligned.parts
    report = json.loads((staged.dir / "report.json").read_text())
    assert staged.length == report["frames_out"] == len(part.capture_t_ns) > 50
    assert report["strategy"] == converted.cfg.alignment.strategy
    assert report["episode_key"] == "local.episode_0001" and report["n_parts"] == 1


def test_report_utilisation_per_strategy(converted):
    """Share of joint samples used (domain.md §4): nearest ~10 %; chunking uses ~all master samples."""
    (staged,) = converted.staged
    util = json.loads((staged.dir / "report.json").read_text())["utilisation"]
    assert set(util) == {"left_slave", "left_master", "right_slave", "right_master"}
    slaves, masters = [util["left_slave"], util["right_slave"]], [util["left_master"], util["right_master"]]
    strategy = converted.cfg.alignment.strategy
    if strategy == "nearest":
        assert all(0.05 < u < 0.15 for u in slaves + masters)  # one sample of ~10 per 40 ms frame
    elif strategy == "chunking":
        assert all(0.05 < u < 0.15 for u in slaves)  # slaves: nearest only
        assert all(u > 0.85 for u in masters)  # 10 samples x 4 ms = one 40 ms frame period
    else:
        assert all(u > 0.85 for u in slaves + masters)  # +-20 ms windows tile the 40 ms frame period


def test_parquet_columns_timestamps_and_capture_times(converted):
    (staged,) = converted.staged
    (part,) = converted.aligned.parts
    table = pq.read_table(staged.parquet)
    n = staged.length
    assert table.num_rows == n
    assert table.column_names == COLUMNS
    assert table.schema.field("timestamp").type == pa.float32()
    frame_index = table.column("frame_index").to_numpy()
    np.testing.assert_array_equal(frame_index, np.arange(n))
    ts = table.column("timestamp").to_numpy()
    assert ts.dtype == np.float32
    np.testing.assert_array_equal(ts, (np.arange(n) / FPS).astype(np.float32))
    assert (table.column("task_index").to_numpy() == 0).all()
    # real capture time = the base camera time of the frame each row uses
    base = converted.raw.cameras["cam_left"]
    capture = table.column("capture_time_ns").to_numpy()
    np.testing.assert_array_equal(capture, base.t_ns[part.camera_frames["cam_left"]])
    start = part.report.start_frame
    np.testing.assert_array_equal(capture, converted.aligned.timeline.t_ns[start:start + n])
    assert (np.diff(capture) > 0).all()


def test_column_shapes_per_strategy(converted):
    (staged,) = converted.staged
    table = pq.read_table(staged.parquet)
    n = staged.length
    slave = np.stack(table.column("observation.state.slave").to_numpy(zero_copy_only=False))
    master = np.stack(table.column("observation.state.master").to_numpy(zero_copy_only=False))
    assert slave.shape == master.shape == (n, 14)
    action = np.array(table.column("action").to_pylist(), dtype=np.float32)
    if converted.cfg.alignment.strategy == "chunking":
        assert action.shape == (n, 10, 14)
        np.testing.assert_array_equal(action[:, 0, :], master)  # the chunk starts at the nearest sample
    else:
        assert action.shape == (n, 14)
        np.testing.assert_array_equal(action, master)


def test_state_values_match_a_brute_force_reference(converted):
    """Row k's left_slave / right_master values recomputed from the raw samples at its capture time."""
    (staged,) = converted.staged
    table = pq.read_table(staged.parquet)
    slave = np.stack(table.column("observation.state.slave").to_numpy(zero_copy_only=False))
    master = np.stack(table.column("observation.state.master").to_numpy(zero_copy_only=False))
    capture = table.column("capture_time_ns").to_numpy()
    window_ns = converted.cfg.alignment.window_ms * 1e6
    for arm_name, got in (("left_slave", slave[:, :7]), ("right_master", master[:, 7:])):
        arm = converted.raw.arm(arm_name)
        for k in range(0, len(capture), 7):
            d = np.abs(arm.t_ns - capture[k])
            if converted.cfg.alignment.strategy == "window" and (d <= window_ns).any():
                expected = arm.values[d <= window_ns].mean(axis=0)
            else:
                expected = arm.values[int(np.argmin(d))]
            np.testing.assert_allclose(got[k], expected.astype(np.float32), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- videos


def test_videos_have_one_frame_per_row_from_pts_zero(converted):
    (staged,) = converted.staged
    for cam in CAMERAS:
        probe = probe_video(staged.video(cam))
        assert probe.frames == staged.length
        assert probe.first_pts_s == 0.0
        assert probe.fps == FPS
        assert (probe.codec, probe.pix_fmt, probe.width, probe.height) == ("h264", "yuv420p", *SIZE)
        assert not probe.has_audio


def test_videos_are_frame_exact(converted):
    (staged,) = converted.staged
    (part,) = converted.aligned.parts
    for cam in CAMERAS:
        assert_frame_exact(staged.video(cam), converted.raw.cameras[cam], part.camera_frames[cam])
    # the check itself tells a video shifted by one frame from the right one
    frames = converted.raw.cameras["cam_left"]
    shifted = np.minimum(part.camera_frames["cam_left"] + 1, len(frames.t_ns) - 1)
    with pytest.raises(AssertionError):
        assert_frame_exact(staged.video("cam_left"), frames, shifted)


def test_image_stats_match_numpy_stats_of_the_source_jpegs(converted):
    (staged,) = converted.staged
    (part,) = converted.aligned.parts
    stats = staged.stats()
    for cam in CAMERAS:
        s = stats[f"observation.images.{cam}"]
        frames = converted.raw.cameras[cam]
        # fewer than 100 rows: LeRobot samples every frame; pixels of the JPEG each row uses
        px = np.stack([jpeg_rgb(frames.path(int(i))) for i in part.camera_frames[cam]]).reshape(-1, 3) / 255.0
        for key, expected in (("min", px.min(0)), ("max", px.max(0)), ("mean", px.mean(0)), ("std", px.std(0))):
            got = np.array(s[key])
            assert got.shape == (3, 1, 1)
            assert ((got >= 0) & (got <= 1)).all()
            np.testing.assert_allclose(got.reshape(3), expected, atol=1e-6, err_msg=f"{cam} {key}")
        assert s["count"] == [staged.length]
    # numeric features: stats over the rows
    table = pq.read_table(staged.parquet)
    master = np.stack(table.column("observation.state.master").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(stats["observation.state.master"]["mean"], master.astype(np.float64).mean(0), rtol=1e-6)
    assert stats["timestamp"]["max"] == [pytest.approx((staged.length - 1) / FPS)]


# ----------------------------------------------------------------------------- other cases


def test_libsvtav1_videos_are_frame_exact_too(raw_root, tmp_path):
    c = convert(raw_root, tmp_path / "store", **{"alignment.strategy": "nearest", "video.codec": "libsvtav1",
                                                 "video.crf": 30})
    (staged,) = c.staged
    (part,) = c.aligned.parts
    probe = probe_video(staged.video("cam_right"))
    assert (probe.codec, probe.frames, probe.first_pts_s) == ("av1", staged.length, 0.0)
    assert_frame_exact(staged.video("cam_right"), c.raw.cameras["cam_right"], part.camera_frames["cam_right"])


def test_missing_camera_is_written_as_black_frames(raw_root, tmp_path):
    c = convert(raw_root, tmp_path / "store", "episode_0002",
                **{"alignment.strategy": "nearest", "filtering.require_all_cameras": False})
    (staged,) = c.staged
    probe = probe_video(staged.video("cam_head"))
    assert (probe.frames, probe.width, probe.height) == (staged.length, *SIZE)
    decoded = [rgb for _, rgb in decode_frames(staged.video("cam_head"))]
    assert len(decoded) == staged.length and max(int(f.max()) for f in decoded) <= 20
    assert staged.stats()["observation.images.cam_head"]["max"][0][0][0] == 0.0
    report = json.loads((staged.dir / "report.json").read_text())
    assert report["camera_error_ms"]["cam_head"] is None
    # the cameras that exist are still frame-exact
    part = c.aligned.parts[0]
    assert_frame_exact(staged.video("cam_left"), c.raw.cameras["cam_left"], part.camera_frames["cam_left"])


def test_long_recording_is_written_as_parts(raw_root, tmp_path):
    c = convert(raw_root, tmp_path / "store", **{"alignment.strategy": "chunking", "sync.max_episode_sec": 1,
                                                 "filtering.min_duration_sec": 0.2})
    assert len(c.staged) == len(c.aligned.parts) >= 3
    t = c.aligned.timeline.t_ns
    for k, (staged, part) in enumerate(zip(c.staged, c.aligned.parts)):
        assert staged.length <= FPS
        table = pq.read_table(staged.parquet)
        assert table.num_rows == staged.length == probe_video(staged.video("cam_head")).frames
        np.testing.assert_array_equal(table.column("frame_index").to_numpy(), np.arange(staged.length))
        start = part.report.start_frame
        np.testing.assert_array_equal(table.column("capture_time_ns").to_numpy(), t[start:start + staged.length])
        assert staged.uid == f"local.episode_0001#{k}"
    # parts follow each other without overlap
    starts = [p.report.start_frame for p in c.aligned.parts]
    ends = [p.report.start_frame + p.report.frames_out for p in c.aligned.parts]
    assert starts[1:] == ends[:-1]


def test_parquet_written_in_row_groups_holds_the_same_rows(converted, tmp_path):
    """Row groups bound the memory of a long part; the rows are those of the part written as one table."""
    from lerobot_pipeline.core.episode_writer import _arrow_table, write_part_parquet

    part = converted.aligned.parts[0]
    n = len(part.capture_t_ns)
    write_part_parquet(tmp_path / "grouped.parquet", converted.cfg, part, rows_per_group=7)
    grouped = pq.ParquetFile(tmp_path / "grouped.parquet")
    assert grouped.metadata.num_row_groups == -(-n // 7)
    pq.write_table(_arrow_table(converted.cfg, part), tmp_path / "whole.parquet")  # the part as one table
    whole = pq.read_table(tmp_path / "whole.parquet")
    assert grouped.read().equals(whole)
    assert grouped.schema_arrow.equals(whole.schema, check_metadata=True)


@pytest.mark.parametrize("strategy", ["nearest", "chunking", "window"])
def test_reading_and_aligning_arm_by_arm_gives_the_same_parts(raw_root, strategy):
    """The conversion path holds one arm's raw samples at a time; the parts are those of read + align."""
    from lerobot_pipeline.core.convert import read_and_align

    cfg = load_config(overrides={"alignment.strategy": strategy})
    ref = find_episode(raw_root, "episode_0001", cfg)
    whole = align_episode(read_episode(ref, cfg), cfg)
    streamed = read_and_align(ref, cfg)
    assert streamed.raw.arms == () and streamed.raw.warnings == whole.raw.warnings
    assert len(streamed.parts) == len(whole.parts)
    for a, b in zip(streamed.parts, whole.parts):
        assert a.report.to_dict() == b.report.to_dict()
        for name in ("state_slave", "state_master", "action"):
            np.testing.assert_array_equal(getattr(a.arrays, name), getattr(b.arrays, name))
            assert getattr(a.arrays, name).dtype == getattr(b.arrays, name).dtype
        np.testing.assert_array_equal(a.capture_t_ns, b.capture_t_ns)
        assert a.camera_frames.keys() == b.camera_frames.keys()
        for cam in a.camera_frames:
            np.testing.assert_array_equal(a.camera_frames[cam], b.camera_frames[cam])
