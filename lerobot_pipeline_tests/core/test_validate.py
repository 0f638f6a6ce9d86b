"""validate_dataset on a tiny valid v2.1 dataset and on one-edit damaged copies of it (no mocks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lerobot_pipeline.core.validate import Problem, ValidationReport, format_episode_path, validate_dataset
from lerobot_pipeline_tests.core import v21_factory as f

FPS = 10
LENGTHS = (6, 9)
CAM = f.CAMERA
EP0 = "data/chunk-000/episode_000000.parquet"
EP1 = "data/chunk-000/episode_000001.parquet"
VID0 = f"videos/chunk-000/{CAM}/episode_000000.mp4"
VID1 = f"videos/chunk-000/{CAM}/episode_000001.mp4"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return f.make_v21_dataset(tmp_path_factory.mktemp("v21") / "ds", lengths=LENGTHS, fps=FPS)


@pytest.fixture
def ds(pristine, tmp_path) -> Path:
    """A fresh copy of the valid dataset that a test may damage."""
    return Path(shutil.copytree(pristine, tmp_path / "ds"))


def problems_at(report: ValidationReport, where: str, severity: str = "error") -> list[Problem]:
    return [p for p in report.problems if p.severity == severity and where in p.where]


# ----------------------------------------------------------------------------------------- valid datasets
@pytest.mark.parametrize("decode", [False, True])
def test_valid_dataset_is_ok(pristine, decode):
    report = validate_dataset(pristine, decode_videos=decode)
    assert report.ok, report.format()
    assert report.problems == ()
    assert (report.episodes, report.frames, report.videos_checked) == (2, 15, 2)
    assert report.format().splitlines()[-1] == "VALID: 2 episodes, 15 frames"
    assert report.root == Path(pristine)


def test_small_chunks_size_uses_chunk_directories(tmp_path):
    root = f.make_v21_dataset(tmp_path / "ds", lengths=(3, 4, 5), fps=FPS, chunks_size=2)
    assert (root / "data/chunk-001/episode_000002.parquet").is_file()
    report = validate_dataset(root)
    assert report.ok, report.format()
    assert report.frames == 12


def test_two_dimensional_feature(tmp_path):
    root = f.make_v21_dataset(tmp_path / "ds", lengths=(4,), fps=FPS, action_shape=(3, 2), cameras=())
    report = validate_dataset(root)
    assert report.ok, report.format()

    ragged = pa.array([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]] * 3 + [[[0.0, 1.0], [2.0], [4.0, 5.0]]],
                      pa.list_(pa.list_(pa.float32())))
    f.edit_parquet(f.data_file(root, 0), lambda t: f.set_column(t, "action", ragged))
    report = validate_dataset(root)
    assert not report.ok
    [problem] = problems_at(report, f"{EP0}: action")
    assert "row 3" in problem.message


def test_float64_vector_is_only_a_warning(ds):
    def to_float64(t: pa.Table) -> pa.Table:
        state = t.column("observation.state").combine_chunks()
        return f.set_column(t, "observation.state", state.cast(pa.list_(pa.float64(), f.STATE_DIM)))

    f.edit_parquet(ds / EP0, to_float64)
    report = validate_dataset(ds)
    assert report.ok, report.format()
    assert problems_at(report, f"{EP0}: observation.state", "warning")
    assert report.format().splitlines()[-1] == "VALID: 2 episodes, 15 frames (1 warning)"


# ----------------------------------------------------------------------------------------- damages
def _set_info(key, value):
    return lambda root: f.edit_json(root / "meta/info.json", lambda info: info.__setitem__(key, value))


def _episode_length_off(root):
    def edit(rows):
        rows[0]["length"] += 1

    f.edit_jsonl(root / "meta/episodes.jsonl", edit)


def _timestamps_absolute_ns(root):
    t0_ns = 1_718_000_000_000_000_000
    ns = t0_ns + np.arange(LENGTHS[1]) * (1_000_000_000 // FPS)
    f.edit_parquet(root / EP1, lambda t: f.set_column(t, "timestamp", pa.array(ns.astype(np.float32))))


def _index_gap(root):
    f.edit_parquet(root / EP1, lambda t: f.set_column(
        t, "index", pa.array(np.arange(LENGTHS[1], dtype=np.int64) + LENGTHS[0] + 1)))


def _drop_stats_feature(root):
    def edit(rows):
        del rows[0]["stats"]["action"]

    f.edit_jsonl(root / "meta/episodes_stats.jsonl", edit)


def _flatten_image_stats(root):
    def edit(rows):
        cam = rows[1]["stats"][CAM]
        for key in ("min", "max", "mean", "std"):
            cam[key] = np.ravel(cam[key]).tolist()

    f.edit_jsonl(root / "meta/episodes_stats.jsonl", edit)


def _video_one_frame_short(root):
    frames = f.synthetic_frames(LENGTHS[1] - 1, 32, 24)
    f.encode_video(root / VID1, frames, FPS)


def _video_starts_late(root):
    f.encode_video(root / VID0, f.synthetic_frames(LENGTHS[0], 32, 24), FPS, start_pts=1)


def _stray_parquet(root):
    shutil.copy(root / EP1, root / "data/chunk-000/episode_000002.parquet")


def _delete_video(root):
    (root / VID1).unlink()


def _nan_in_state(root):
    def edit(t: pa.Table) -> pa.Table:
        state = np.asarray(t.column("observation.state").combine_chunks().flatten()).reshape(-1, f.STATE_DIM).copy()
        state[3, 2] = np.nan
        return f.set_column(t, "observation.state", f.vector_array(state))

    f.edit_parquet(root / EP0, edit)


def _state_too_short(root):
    short = np.zeros((LENGTHS[1], f.STATE_DIM - 1), dtype=np.float32)
    f.edit_parquet(root / EP1, lambda t: f.set_column(t, "observation.state", f.vector_array(short)))


# (damage, where the problem must be reported, a word its message must contain)
DAMAGES = {
    "total_frames_wrong": (_set_info("total_frames", sum(LENGTHS) + 1), "meta/info.json: total_frames", "16"),
    "episodes_length_off": (_episode_length_off, "meta/episodes.jsonl: episode 0", "length 7"),
    "timestamp_absolute_ns": (_timestamps_absolute_ns, f"{EP1}: timestamp", "1024"),
    "index_not_contiguous": (_index_gap, f"{EP1}: index", "6..14"),
    "stats_feature_missing": (_drop_stats_feature, "meta/episodes_stats.jsonl: episode 0 / action", "missing"),
    "image_stats_wrong_shape": (_flatten_image_stats, f"meta/episodes_stats.jsonl: episode 1 / {CAM}", "[3, 1, 1]"),
    "video_one_frame_fewer": (_video_one_frame_short, f"episode 1 / {CAM}", "8 frames"),
    "video_first_pts_not_0": (_video_starts_late, f"episode 0 / {CAM}", "first frame"),
    "stray_parquet": (_stray_parquet, "data/chunk-000/episode_000002.parquet", "stray"),
    "video_file_missing": (_delete_video, VID1, "missing"),
    "nan_in_state": (_nan_in_state, f"{EP0}: observation.state", "NaN"),
    "codebase_version_wrong": (_set_info("codebase_version", "v2.0"), "meta/info.json: codebase_version", "v2.0"),
    "vector_wrong_length": (_state_too_short, f"{EP1}: observation.state", "do not have 4 values"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_damage_is_reported_at_its_place(ds, name):
    damage, where, word = DAMAGES[name]
    damage(ds)
    report = validate_dataset(ds)
    assert not report.ok
    found = problems_at(report, where)
    assert found, report.format()
    assert any(word in p.message for p in found), report.format()
    assert report.format().splitlines()[-1].startswith("INVALID: ")


@pytest.mark.parametrize("name", ["video_one_frame_fewer", "video_first_pts_not_0"])
def test_video_damage_found_when_decoding(ds, name):
    damage, where, word = DAMAGES[name]
    damage(ds)
    report = validate_dataset(ds, decode_videos=True)
    assert any(word in p.message for p in problems_at(report, where)), report.format()


def test_check_videos_false_skips_video_files(ds):
    _video_one_frame_short(ds)
    report = validate_dataset(ds, check_videos=False)
    assert report.ok, report.format()
    assert report.videos_checked == 0


def test_unreadable_video_is_a_problem(ds):
    (ds / VID0).write_bytes(b"not an mp4 at all")
    report = validate_dataset(ds)
    assert problems_at(report, f"episode 0 / {CAM}")
    assert report.videos_checked == 1


def test_all_problems_are_collected(ds):
    _set_info("total_frames", 99)(ds)
    _nan_in_state(ds)
    _delete_video(ds)
    report = validate_dataset(ds)
    places = {p.where for p in report.errors()}
    assert {"meta/info.json: total_frames", f"{EP0}: observation.state", VID1} <= places


# ----------------------------------------------------------------------------------------- never raises
def test_missing_root(tmp_path):
    report = validate_dataset(tmp_path / "nope")
    assert not report.ok and report.episodes == 0


def test_empty_directory(tmp_path):
    report = validate_dataset(tmp_path)
    assert not report.ok
    assert {"meta/info.json", "meta/tasks.jsonl", "meta/episodes.jsonl", "meta/episodes_stats.jsonl"} <= {
        p.where for p in report.errors()}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"features": 5, "fps": "ten", "data_path": 3}'])
def test_broken_info_json(ds, text):
    (ds / "meta/info.json").write_text(text)
    report = validate_dataset(ds)
    assert not report.ok
    assert any(p.where.startswith("meta/info.json") for p in report.errors())


def test_broken_jsonl_and_parquet(ds):
    (ds / "meta/episodes_stats.jsonl").write_text('{"episode_index": 0, "stats": {}}\nnot json\n')
    (ds / EP1).write_bytes(b"PAR1 garbage")
    report = validate_dataset(ds)
    assert problems_at(report, "meta/episodes_stats.jsonl: line 2")
    assert problems_at(report, EP1)


def test_max_problems_keeps_the_verdict(ds):
    for key in ("total_frames", "total_tasks", "total_videos", "total_chunks"):
        _set_info(key, 99)(ds)
    report = validate_dataset(ds, max_problems=2)
    assert len(report.problems) == 3
    assert report.problems[-1].where == "validator" and "2 more" in report.problems[-1].message
    assert not report.ok


def test_format_episode_path():
    assert format_episode_path(f.DATA_PATH, 1234, 1000) == "data/chunk-001/episode_001234.parquet"
    assert format_episode_path(f.VIDEO_PATH, 5, 2, "observation.images.top") == \
        "videos/chunk-002/observation.images.top/episode_000005.mp4"


def test_deep_episodes_reads_only_those_files_but_still_checks_meta(ds):
    """What a build does after linking unchanged episodes: their content is not read again, everything
    about them in meta/ still is, and a missing file is still an error."""
    (ds / VID0).write_bytes(b"damaged after it was checked")
    assert not validate_dataset(ds).ok
    assert validate_dataset(ds, deep_episodes={1}).ok  # episode 0 trusted: its video is not probed
    assert not validate_dataset(ds, deep_episodes={0}).ok
    (ds / VID0).unlink()
    report = validate_dataset(ds, deep_episodes={1})
    assert not report.ok and any("video of episode 0" in p.message for p in report.errors())
    f.edit_json(ds / "meta" / "info.json", lambda info: info.update(total_frames=999))
    assert problems_at(validate_dataset(ds, deep_episodes=set()), "total_frames")
