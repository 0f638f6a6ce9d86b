"""In-process materialisation against a real temporary instance: conversion, assembly, increments, failures.

Every test builds its own tiny world (64x48 frames, 1.5 s episodes) and runs the real jobs: alignment,
parquet, PyAV encoding, the commit, the blocking episode check and the dataset assembly.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.cli import orchestrate
from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.episode_writer import load_staged, read_manifest
from lerobot_pipeline.core.validate import validate_dataset
from lerobot_pipeline.definitions import build_definitions
from lerobot_pipeline.defs.partitions import EPISODE_DIM, multi_key
from lerobot_pipeline.defs.resources import RedisStreamResource

from .conftest import tree_digest

EPISODE_CHECK = dg.AssetCheckKey(dg.AssetKey("episode_metadata"), "episode_conformance")
STRATEGY = "nearest"


@pytest.fixture
def three(pipeline_world):
    """Three registered episodes, converted and assembled with 'nearest' through materialize_in_process."""
    w = pipeline_world
    for i in range(3):
        w.record(f"episode_{i:04d}", index=i)
    keys = w.register()
    assert keys == ["local.episode_0000", "local.episode_0001", "local.episode_0002"]
    w.materialize(keys, STRATEGY)
    return w, keys


def _cams(w) -> list[str]:
    return [c.name for c in w.pipeline.config(STRATEGY).cameras]


def _files_by_index(w, strategy: str = STRATEGY) -> dict[int, dict[str, Path]]:
    """{episode_index: {"parquet": path, <camera>: video path}} of the current dataset."""
    root, chunks = w.dataset_dir(strategy), w.pipeline.config(strategy).output.chunks_size
    out = {}
    for row in w.provenance(strategy):
        i = row["episode_index"]
        out[i] = {"parquet": root / F.data_file(i, chunks)}
        out[i].update({cam: root / F.video_file(i, cam, chunks) for cam in _cams(w)})
    return out


def _ident(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _check_history(w, partition: str) -> list[str]:
    records = w.instance.event_log_storage.get_asset_check_execution_history(EPISODE_CHECK, limit=50)
    return [r.status.value for r in records if r.partition == partition]


# ----------------------------------------------------------------------------- first build


def test_three_episodes_build_a_valid_dataset(three):
    w, keys = three
    assert w.info()["total_episodes"] == 3
    report = validate_dataset(w.dataset_dir())
    assert report.ok, report.format()
    assert w.index_of() == {keys[0]: 0, keys[1]: 1, keys[2]: 2}
    for row in w.provenance():
        assert row["strategy"] == STRATEGY
        assert row["version"] == read_manifest(w.pipeline.episode_dir(STRATEGY, row["episode_key"]))["version"]

    meta = w.latest_metadata("lerobot_dataset", STRATEGY)
    assert meta["episodes"].value == 3
    assert meta["rewritten"].value == 3 and meta["reused_unchanged"].value == 0
    assert meta["left_out"].value == "none"

    # every partition's blocking check ran and passed
    for key in keys:
        assert _check_history(w, str(multi_key(key, STRATEGY))) == ["SUCCEEDED"]


def test_episode_asset_metadata(three):
    w, keys = three
    partition = str(multi_key(keys[1], STRATEGY))

    em = w.latest_metadata("episode_metadata", partition)
    assert em["status"].value == "committed"
    assert em["frames"].value > 0
    assert 0.0 < em["utilisation"].value <= 1.0
    table = em["alignment_error"]
    assert isinstance(table, dg.TableMetadataValue)
    names = {r.data["name"] for r in table.records}
    assert set(_cams(w)) <= names
    assert {"left_slave", "right_slave"} <= names
    assert {c.name for c in table.schema.columns} >= {"kind", "name", "mean_ms", "p95_ms", "max_ms"}

    af = w.latest_metadata("aligned_frames", partition)
    assert af["status"].value == "aligned"
    plot = af["joint_plot"]
    assert isinstance(plot, dg.MarkdownMetadataValue)
    assert "![" in plot.value and "(data:image/png;base64," in plot.value
    assert af["frames"].value == em["frames"].value

    vids = w.latest_metadata("episode_videos", partition)
    assert vids["videos"].value == len(_cams(w))
    assert "data:image/png;base64," in vids["thumbnails"].value


# ----------------------------------------------------------------------------- increments


def test_rematerialised_episode_keeps_its_index_and_others_are_reused(three):
    w, keys = three
    middle = keys[1]
    before_index = w.index_of()
    before_version = read_manifest(w.pipeline.episode_dir(STRATEGY, middle))["version"]
    files = _files_by_index(w)
    ident = {i: {name: _ident(p) for name, p in f.items()} for i, f in files.items()}
    store_videos = {
        k: {cam: _ident(load_staged(w.pipeline.episode_dir(STRATEGY, k))[0].video(cam)) for cam in _cams(w)}
        for k in keys
    }

    assert w.convert(middle, STRATEGY).success
    assert read_manifest(w.pipeline.episode_dir(STRATEGY, middle))["version"] != before_version
    assert w.assemble(STRATEGY).success

    assert w.index_of() == before_index
    report = validate_dataset(w.dataset_dir())
    assert report.ok, report.format()
    meta = w.latest_metadata("lerobot_dataset", STRATEGY)
    assert meta["reused_unchanged"].value == 2
    assert meta["rewritten"].value == 1

    after = _files_by_index(w)
    middle_index = before_index[middle]
    for i, f in after.items():
        for name, path in f.items():
            if i == middle_index:
                assert _ident(path)[0] != ident[i][name][0], f"episode {i} {name} should be new"
            else:
                # parquet hard-linked from the previous dataset; videos hard-linked from the store, never
                # re-encoded: same inode and same mtime
                assert _ident(path) == ident[i][name], f"episode {i} {name} was rewritten"
    for k in (keys[0], keys[2]):
        for cam in _cams(w):
            video = load_staged(w.pipeline.episode_dir(STRATEGY, k))[0].video(cam)
            assert _ident(video) == store_videos[k][cam]


def test_new_episodes_are_appended(three):
    w, keys = three
    before = w.index_of()
    w.record("episode_0003", index=3)
    w.record("episode_0004", index=4)
    all_keys = w.register()
    new = [k for k in all_keys if k not in keys]
    assert new == ["local.episode_0003", "local.episode_0004"]
    w.materialize(new, STRATEGY)

    index = w.index_of()
    assert {k: index[k] for k in keys} == before
    assert index["local.episode_0003"] == 3 and index["local.episode_0004"] == 4
    assert w.info()["total_episodes"] == 5
    report = validate_dataset(w.dataset_dir())
    assert report.ok, report.format()
    assert w.latest_metadata("lerobot_dataset", STRATEGY)["reused_unchanged"].value == 3


def test_removed_partition_leaves_no_hole(three):
    w, keys = three
    w.instance.delete_dynamic_partition(EPISODE_DIM, keys[1])
    assert keys[1] not in w.instance.get_dynamic_partitions(EPISODE_DIM)
    assert w.assemble(STRATEGY).success

    index = w.index_of()
    assert index == {keys[0]: 0, keys[2]: 1}
    assert sorted(r["episode_index"] for r in w.provenance()) == list(range(len(index)))
    info = w.info()
    assert info["total_episodes"] == 2
    assert info["splits"]["train"] == "0:2"
    report = validate_dataset(w.dataset_dir())
    assert report.ok, report.format()
    chunks = w.pipeline.config(STRATEGY).output.chunks_size
    assert not (w.dataset_dir() / F.data_file(2, chunks)).exists()


# ----------------------------------------------------------------------------- failures


def _truncate_video(w, key: str) -> None:
    """Replace one camera's mp4 in the store by its first half.

    Written as a new file (new inode) on purpose: the dataset hard-links store videos, so truncating in
    place would corrupt the dataset's copy too and no assembly could keep it byte-identical.
    """
    video = load_staged(w.pipeline.episode_dir(STRATEGY, key))[0].video(_cams(w)[0])
    data = video.read_bytes()
    video.unlink()
    video.write_bytes(data[: len(data) // 2])


def _drop_parquet_rows(w, key: str) -> None:
    """Rewrite the store's parquet of ``key`` without its last 5 rows."""
    parquet = load_staged(w.pipeline.episode_dir(STRATEGY, key))[0].parquet
    table = pq.read_table(parquet)
    parquet.unlink()
    pq.write_table(table.slice(0, table.num_rows - 5), parquet)


@pytest.mark.parametrize("corrupt", [_truncate_video, _drop_parquet_rows], ids=["truncated_mp4", "missing_rows"])
def test_corrupted_episode_fails_its_check_and_the_dataset_is_kept(three, corrupt):
    w, keys = three
    dataset = w.dataset_dir()
    # the conversion checked every episode before it reported success
    for key in keys:
        assert _check_history(w, str(multi_key(key, STRATEGY)))[0] == "SUCCEEDED"
    bad = w.record("episode_0003", index=3)
    w.register()
    assert w.convert(bad).success
    info_before = (dataset / "meta" / "info.json").read_bytes()
    provenance_before = w.provenance()
    tree_before = tree_digest(dataset)
    corrupt(w, bad)  # damaged in the store before it entered the dataset: the dataset's own check refuses it

    result = w.assemble(STRATEGY, raise_on_error=False)
    assert not result.success
    message = orchestrate._failure_message(result)
    assert "conformance" in message and bad in message
    assert (dataset / "meta" / "info.json").read_bytes() == info_before
    assert w.provenance() == provenance_before
    assert tree_digest(dataset) == tree_before
    leftovers = [p.name for p in dataset.parent.iterdir()
                 if p.name.startswith((f".{dataset.name}.build-", f".{dataset.name}.old-"))]
    assert not leftovers, f"a failed assembly left {leftovers} behind"


@pytest.mark.parametrize("corrupt", [_truncate_video, _drop_parquet_rows], ids=["truncated_mp4", "missing_rows"])
def test_store_damage_after_an_episode_entered_the_dataset_does_not_reach_it(three, corrupt):
    """A dataset keeps the files it verified: an episode it already holds (same version) is linked from the
    dataset itself, so damage to the store's copy cannot leak into a later build."""
    w, keys = three
    dataset = w.dataset_dir()
    tree_before = tree_digest(dataset)
    corrupt(w, keys[1])
    new = w.record("episode_0003", index=3)
    w.register()
    assert w.convert(new).success
    assert w.assemble(STRATEGY).success
    tree_after = tree_digest(dataset)
    assert all(tree_after[path] == digest for path, digest in tree_before.items() if not path.startswith("meta/"))
    assert validate_dataset(dataset).ok


def test_filtered_episode_succeeds_and_is_left_out_with_its_reason(pipeline_world):
    w = pipeline_world
    assert w.pipeline.config(STRATEGY).filtering.min_duration_sec == 0.5
    w.record("episode_0000", index=0)
    w.record("short_0001", seconds=0.3, index=1)
    keys = w.register()
    good, short = "local.episode_0000", "local.short_0001"
    assert set(keys) == {good, short}

    result = w.convert(short, STRATEGY)
    assert result.success
    partition = str(multi_key(short, STRATEGY))
    for asset in ("aligned_frames", "episode_parquet", "episode_videos", "episode_metadata"):
        meta = w.latest_metadata(asset, partition)
        assert meta["status"].value == "filtered", asset
        assert "too short" in meta["reason"].value, asset
    manifest = read_manifest(w.pipeline.episode_dir(STRATEGY, short))
    assert "too short" in manifest["filtered"]
    # the check does not fail a recording the policy filtered
    assert _check_history(w, partition) == ["SUCCEEDED"]

    assert w.convert(good, STRATEGY).success
    assert w.assemble(STRATEGY).success
    assert w.index_of() == {good: 0}
    left_out = w.latest_metadata("lerobot_dataset", STRATEGY)["left_out"].value
    assert f"{short}: filtered: too short" in left_out
    report = validate_dataset(w.dataset_dir())
    assert report.ok, report.format()


# ----------------------------------------------------------------------------- raw observations


def test_observing_raw_data_versions_each_episode(pipeline_world):
    w = pipeline_world
    w.record("episode_0000", index=0)
    w.record("episode_0001", index=1)
    keys = w.register()

    def versions(asset: str) -> dict[str, str]:
        assert w.job("observe_raw_job").execute_in_process(instance=w.instance).success
        records = w.instance.fetch_observations(dg.AssetKey(asset), limit=100).records
        latest = {}
        for rec in sorted(records, key=lambda r: r.storage_id):
            latest[rec.partition_key] = rec.asset_observation.data_version
        return latest

    joints = versions("raw_joints")
    images = versions("raw_images")
    assert set(joints) == set(images) == set(keys)
    assert len(set(joints.values())) == 2 and len(set(images.values())) == 2

    # a re-recorded frame of one episode changes that episode's image version only
    frame = sorted((w.raw / "images" / "pick_place" / "episode_0001" / "cam_left").iterdir())[0]
    frame.write_bytes(frame.read_bytes() + b"\0")
    after = versions("raw_images")
    assert after[keys[0]] == images[keys[0]]
    assert after[keys[1]] != images[keys[1]]
    assert versions("raw_joints") == joints


def test_a_batch_run_reports_each_partition_and_one_bad_episode_fails_alone(pipeline_world):
    """A backfill run converts a range of partitions in one step: each partition gets its own materialisations
    and check result; a broken recording fails (named in the failure) and the others still commit."""
    w = pipeline_world
    for i in range(3):
        w.record(f"episode_{i:04d}", index=i)
    keys = w.register()
    broken = keys[1]
    joints = next((w.raw / "joints").glob("*/episode_0001"))
    (joints / "left_master.parquet").write_bytes(b"not a parquet file")

    result = w.convert_batch(keys)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.step_failure_data.user_failure_data.description
    assert "1 of 3 episode(s) did not convert" in text and broken in text and "left_master.parquet" in text
    materialized = w.instance.get_materialized_partitions(dg.AssetKey("episode_metadata"))
    assert materialized == {str(multi_key(k, STRATEGY)) for k in keys if k != broken}
    for k in keys:
        history = _check_history(w, str(multi_key(k, STRATEGY)))
        assert (history[:1] == ["SUCCEEDED"]) == (k != broken), (k, history)
    for k in keys:
        assert bool(load_staged(w.pipeline.episode_dir(STRATEGY, k))) == (k != broken)
    # one run for the whole batch
    assert len(w.instance.get_run_records(dg.RunsFilter(job_name="convert_episode_job"))) == 1


def test_a_conversion_run_brings_its_dataset_up_to_date(pipeline_world):
    """With assemble_after_convert (the default), the run that commits an episode also assembles the dataset
    and reports it as a lerobot_dataset materialisation: no sensor tick or second run in between."""
    w = pipeline_world
    w.pipeline = w.pipeline.replace(assemble_after_convert=True)
    w.defs = build_definitions(w.pipeline, RedisStreamResource(config_path=None))
    for i in range(2):
        w.record(f"episode_{i:04d}", index=i)
    keys = w.register()
    assert w.convert(keys[0]).success
    assert w.index_of() == {keys[0]: 0}
    assert w.latest_metadata("lerobot_dataset", STRATEGY)["episodes"].value == 1
    result = w.convert_batch(keys[1:])
    assert result.success
    assert w.index_of() == {keys[0]: 0, keys[1]: 1}
    meta = w.latest_metadata("lerobot_dataset", STRATEGY)
    assert meta["episodes"].value == 2 and meta["reused_unchanged"].value == 1
    assert validate_dataset(w.dataset_dir()).ok
    # the dataset job never ran: the conversion runs did it
    assert not w.instance.get_run_records(dg.RunsFilter(job_name="dataset_job"))
