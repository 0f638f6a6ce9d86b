"""Native LeRobot v3.0 output (core/v30): layout and meta, frame-exact concatenation, incremental updates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.config import load_config
from lerobot_pipeline.core.convert import convert_episode
from lerobot_pipeline.core.dataset import assemble_dataset
from lerobot_pipeline.core.raw import find_episode
from lerobot_pipeline.core.v30.layout import FileId
from lerobot_pipeline.core.v30.placement import OldFile, plan_files
from lerobot_pipeline.core.v30.writer import assemble_dataset_v30
from lerobot_pipeline.core.validate import validate_dataset
from lerobot_pipeline.errors import DatasetError
from lerobot_pipeline.sample_data import generate_episode

CAMERAS = ("cam_left", "cam_right", "cam_head")
KEYS = tuple(f"observation.images.{c}" for c in CAMERAS)
IDS = ("episode_0000", "episode_0001", "episode_0002", "episode_0003")
EPISODES_META = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides={"alignment.strategy": "nearest", "output.format": "v3.0"})


@pytest.fixture(scope="module")
def parts(tmp_path_factory, cfg):
    """Four converted recordings (1.2-2.0 s, 64x48) in one store; each yields one part."""
    raw = tmp_path_factory.mktemp("raw")
    store = tmp_path_factory.mktemp("store")
    out = []
    for k, (eid, seconds) in enumerate(zip(IDS, (1.6, 2.0, 1.2, 1.4))):
        generate_episode(raw, eid, seconds=seconds, size=(64, 48), seed=20 + k)
        (part,) = convert_episode(find_episode(raw, eid, cfg), cfg, store)
        out.append(part)
    return out


def episodes_meta(root: Path) -> list[dict]:
    return pq.read_table(root / EPISODES_META).to_pylist()


def decode_all(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every data/video file: (inode, mtime_ns)."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.parts[len(root.parts)] in ("data", "videos")}


# ----------------------------------------------------------------------------- placement (pure)


def test_plan_files_appends_to_the_open_file_and_rolls_over():
    # previous build: episodes 0,1 in file 0 (900 bytes), episode 2 in file 1 (400 bytes); bound 1000
    prev = [FileId(0, 0), FileId(0, 0), FileId(0, 1)]
    old = {FileId(0, 0): OldFile(900, 2), FileId(0, 1): OldFile(400, 1)}
    plans, locs = plan_files(prev, [10, 20, 30, 40, 50], 3, old, [500, 200], 1000, chunks_size=2)
    # file 0 untouched; file 1 gets episode 3 (400 + 500 < 1000); episode 4 would reach 1100 -> next file,
    # and with 2 files per chunk that is chunk 1 file 0
    assert [(p.fid, p.link, p.old_units, p.new) for p in plans] == [
        (FileId(0, 0), True, 0, []), (FileId(0, 1), False, 30, [3]), (FileId(1, 0), False, 0, [4])]
    assert locs == [FileId(0, 0), FileId(0, 0), FileId(0, 1), FileId(0, 1), FileId(1, 0)]


def test_plan_files_rewrites_from_a_changed_episode_on():
    # episodes 0,1,2 all in file 0; episode 1 changed: keep=1, file 0 keeps only episode 0's 10 rows
    prev = [FileId(0, 0)] * 3
    plans, locs = plan_files(prev, [10, 25, 30], 1, {FileId(0, 0): OldFile(600, 3)}, [100, 100], 10_000, 1000)
    assert [(p.fid, p.link, p.old_units, p.new) for p in plans] == [(FileId(0, 0), False, 10, [1, 2])]
    assert locs == [FileId(0, 0)] * 3


# ----------------------------------------------------------------------------- layout and meta


def test_layout_and_meta(parts, cfg, tmp_path):
    out = tmp_path / "ds"
    summary = assemble_dataset_v30(parts[:3], out, cfg)
    assert (summary.episodes, summary.frames) == (3, sum(p.length for p in parts[:3]))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(["data/chunk-000/file-000.parquet", EPISODES_META, "meta/info.json", "meta/stats.json",
                            "meta/tasks.parquet", "meta/provenance.jsonl"]
                           + [f"videos/{k}/chunk-000/file-000.mp4" for k in KEYS])
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, summary.frames, 1)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert (info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (100, 200)
    assert "total_chunks" not in info and info["features"]["action"]["fps"] == 25
    assert pq.read_table(out / "meta/tasks.parquet").column("task_index").to_pylist() == [0]

    rows = episodes_meta(out)
    lengths = [p.length for p in parts[:3]]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
    assert [r["episode_index"] for r in rows] == [0, 1, 2]
    assert [r["length"] for r in rows] == lengths
    assert [r["dataset_from_index"] for r in rows] == starts
    assert [r["dataset_to_index"] for r in rows] == [s + n for s, n in zip(starts, lengths)]
    for key in KEYS:
        assert [r[f"videos/{key}/from_timestamp"] for r in rows] == pytest.approx([s / 25 for s in starts])
        assert [r[f"videos/{key}/to_timestamp"] for r in rows] == pytest.approx([(s + n) / 25 for s, n in
                                                                                 zip(starts, lengths)])
    assert np.asarray(rows[0]["stats/observation.images.cam_left/mean"]).shape == (3, 1, 1)
    assert rows[1]["stats/index/min"] == [starts[1]] and rows[1]["stats/frame_index/count"] == [lengths[1]]
    stats = json.loads((out / "meta/stats.json").read_text())
    assert stats["index"]["count"] == [summary.frames] and stats["index"]["max"] == [summary.frames - 1]
    provenance = [json.loads(line) for line in (out / "meta/provenance.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in provenance] == [p.uid for p in parts[:3]]
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert data.column("index").to_pylist() == list(range(summary.frames))


def test_frame_exact_across_concatenation(parts, cfg, tmp_path):
    """Episode e's frame k decodes at from_timestamp + k/fps and equals frame k of its own mp4."""
    out = tmp_path / "ds"
    assemble_dataset_v30(parts[:3], out, cfg)
    rows = episodes_meta(out)
    for cam, key in zip(CAMERAS, KEYS):
        joined = dict(decode_all(out / f"videos/{key}/chunk-000/file-000.mp4"))
        times = np.array(sorted(joined))
        for r, p in zip(rows, parts):
            own = decode_all(p.video(cam))
            assert len(own) == p.length
            for k, (_t, img) in enumerate(own):
                want = r[f"videos/{key}/from_timestamp"] + k / 25
                j = int(np.argmin(np.abs(times - want)))
                assert abs(times[j] - want) < 1e-6, (cam, r["episode_index"], k)
                np.testing.assert_array_equal(joined[times[j]], img)
        with av.open(str(out / f"videos/{key}/chunk-000/file-000.mp4")) as c:
            keyframes = {round(float(pk.pts * pk.time_base) * 25) for pk in c.demux(video=0)
                         if pk.size and pk.is_keyframe}
        assert {r["dataset_from_index"] for r in rows} <= keyframes  # every episode starts on a keyframe


def test_native_v30_holds_what_v21_holds(parts, tmp_path):
    """Same parts: identical parquet values, identical decoded frames, identical per-episode stats."""
    c21 = load_config(overrides={"alignment.strategy": "nearest"})
    c30 = load_config(overrides={"alignment.strategy": "nearest", "output.format": "v3.0"})
    v21, v30 = tmp_path / "v21", tmp_path / "v30"
    assemble_dataset(parts, v21, c21)
    assemble_dataset_v30(parts, v30, c30)
    ours = pq.read_table(v30 / "data/chunk-000/file-000.parquet")
    rows = episodes_meta(v30)
    stats21 = [json.loads(line)["stats"] for line in (v21 / "meta/episodes_stats.jsonl").read_text().splitlines()]
    for e, r in enumerate(rows):
        theirs = pq.read_table(v21 / f"data/chunk-000/episode_{e:06d}.parquet")
        mine = ours.slice(r["dataset_from_index"], r["length"])
        assert mine.column_names == theirs.column_names
        for name in theirs.column_names:
            assert mine.column(name).to_pylist() == theirs.column(name).to_pylist(), (e, name)
        for feature, s in stats21[e].items():
            for stat, value in s.items():
                assert r[f"stats/{feature}/{stat}"] == value, (e, feature, stat)
        for key in KEYS:
            own = decode_all(v21 / f"videos/chunk-000/{key}/episode_{e:06d}.mp4")
            joined = decode_all(v30 / f"videos/{key}/chunk-000/file-000.mp4")
            start = round(r[f"videos/{key}/from_timestamp"] * 25)
            window = joined[start:start + r["length"]]
            assert len(window) == len(own)
            for (t0, a), (t1, b) in zip(own, window):
                assert abs(t1 - r[f"videos/{key}/from_timestamp"] - t0) < 1e-6
                np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- incremental, atomic


def test_adding_an_episode_rewrites_only_the_last_files(parts, cfg, tmp_path):
    out = tmp_path / "ds"
    # bounds: two episodes' worth per file, so episodes 0,1 fill file-000 and episode 2 opens file-001
    data_bound = parts[0].parquet.stat().st_size + parts[1].parquet.stat().st_size + 1
    video_bound = max(sum(p.video(c).stat().st_size for p in parts[:2]) for c in CAMERAS) + 1
    bounds = (data_bound, video_bound)
    first = assemble_dataset_v30(parts[:3], out, cfg, bounds_bytes=bounds)
    assert validate_dataset(out).ok
    before = files_under(out)
    assert "data/chunk-000/file-001.parquet" in before
    second = assemble_dataset_v30(parts, out, cfg, bounds_bytes=bounds)
    after = files_under(out)
    assert validate_dataset(out).ok
    untouched = ["data/chunk-000/file-000.parquet"] + [f"videos/{k}/chunk-000/file-000.mp4" for k in KEYS]
    for rel in untouched:
        assert after[rel] == before[rel], f"{rel} was rewritten"
    for rel in set(before) - set(untouched):
        assert after[rel][0] != before[rel][0], f"{rel} should hold the appended episode"
    assert second.files_linked == 4 and second.files_written == 4 + 5  # 1 data + 3 video files, 5 meta files
    assert second.bytes_written < first.bytes_written + parts[3].parquet.stat().st_size * 4
    rows = episodes_meta(out)
    assert [(r["data/file_index"], r["videos/observation.images.cam_left/file_index"]) for r in rows] == [
        (0, 0), (0, 0), (1, 1), (1, 1)]
    assert rows[3]["videos/observation.images.cam_left/from_timestamp"] == pytest.approx(parts[2].length / 25)


def test_size_bound_rolls_over_to_new_files_and_chunks(parts, tmp_path):
    cfg2 = load_config(overrides={"alignment.strategy": "nearest", "output.format": "v3.0", "output.chunks_size": 2})
    out = tmp_path / "ds"
    assemble_dataset_v30(parts, out, cfg2, bounds_bytes=(1, 1))  # every episode in a file of its own
    rows = episodes_meta(out)
    assert [(r["data/chunk_index"], r["data/file_index"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r[f"videos/{k}/from_timestamp"] == 0.0 for r in rows for k in KEYS)
    assert (out / "videos/observation.images.cam_head/chunk-001/file-001.mp4").is_file()
    report = validate_dataset(out, decode_videos=True)
    assert report.ok, report.format()


def test_removing_and_reconverting_keep_indices_stable(parts, cfg, tmp_path):
    out = tmp_path / "ds"
    bounds = (1, 1)  # one episode per file: shows which files are rewritten
    assemble_dataset_v30(parts, out, cfg, bounds_bytes=bounds)
    before = files_under(out)
    assemble_dataset_v30([parts[0], parts[1], parts[3]], out, cfg, bounds_bytes=bounds)  # recording 2 removed
    after = files_under(out)
    provenance = [json.loads(line) for line in (out / "meta/provenance.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in provenance] == [parts[0].uid, parts[1].uid, parts[3].uid]
    assert after["data/chunk-000/file-000.parquet"] == before["data/chunk-000/file-000.parquet"]
    assert after["data/chunk-000/file-001.parquet"] == before["data/chunk-000/file-001.parquet"]
    assert after["data/chunk-000/file-002.parquet"] != before["data/chunk-000/file-002.parquet"]
    assert "data/chunk-000/file-003.parquet" not in after
    held = pq.read_table(out / "data/chunk-000/file-002.parquet").column("episode_index").to_pylist()
    assert held == [2] * parts[3].length
    report = validate_dataset(out, decode_videos=True)
    assert report.ok, report.format()


def test_a_failing_build_leaves_the_dataset_as_it_was(parts, cfg, tmp_path):
    out = tmp_path / "ds"
    assemble_dataset_v30(parts[:2], out, cfg)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = tmp_path / "broken_part"
    shutil.copytree(parts[2].dir, broken)
    # a camera video with the wrong number of frames (another episode's): refused, nothing swapped in
    shutil.copy(parts[0].video("cam_left"), broken / "videos/cam_left.mp4")
    bad = type(parts[2])(broken, parts[2].uid, parts[2].version, parts[2].length, parts[2].task, parts[2].report)
    with pytest.raises(DatasetError, match="episode .* camera cam_left"):
        assemble_dataset_v30(parts[:2] + [bad], out, cfg)
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".ds.build")] == []


def test_removal_inside_a_shared_file_keeps_its_leading_episodes(parts, cfg, tmp_path):
    """All four in one file; drop recording 2: file-000 keeps episodes 0-1 (copied) and gets recording 3."""
    out = tmp_path / "ds"
    assemble_dataset_v30(parts, out, cfg)
    old_rows = pq.read_table(out / "data/chunk-000/file-000.parquet").slice(0, parts[0].length + parts[1].length)
    summary = assemble_dataset_v30([parts[0], parts[1], parts[3]], out, cfg)
    assert summary.files_linked == 0 and summary.episodes == 3
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert data.slice(0, old_rows.num_rows).to_pylist() == old_rows.to_pylist()
    assert data.column("episode_index").to_pylist()[old_rows.num_rows:] == [2] * parts[3].length
    rows = episodes_meta(out)
    joined = decode_all(out / "videos/observation.images.cam_right/chunk-000/file-000.mp4")
    start = round(rows[2]["videos/observation.images.cam_right/from_timestamp"] * 25)
    assert start == old_rows.num_rows and len(joined) == start + parts[3].length
    for (_, a), (_, b) in zip(decode_all(parts[3].video("cam_right")), joined[start:]):
        np.testing.assert_array_equal(a, b)
    report = validate_dataset(out, decode_videos=True)
    assert report.ok, report.format()
