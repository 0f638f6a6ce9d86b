"""Dataset assembly (core/dataset.py): meta totals, stable indices, reuse by hard link, atomic swap."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.config import load_config
from lerobot_pipeline.core.convert import convert_episode
from lerobot_pipeline.core.dataset import assemble_dataset, read_provenance
from lerobot_pipeline.core.episode_writer import StagedPart
from lerobot_pipeline.core.raw import find_episode
from lerobot_pipeline.errors import DatasetError
from lerobot_pipeline.sample_data import generate_episode

CAMERAS = ("cam_left", "cam_right", "cam_head")
IDS = ("episode_0000", "episode_0001", "episode_0002", "episode_0003")


def data_path(root: Path, ep: int) -> Path:
    return root / f"data/chunk-000/episode_{ep:06d}.parquet"


def video_path(root: Path, ep: int, cam: str) -> Path:
    return root / f"videos/chunk-000/observation.images.{cam}/episode_{ep:06d}.mp4"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: (sha256, inode)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    for k, (eid, seconds) in enumerate(zip(IDS, (2.0, 2.4, 1.6, 1.2))):
        generate_episode(root, eid, seconds=seconds, size=(64, 48), seed=10 + k)
    return root


class Lab:
    """A store and a dataset location for one test; ``convert(i)`` (re)converts raw episode ``IDS[i]``."""

    def __init__(self, raw_root: Path, tmp: Path):
        self.raw_root = raw_root
        self.store = tmp / "store"
        self.out = tmp / "datasets" / "nearest"
        self.cfg = load_config(overrides={"alignment.strategy": "nearest"})

    def convert(self, i: int) -> StagedPart:
        (part,) = convert_episode(find_episode(self.raw_root, IDS[i], self.cfg), self.cfg, self.store)
        return part

    def assemble(self, parts, cfg=None):
        return assemble_dataset(parts, self.out, cfg or self.cfg)


@pytest.fixture
def lab(raw_root, tmp_path) -> Lab:
    return Lab(raw_root, tmp_path)


def check_consistent(root: Path, expected: list[StagedPart]) -> None:
    """info/episodes/stats/provenance and the parquet files agree; index is 0..total-1 in file order."""
    info = json.loads((root / "meta/info.json").read_text())
    episodes = jsonl(root / "meta/episodes.jsonl")
    stats = jsonl(root / "meta/episodes_stats.jsonl")
    provenance = read_provenance(root)
    n = len(expected)
    lengths = [p.length for p in expected]
    assert info["codebase_version"] == "v2.1" and info["fps"] == 25
    assert (info["total_episodes"], info["total_frames"], info["total_videos"]) == (n, sum(lengths), 3 * n)
    assert info["splits"] == {"train": f"0:{n}"}
    assert [e["episode_index"] for e in episodes] == list(range(n))
    assert [e["length"] for e in episodes] == lengths
    assert [s["episode_index"] for s in stats] == list(range(n))
    assert [r["uid"] for r in provenance] == [p.uid for p in expected]
    assert [r["version"] for r in provenance] == [p.version for p in expected]
    assert jsonl(root / "meta/tasks.jsonl") == [{"task_index": 0, "task": "pick place"}]
    offset = 0
    for ep, part in enumerate(expected):
        table = pq.read_table(data_path(root, ep))
        assert table.num_rows == part.length
        np.testing.assert_array_equal(table.column("index").to_numpy(), np.arange(offset, offset + part.length))
        assert (table.column("episode_index").to_numpy() == ep).all()
        np.testing.assert_array_equal(table.column("frame_index").to_numpy(), np.arange(part.length))
        # the rows are the staged part's rows
        np.testing.assert_array_equal(table.column("capture_time_ns").to_numpy(),
                                      pq.read_table(part.parquet).column("capture_time_ns").to_numpy())
        idx_stats = stats[ep]["stats"]["index"]
        assert (idx_stats["min"], idx_stats["max"]) == ([offset], [offset + part.length - 1])
        assert stats[ep]["stats"]["episode_index"]["min"] == [ep]
        for cam in CAMERAS:
            # videos are hard links of the store's files, never re-encoded
            assert video_path(root, ep, cam).stat().st_ino == part.video(cam).stat().st_ino
        offset += part.length
    assert not data_path(root, n).exists() and not video_path(root, n, "cam_left").exists()
    assert len(list((root / "data").rglob("*.parquet"))) == n


def test_assemble_two_episodes(lab):
    a, b = lab.convert(0), lab.convert(1)
    summary = lab.assemble([a, b])
    assert (summary.root, summary.episodes, summary.frames) == (lab.out, 2, a.length + b.length)
    assert (summary.reused, summary.rewritten, summary.removed) == (0, 2, 0)
    check_consistent(lab.out, [a, b])
    info = json.loads((lab.out / "meta/info.json").read_text())
    assert info["features"]["action"]["shape"] == [14]
    assert info["features"]["observation.images.cam_head"]["shape"] == [48, 64, 3]
    prov = read_provenance(lab.out)
    assert [(r["source"], r["episode_id"], r["strategy"]) for r in prov] == [
        ("local", "episode_0000", "nearest"), ("local", "episode_0001", "nearest")]


def test_reassembling_unchanged_parts_reuses_everything(lab):
    a, b = lab.convert(0), lab.convert(1)
    lab.assemble([a, b])
    inodes = [data_path(lab.out, i).stat().st_ino for i in range(2)]
    summary = lab.assemble([a, b])
    assert (summary.reused, summary.rewritten) == (2, 0)
    assert [data_path(lab.out, i).stat().st_ino for i in range(2)] == inodes
    check_consistent(lab.out, [a, b])


def test_reconverted_episode_keeps_its_index_and_the_other_is_reused(lab):
    a, b = lab.convert(0), lab.convert(1)
    lab.assemble([a, b])
    b_inode = data_path(lab.out, 1).stat().st_ino
    a2 = lab.convert(0)  # same recording converted again: a new version
    assert a2.version != a.version and a2.uid == a.uid
    summary = lab.assemble([b, a2])  # the order given does not move recordings already in the dataset
    assert (summary.episodes, summary.reused, summary.rewritten, summary.removed) == (2, 1, 1, 0)
    check_consistent(lab.out, [a2, b])
    assert data_path(lab.out, 1).stat().st_ino == b_inode  # B's parquet linked from the previous dataset


def test_new_episode_is_appended(lab):
    a, b = lab.convert(0), lab.convert(1)
    lab.assemble([a, b])
    c = lab.convert(2)
    summary = lab.assemble([c, a, b])
    assert (summary.episodes, summary.reused, summary.rewritten) == (3, 2, 1)
    check_consistent(lab.out, [a, b, c])
    assert read_provenance(lab.out)[2]["episode_id"] == "episode_0002"


def test_removed_episode_leaves_no_hole(lab):
    a, b, c = lab.convert(0), lab.convert(1), lab.convert(2)
    lab.assemble([a, b, c])
    summary = lab.assemble([b, c])
    assert (summary.episodes, summary.frames, summary.removed) == (2, b.length + c.length, 1)
    assert summary.reused == 0  # both moved: new episode index and offset, rows re-indexed
    check_consistent(lab.out, [b, c])


def test_failed_assembly_leaves_the_previous_dataset_untouched(lab):
    a, b = lab.convert(0), lab.convert(1)
    lab.assemble([a, b])
    before = snapshot(lab.out)
    c, d = lab.convert(2), lab.convert(3)
    d.video("cam_right").unlink()  # the last part cannot be placed: assembly fails midway
    with pytest.raises((FileNotFoundError, DatasetError), match="cam_right"):
        lab.assemble([a, b, c, d])
    assert snapshot(lab.out) == before
    leftovers = [p.name for p in lab.out.parent.iterdir() if p.name != lab.out.name and not p.name.endswith(".lock")]
    assert leftovers == []
    check_consistent(lab.out, [a, b])
    # and the next good assembly still works from there
    summary = lab.assemble([a, b, c])
    assert (summary.episodes, summary.reused) == (3, 2)
    check_consistent(lab.out, [a, b, c])


def test_episodes_beyond_chunks_size_go_to_the_next_chunk(lab):
    parts = [lab.convert(i) for i in range(3)]
    cfg = load_config(overrides={"alignment.strategy": "nearest", "output.chunks_size": 2})
    lab.assemble(parts, cfg)
    info = json.loads((lab.out / "meta/info.json").read_text())
    assert (info["chunks_size"], info["total_chunks"]) == (2, 2)
    assert (lab.out / "data/chunk-000/episode_000001.parquet").is_file()
    assert (lab.out / "data/chunk-001/episode_000002.parquet").is_file()
    assert (lab.out / "videos/chunk-001/observation.images.cam_head/episode_000002.mp4").is_file()
    assert not (lab.out / "data/chunk-000/episode_000002.parquet").exists()
