"""The bad-input matrix (docs/bad_input.md): one test per case, on raw files generated here.

Each case ends in a conversion under an explicit, reported policy (rows and frames checked) or in a
:class:`RawDataError` / :class:`EpisodeRejected` naming episode, file and field. Cases already covered
in test_raw.py / test_sync.py / test_ids.py are listed in the docs table under their own names.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from lerobot_pipeline.cli.convert import convert_dataset
from lerobot_pipeline.core.convert import align_episode, convert_episode
from lerobot_pipeline.core.jpeg import ABSENT, EMPTY, NO_EOI, NO_SOI, jpeg_problem
from lerobot_pipeline.core.raw import find_episode, read_episode
from lerobot_pipeline.errors import EpisodeRejected, RawDataError
from lerobot_pipeline_tests.conftest import MS, T0_NS, arm_table

REPO = Path(__file__).resolve().parents[2]
IMAGES = Path("images") / "pick_place" / "episode_0001"
JOINTS = Path("joints") / "pick_place" / "episode_0001"
PERIOD = 40 * MS


def ref_of(root, cfg, episode_id="episode_0001"):
    return find_episode(root, episode_id, cfg)


def frame_file(root, camera: str, k: int) -> Path:
    return root / IMAGES / camera / f"{T0_NS + k * PERIOD}.jpg"


def damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "corrupt":  # not a JPEG at all (e.g. a file overwritten by something else)
        path.write_bytes(np.random.default_rng(0).integers(0, 255, len(data), dtype=np.uint8).tobytes())
    elif kind == "truncated":  # the recorder was killed while writing
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero-byte":
        path.write_bytes(b"")
    else:  # pragma: no cover
        raise ValueError(kind)


def times(*ks) -> np.ndarray:
    return T0_NS + np.asarray(ks, dtype=np.int64) * PERIOD


def joint_times(start_ms: float, stop_ms: float) -> np.ndarray:
    """250 Hz samples on [start, stop] ms, offset 1 ms from the camera grid (no ties)."""
    return T0_NS + np.arange(int(start_ms * MS), int(stop_ms * MS) + 1, 4 * MS, dtype=np.int64)


def arms_on(make_arm, make_config, t_by_arm: dict[str, np.ndarray], default: np.ndarray):
    return [make_arm(t_by_arm.get(a.name, default), name=a.name, role=a.role, joints=7)
            for a in make_config().robot.arms]


# ----------------------------------------------------------------------------- images


def test_jpeg_problem_reads_only_the_markers(tmp_path):
    good = tmp_path / "1.jpg"
    cv2.imwrite(str(good), np.full((16, 16, 3), 90, np.uint8))
    assert jpeg_problem(good) is None
    padded = tmp_path / "2.jpg"  # some encoders pad after EOI
    padded.write_bytes(good.read_bytes() + b"\x00" * 16)
    assert jpeg_problem(padded) is None
    for kind, reason in (("corrupt", NO_SOI), ("truncated", NO_EOI), ("zero-byte", EMPTY)):
        p = tmp_path / f"{kind}.jpg"
        p.write_bytes(good.read_bytes())
        damage(p, kind)
        assert jpeg_problem(p) == reason
    assert jpeg_problem(tmp_path / "absent.jpg") == ABSENT
    png = tmp_path / "3.png"
    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    assert jpeg_problem(png) is None
    png.write_bytes(png.read_bytes()[:-12])
    assert jpeg_problem(png) == "truncated: no IEND chunk at the end"


@pytest.mark.parametrize("kind, reason", [("corrupt", NO_SOI), ("truncated", NO_EOI), ("zero-byte", EMPTY)])
def test_corrupt_truncated_zero_byte_jpegs_are_missing_frames(write_raw, make_config, tmp_path, kind, reason):
    root = write_raw()  # 1 s: 26 frames per camera, 40 ms apart
    damage(frame_file(root, "cam_right", 5), kind)
    cfg = make_config({"filtering.min_duration_sec": 0})
    (part,) = convert_episode(ref_of(root, cfg), cfg, tmp_path / "store")
    r = part.report
    assert part.length == 26 and r.frames_out == 26  # nothing dropped, nothing shifted
    assert r.bad_images == {"cam_right": {f"{T0_NS + 5 * PERIOD}.jpg": reason}}
    assert r.filled_frames == [5] and r.filled_by == {"cam_right": 1}
    assert any("cam_right: 1 unusable image file(s)" in w for w in r.warnings)
    aligned = align_episode(read_episode(ref_of(root, cfg), cfg), cfg)
    # row 5 shows cam_right's nearest *good* frame (4 and 6 tie at 40 ms: the earlier); the rest are exact
    assert aligned.parts[0].camera_frames["cam_right"].tolist() == [*range(5), 4, *range(6, 26)]

    split = make_config({"filtering.min_duration_sec": 0, "sync.gap_policy": "split"})
    parts = align_episode(read_episode(ref_of(root, split), split), split).parts
    assert [(p.report.start_frame, p.report.frames_out) for p in parts] == [(0, 5), (6, 20)]


def test_bad_first_base_frame_is_trimmed_and_the_video_still_sized(write_raw, make_config, tmp_path):
    root = write_raw()
    damage(frame_file(root, "cam_left", 0), "zero-byte")
    cfg = make_config({"filtering.min_duration_sec": 0})
    (part,) = convert_episode(ref_of(root, cfg), cfg, tmp_path / "store")
    assert (part.report.trimmed_start, part.length, part.report.start_frame) == (1, 25, 1)
    assert part.report.capture_start_ns == T0_NS + PERIOD


class _LateCamera(Executor):
    """Encodes on threads, ``camera`` 0.5 s late: it is still being written when an earlier camera's undecodable
    image fails the first attempt (the pool's own order: cam_left, cam_right, cam_head)."""

    def __init__(self, camera: str):
        self.camera, self._threads = camera, ThreadPoolExecutor(4)

    def submit(self, fn, job, /):
        delay = 0.5 if job.camera == self.camera else 0.0
        return self._threads.submit(lambda: (time.sleep(delay), fn(job))[1])


def test_undecodable_image_leaves_no_version_while_other_cameras_were_still_encoding(write_raw, make_config,
                                                                                       tmp_path):
    """The first attempt is thrown away only after its other cameras' encoders stopped writing into it (a
    still-running encoder used to re-create the removed version directory, in 1 of ~6 suite runs)."""
    root = write_raw()
    path = frame_file(root, "cam_right", 7)
    noise = np.random.default_rng(4).integers(0, 255, len(path.read_bytes()) - 4, dtype=np.uint8).tobytes()
    path.write_bytes(b"\xff\xd8\xff" + noise.replace(b"\xff", b"\x00") + b"\xff\xd9")
    cfg = make_config({"filtering.min_duration_sec": 0})
    store = tmp_path / "store"
    pool = _LateCamera("cam_head")
    (part,) = convert_episode(ref_of(root, cfg), cfg, store, pool=pool)
    pool._threads.shutdown(wait=True)  # whatever was still running has finished now
    assert part.report.bad_images == {"cam_right": {path.name: "undecodable (found while encoding)"}}
    versions = list((store / cfg.alignment.strategy / "local.episode_0001" / "versions").iterdir())
    assert [v.name for v in versions] == [part.version]


def test_jpeg_undecodable_past_the_structural_check_is_a_missing_frame(write_raw, make_config, tmp_path):
    """Start and end markers intact, garbage between: only the decoder can tell. The video stage reports it
    (UndecodableImage) and convert_episode aligns the episode again with that frame missing."""
    root = write_raw()
    path = frame_file(root, "cam_right", 7)
    data = path.read_bytes()
    noise = np.random.default_rng(3).integers(0, 255, len(data) - 4, dtype=np.uint8).tobytes()
    path.write_bytes(b"\xff\xd8\xff" + noise.replace(b"\xff", b"\x00") + b"\xff\xd9")
    assert jpeg_problem(path) is None and cv2.imread(str(path)) is None
    cfg = make_config({"filtering.min_duration_sec": 0})
    store = tmp_path / "store"
    (part,) = convert_episode(ref_of(root, cfg), cfg, store)
    r = part.report
    assert part.length == 26 and r.filled_frames == [7] and r.filled_by == {"cam_right": 1}
    assert r.bad_images == {"cam_right": {path.name: "undecodable (found while encoding)"}}
    # the abandoned first attempt left no version behind
    versions = list((store / cfg.alignment.strategy / "local.episode_0001" / "versions").iterdir())
    assert [v.name for v in versions] == [part.version]


def test_extra_bad_marks_frames_that_failed_a_strict_decode(write_raw, make_config):
    # what the video stage passes back for a JPEG that passed the structural check but decodes partially
    root = write_raw()
    cfg = make_config({"filtering.min_duration_sec": 0})
    name = f"{T0_NS + 7 * PERIOD}.jpg"
    raw = read_episode(ref_of(root, cfg), cfg, extra_bad={"cam_head": {name: "partial decode", "1.jpg": "x"}})
    assert raw.cameras["cam_head"].bad == {7: "partial decode"}
    assert any("bad file 1.jpg is not a frame of this camera" in w for w in raw.warnings)
    (part,) = align_episode(raw, cfg).parts
    assert part.report.filled_frames == [7] and part.report.bad_images == {"cam_head": {name: "partial decode"}}
    assert part.camera_frames["cam_head"][7] == 6


def test_images_of_different_sizes_within_a_camera_name_the_file(write_raw, make_config, tmp_path):
    root = write_raw()
    odd = frame_file(root, "cam_head", 3)
    cv2.imwrite(str(odd), np.zeros((32, 24, 3), np.uint8))
    cfg = make_config({"filtering.min_duration_sec": 0})
    with pytest.raises(RawDataError, match=r"image is 24x32, camera's first frame is 16x16") as exc:
        convert_episode(ref_of(root, cfg), cfg, tmp_path / "store")
    assert exc.value.file == str(odd) and "episode_0001" in str(exc.value)


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_missing_or_empty_camera_directory(write_raw, make_config, tmp_path, how):
    root = write_raw()
    cam_dir = root / IMAGES / "cam_head"
    for f in cam_dir.iterdir():
        f.unlink()
    if how == "missing":
        cam_dir.rmdir()
    cfg = make_config({"filtering.min_duration_sec": 0})
    with pytest.raises(EpisodeRejected, match=r"camera\(s\) cam_head missing \(filtering.require_all_cameras\)"):
        convert_episode(ref_of(root, cfg), cfg, tmp_path / "store")
    lax = make_config({"filtering.min_duration_sec": 0, "filtering.require_all_cameras": False})
    raw = read_episode(ref_of(root, lax), lax)
    assert raw.missing_cameras == ("cam_head",)
    assert any("cam_head: no image files" in w for w in raw.warnings)
    (part,) = align_episode(raw, lax).parts
    assert part.report.frames_out == 26 and part.report.camera_error_ms["cam_head"] is None
    assert (part.camera_frames["cam_head"] == -1).all()  # black frames


def test_unsorted_and_repeated_camera_timestamps_are_sorted_once(write_raw, make_config):
    root = write_raw()
    meta_path = root / IMAGES / "metadata.json"
    meta = json.loads(meta_path.read_text())
    ts = meta["cameras"]["cam_right"]["timestamps"]
    meta["cameras"]["cam_right"]["timestamps"] = ts[::-1] + ts[3:5]
    meta_path.write_text(json.dumps(meta))
    cfg = make_config({"filtering.min_duration_sec": 0})
    raw = read_episode(ref_of(root, cfg), cfg)
    np.testing.assert_array_equal(raw.cameras["cam_right"].t_ns, times(*range(26)))
    assert any("cam_right: timestamps in metadata.json are not ascending; sorted" in w for w in raw.warnings)
    assert any("cam_right: 2 repeated timestamp(s) in metadata.json; counted once" in w for w in raw.warnings)
    (part,) = align_episode(raw, cfg).parts
    assert part.camera_frames["cam_right"].tolist() == list(range(26)) and part.report.filled_frames == []


# ----------------------------------------------------------------------------- gaps


def test_multi_second_gap_in_one_camera_is_not_filled(make_raw, make_arm, make_config):
    n = 150  # 6 s
    t = times(*range(n))
    head = np.delete(t, np.arange(50, 100))  # cam_head records nothing for 2 s
    arms = arms_on(make_arm, make_config, {}, joint_times(-9, 6000))
    raw = make_raw({"cam_left": t, "cam_right": t, "cam_head": head}, arms)
    cfg = make_config({"alignment.strategy": "nearest"})  # gap_policy fill, max_fill_ms 120, long_gap_policy split
    parts = align_episode(raw, cfg).parts
    assert [(p.report.start_frame, p.report.frames_out) for p in parts] == [(0, 50), (100, 50)]
    r = parts[0].report
    assert r.long_gaps == 1 and r.dropped_gaps == 50 and r.filled_frames == []
    assert any("gap at frame 50 (t=2.000 s): 50 frame(s), 2000 ms, no valid partner in cam_head" in note
               and "longer than sync.max_fill_ms=120" in note for note in r.notes)
    with pytest.raises(EpisodeRejected, match=r"gap at frame 50 .*cam_head.*sync.long_gap_policy=reject"):
        align_episode(raw, make_config({"alignment.strategy": "nearest", "sync.long_gap_policy": "reject"}))


@pytest.mark.parametrize("hole, expected", [(3, [(0, 60)]), (4, [(0, 30), (34, 26)])])
def test_fill_is_bounded_by_max_fill_ms(make_raw, make_arm, make_config, hole, expected):
    # 3 frames (120 ms) without cam_head are filled; 4 (160 ms) fall to long_gap_policy=split
    t = times(*range(60))
    head = np.delete(t, np.arange(30, 30 + hole))
    arms = arms_on(make_arm, make_config, {}, joint_times(-9, 2400))
    raw = make_raw({"cam_left": t, "cam_right": t, "cam_head": head}, arms)
    parts = align_episode(raw, make_config({"filtering.min_duration_sec": 0})).parts
    assert [(p.report.start_frame, p.report.frames_out) for p in parts] == expected
    if hole == 3:
        assert parts[0].report.filled_frames == [30, 31, 32] and parts[0].report.long_gaps == 0


def test_multi_second_hole_in_the_base_camera_splits_instead_of_stretching_time(make_raw, make_arm, make_config):
    t = np.concatenate([times(*range(50)), times(*range(100, 150))])  # cam_left itself misses 2 s
    arms = arms_on(make_arm, make_config, {}, joint_times(-9, 6000))
    raw = make_raw({"cam_left": t, "cam_right": t, "cam_head": t}, arms)
    parts = align_episode(raw, make_config()).parts
    assert [(p.report.start_frame, p.report.frames_out) for p in parts] == [(0, 50), (50, 50)]
    np.testing.assert_array_equal(parts[1].capture_t_ns, times(*range(100, 150)))
    assert parts[0].report.long_gaps == 1 and parts[0].report.dropped_gaps == 0
    assert any("base camera has no frame for 2000 ms before frame 50" in n for n in parts[0].report.notes)
    with pytest.raises(EpisodeRejected, match="base camera has no frame for 2000 ms"):
        align_episode(raw, make_config({"sync.gap_policy": "reject"}))
    short = np.delete(times(*range(60)), [30, 31, 32])  # 120 ms: kept as it is
    raw = make_raw({"cam_left": short, "cam_right": short, "cam_head": short}, arms)
    (part,) = align_episode(raw, make_config()).parts
    assert part.report.frames_out == 57 and part.report.long_gaps == 0


# ----------------------------------------------------------------------------- joints vs cameras


@pytest.mark.parametrize("strategy", ["chunking", "nearest", "window"])
def test_joints_ending_long_before_the_cameras_are_trimmed_not_frozen(make_raw, make_arm, make_config, strategy):
    # cameras 0..2960 ms (75 frames); joints -9..1959 ms: frame 49 (1960 ms) is 1 ms from the last
    # sample, frame 50 (2000 ms) 41 ms away (> tolerance 20, and no sample in its ±20 ms window)
    t = times(*range(75))
    arms = arms_on(make_arm, make_config, {}, joint_times(-9, 1960))
    raw = make_raw({"cam_left": t, "cam_right": t, "cam_head": t}, arms)
    (part,) = align_episode(raw, make_config({"alignment.strategy": strategy})).parts
    r = part.report
    assert (r.trimmed_start, r.trimmed_end, r.frames_out) == (0, 25, 50)
    assert r.filled_frames == [] and all(e.max_ms <= 20 for e in r.arm_error_ms.values())
    if strategy != "window":
        # the last row's state is the last sample (index 492 at 1959 ms), 1 ms away: not frozen
        assert part.arrays.state_slave[-1, 0] == np.float32(10.0 * 492)


def test_joints_starting_long_after_the_cameras_are_trimmed(make_raw, make_arm, make_config):
    t = times(*range(75))
    arms = arms_on(make_arm, make_config, {}, joint_times(999, 3000))  # 1 s late: frames 0..24 have no state
    raw = make_raw({"cam_left": t, "cam_right": t, "cam_head": t}, arms)
    (part,) = align_episode(raw, make_config()).parts
    assert (part.report.trimmed_start, part.report.trimmed_end, part.report.frames_out) == (25, 0, 50)


@pytest.mark.parametrize("step_ms, hist", [(None, [49] + [0] * 8 + [1, 0]), (40, [41] + [1] * 9 + [0])])
def test_chunking_reports_padded_steps_per_frame(make_raw, make_arm, make_config, step_ms, hist):
    # joints end at 1959 ms (sample 492); chunk of 10. One sample per step: only frame 49 (nearest =
    # sample 492) runs past the end, by 9 steps. 40 ms per step: frame 41 + k (nearest 1639 + 40k ms)
    # has targets up to 1999 + 40k ms, so k + 1 steps past 1959 ms for k = 0..8.
    t = times(*range(75))
    arms = arms_on(make_arm, make_config, {}, joint_times(-9, 1960))
    raw = make_raw({"cam_left": t, "cam_right": t, "cam_head": t}, arms)
    cfg = make_config({"alignment.chunk_step_ms": step_ms})
    (part,) = align_episode(raw, cfg).parts
    assert part.report.padded_steps == {"left_master": hist, "right_master": hist}
    assert sum(hist) == part.report.frames_out == 50


def test_arm_clocks_disagreeing_beyond_tolerance_trim_by_the_late_arm(make_raw, make_arm, make_config):
    # right_master's clock runs 100 ms late: its samples start at 91 ms. Frame 1 (40 ms) is 51 ms from
    # it (invalid), frame 2 (80 ms) 11 ms: trimmed_start = 2; every arm is matched on its own clock.
    t = times(*range(50))
    arms = arms_on(make_arm, make_config, {"right_master": joint_times(91, 2100)}, joint_times(-9, 2000))
    raw = make_raw({"cam_left": t, "cam_right": t, "cam_head": t}, arms)
    for strategy in ("nearest", "chunking"):
        (part,) = align_episode(raw, make_config({"alignment.strategy": strategy})).parts
        assert (part.report.trimmed_start, part.report.frames_out) == (2, 48)
        assert part.report.arm_error_ms["right_master"].max_ms == 11.0


def test_nan_run_longer_than_twice_the_tolerance_is_no_data(write_raw, make_config, tmp_path):
    # 3 s at 250 Hz (samples at 4i ms); left_master joint1_pos NaN for rows 250..499 (1000..1996 ms):
    # the finite neighbours (996 and 2000 ms) are 1004 ms apart > 2 x 20 ms, so those samples are
    # dropped, not interpolated. Frames 26..49 (1040..1960 ms) are > 20 ms from any sample: 24 frames,
    # 960 ms > sync.max_fill_ms -> split. A 5-row run (hole 24 ms) is interpolated as before.
    t = T0_NS + np.arange(751, dtype=np.int64) * 4 * MS
    for rows, parts_expected in ((slice(250, 500), [(0, 26), (50, 26)]), (slice(300, 305), [(0, 76)])):
        v = np.ones((751, 7))
        v[:, 0] = np.arange(751)
        v[rows, 0] = np.nan
        root = write_raw(root=tmp_path / f"raw{rows.start}", seconds=3.0, arms={"left_master.parquet": arm_table(t, v)})
        cfg = make_config()
        raw = read_episode(ref_of(root, cfg), cfg)
        arm = raw.arm("left_master")
        parts = align_episode(raw, cfg).parts
        assert [(p.report.start_frame, p.report.frames_out) for p in parts] == parts_expected
        if rows.stop - rows.start == 250:
            assert arm.nan_dropped == 250 and arm.nan_filled == 0 and len(arm.t_ns) == 501
            assert any("left_master: dropped 250 sample(s) in NaN runs" in w for w in raw.warnings)
        else:
            assert arm.nan_dropped == 0 and arm.nan_filled == 5
            np.testing.assert_allclose(arm.values[300:305, 0], np.arange(300, 305))  # linear in time


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("kind", ["corrupt", "truncated"])
def test_corrupt_or_truncated_parquet_names_the_file(write_raw, make_config, kind):
    root = write_raw()
    path = root / JOINTS / "left_master.parquet"
    data = path.read_bytes()
    path.write_bytes(b"garbage" * 50 if kind == "corrupt" else data[: len(data) // 2])
    cfg = make_config()
    with pytest.raises(RawDataError, match="not a readable parquet file") as exc:
        read_episode(ref_of(root, cfg), cfg)
    assert exc.value.file == str(path) and "episode_0001" in str(exc.value)


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object")])
def test_malformed_images_metadata_names_the_file(write_raw, make_config, text, message):
    root = write_raw()
    (root / IMAGES / "metadata.json").write_text(text)
    cfg = make_config()
    with pytest.raises(RawDataError, match=message) as exc:
        read_episode(ref_of(root, cfg), cfg)
    assert exc.value.file.endswith(str(IMAGES / "metadata.json"))


def test_malformed_joints_metadata_is_reported_and_not_needed(write_raw, make_config):
    root = write_raw()
    (root / JOINTS / "metadata.json").write_text("{trunc")
    cfg = make_config()
    raw = read_episode(ref_of(root, cfg), cfg)
    assert any("metadata.json is not valid JSON" in w and "not used" in w for w in raw.warnings)
    assert len(raw.cameras["cam_left"].t_ns) == 26


@pytest.mark.parametrize("path", ["/home/recorder/data", "../../../../etc", "../../joints/other"])
def test_absolute_or_dotdot_paths_in_metadata_are_never_followed(write_raw, make_config, tmp_path, path):
    root = write_raw(image_meta={"image_path": path, "data_path": path})
    jmeta = root / JOINTS / "metadata.json"
    jmeta.write_text(json.dumps({"episode_id": "episode_0001", "arms": {"left_master": {"file": path + "/x.parquet"}}}))
    cfg = make_config()
    raw = read_episode(ref_of(root, cfg), cfg)
    for name, cam in raw.cameras.items():
        assert cam.directory == (root / IMAGES / name).resolve()
    assert len(raw.arm("left_master").t_ns) == 251


# ----------------------------------------------------------------------------- a batch


def test_one_bad_episode_does_not_stop_the_batch(write_raw, make_config, tmp_path):
    root = write_raw(episode_id="episode_0001")
    write_raw(root=root, episode_id="episode_0002")
    write_raw(root=root, episode_id="episode_0003", seconds=0.2)  # shorter than min_duration_sec 0.5
    (root / "joints/pick_place/episode_0002/right_slave.parquet").write_bytes(b"not parquet")
    damage(root / "images/pick_place/episode_0001/cam_head" / f"{T0_NS + 9 * PERIOD}.jpg", "truncated")
    out = tmp_path / "ds"
    outcome = convert_dataset(root, out, make_config())
    assert outcome.converted == ["local.episode_0001"]
    (failed_key, failed_msg), = outcome.failed
    assert failed_key == "local.episode_0002" and "right_slave.parquet" in failed_msg
    assert "episode 'local.episode_0002'" in failed_msg
    assert outcome.filtered == [
        ("local.episode_0003", "too short: 0.24 s of usable frames < filtering.min_duration_sec=0.5")]
    assert outcome.summary.episodes == 1 and outcome.summary.frames == 26
    assert outcome.summary.provenance[0]["bad_images"] == 1 and outcome.summary.provenance[0]["filled_frames"] == 1
    provenance = [json.loads(line) for line in (out / "meta" / "provenance.jsonl").read_text().splitlines()]
    assert [p["episode_id"] for p in provenance] == ["episode_0001"]


# ----------------------------------------------------------------------------- the docs table


def test_docs_table_names_only_tests_that_exist():
    table = (REPO / "docs" / "bad_input.md").read_text(encoding="utf-8")
    named = re.findall(r"`(lerobot_pipeline_tests/[\w/]+\.py)::(test_\w+)`", table)
    assert len(named) >= 25
    for path, test in named:
        source = (REPO / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {test}\(", source, re.M), \
            f"docs/bad_input.md names {path}::{test}, which does not exist"
