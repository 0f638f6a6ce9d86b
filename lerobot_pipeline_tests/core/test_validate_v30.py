"""The v3.0 validator: a native dataset passes; each corruption is caught and named where it is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.config import load_config
from lerobot_pipeline.core.convert import convert_episode
from lerobot_pipeline.core.raw import find_episode
from lerobot_pipeline.core.v30.video_concat import Segment, concat_videos
from lerobot_pipeline.core.v30.writer import assemble_dataset_v30
from lerobot_pipeline.core.validate import validate_dataset
from lerobot_pipeline.sample_data import generate_episode

EPISODES_META = "meta/episodes/chunk-000/file-000.parquet"
DATA = "data/chunk-000/file-000.parquet"
LEFT = "videos/observation.images.cam_left/chunk-000/file-000.mp4"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    cfg = load_config(overrides={"alignment.strategy": "nearest", "output.format": "v3.0"})
    raw, store = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("store")
    parts = []
    for k, eid in enumerate(("episode_0000", "episode_0001")):
        generate_episode(raw, eid, seconds=1.2, size=(64, 48), seed=40 + k)
        parts += convert_episode(find_episode(raw, eid, cfg), cfg, store)
    out = tmp_path_factory.mktemp("ds") / "good"
    assemble_dataset_v30(parts, out, cfg)
    return out


@pytest.fixture
def ds(good, tmp_path) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(good, copy)
    return copy


def edit_column(path: Path, name: str, fn) -> None:
    table = pq.read_table(path)
    values = fn(table.column(name).to_pylist())
    i = table.schema.get_field_index(name)
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type)), path)


def edit_info(root: Path, **changes) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info.update(changes)
    (root / "meta/info.json").write_text(json.dumps(info))


def errors(root: Path, **kw) -> list[str]:
    report = validate_dataset(root, **kw)
    assert report.version == "v3.0"
    return [f"{p.where}: {p.message}" for p in report.errors()]


def test_native_dataset_is_valid(good):
    report = validate_dataset(good, decode_videos=True)
    assert report.ok, report.format()
    assert report.episodes == 2 and report.videos_checked == 3
    assert "LeRobot v3.0 validation" in report.format()


def shift_from_timestamp(root):
    edit_column(root / EPISODES_META, "videos/observation.images.cam_left/from_timestamp",
                lambda v: [v[0], v[1] + 0.04])


def break_offsets(root):
    edit_column(root / EPISODES_META, "dataset_from_index", lambda v: [v[0], v[1] + 1])


def wrong_length(root):
    edit_column(root / EPISODES_META, "length", lambda v: [v[0] + 1, v[1]])


def drop_a_row(root):
    table = pq.read_table(root / DATA)
    pq.write_table(table.slice(0, table.num_rows - 1), root / DATA)


def bad_timestamp(root):
    edit_column(root / DATA, "timestamp", lambda v: v[:5] + [v[5] + 0.01] + v[6:])


def wrong_episode_index(root):
    edit_column(root / DATA, "episode_index", lambda v: [1] + v[1:])


def total_frames(root):
    edit_info(root, total_frames=1)


def stray_parquet(root):
    shutil.copy(root / DATA, root / "data/chunk-000/file-007.parquet")


def truncated_video(root):
    rows = pq.read_table(root / EPISODES_META).to_pylist()
    tmp = root / "short.mp4"
    concat_videos([Segment(root / LEFT, rows[0]["length"] + 3)], tmp, 25)
    tmp.replace(root / LEFT)


def stats_shape(root):
    two_channels = [[[0.5]], [[0.5]]]  # shape [2, 1, 1] instead of [3, 1, 1]
    edit_column(root / EPISODES_META, "stats/observation.images.cam_left/mean", lambda v: [two_channels] + v[1:])


def negative_std(root):
    edit_column(root / EPISODES_META, "stats/action/std", lambda v: [v[0], [-1.0] * len(v[1])])


def missing_stats_json(root):
    (root / "meta/stats.json").unlink()


def unknown_task(root):
    edit_column(root / EPISODES_META, "tasks", lambda v: [["not a task"]] + v[1:])


CORRUPTIONS = {
    shift_from_timestamp: "episode 1 / observation.images.cam_left",
    break_offsets: "dataset_from_index",
    wrong_length: "length",
    drop_a_row: "data/chunk-000/file-000.parquet",
    bad_timestamp: "timestamp",
    wrong_episode_index: "episode_index",
    total_frames: "total_frames",
    stray_parquet: "stray parquet",
    truncated_video: "episode 1 / observation.images.cam_left",
    stats_shape: "episode 0 / observation.images.cam_left: 'mean' has shape [2, 1, 1]",
    negative_std: "episode 1 / action: 'std' is negative",
    missing_stats_json: "meta/stats.json",
    unknown_task: "not in meta/tasks.parquet",
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS), ids=[f.__name__ for f in CORRUPTIONS])
def test_corruption_is_caught(ds, corrupt):
    corrupt(ds)
    found = errors(ds)
    assert found, f"{corrupt.__name__} not detected"
    assert any(CORRUPTIONS[corrupt] in e for e in found), found


def test_stale_episode_stats_are_a_warning(ds):
    edit_column(ds / EPISODES_META, "stats/observation.state.slave/max", lambda v: [v[0], [x + 1.0 for x in v[1]]])
    report = validate_dataset(ds)
    assert report.ok
    assert [p.where for p in report.warnings() if "do not match the episode's parquet data" in p.message] == [
        "meta/episodes: episode 1 / observation.state.slave"]
    assert any(p.where == "meta/stats.json: observation.state.slave" for p in report.warnings())


def test_cli_validate_reports_the_format(good, capsys):
    from lerobot_pipeline.cli import main

    assert main(["validate", str(good)]) == 0
    assert "LeRobot v3.0 validation" in capsys.readouterr().out
