"""The code location's shape: asset graph, partitions, checks, jobs, sensors; and that Dagster loads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from lerobot_pipeline.definitions import build_definitions
from lerobot_pipeline.defs.partitions import EPISODE_DIM, STRATEGY_DIM
from lerobot_pipeline.defs.resources import PipelineResource, RedisStreamResource
from lerobot_pipeline.ids import STRATEGIES

REPO_ROOT = Path(__file__).parents[2]
EPISODE_ASSETS = ("aligned_frames", "episode_parquet", "episode_videos", "episode_metadata")
RAW_ASSETS = ("raw_joints", "raw_images")
DATASET_ASSETS = ("lerobot_dataset", "lerobot_dataset_v30")  # v2.1, v3.0
ALL_ASSETS = RAW_ASSETS + EPISODE_ASSETS + DATASET_ASSETS
PARENTS = {
    "raw_joints": set(),
    "raw_images": set(),
    "aligned_frames": {"raw_joints", "raw_images"},
    "episode_parquet": {"aligned_frames"},
    "episode_videos": {"aligned_frames"},
    "episode_metadata": {"episode_parquet", "episode_videos"},
    "lerobot_dataset": {"episode_metadata"},
    "lerobot_dataset_v30": {"episode_metadata"},
}
EPISODE_CHECK = dg.AssetCheckKey(dg.AssetKey("episode_metadata"), "episode_conformance")
DATASET_CHECK = dg.AssetCheckKey(dg.AssetKey("lerobot_dataset"), "dataset_conformance")
DATASET_V30_CHECK = dg.AssetCheckKey(dg.AssetKey("lerobot_dataset_v30"), "dataset_v30_conformance")


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    work = tmp_path_factory.mktemp("work")
    return build_definitions(PipelineResource(work_dir=str(work)), RedisStreamResource(config_path=None))


@pytest.fixture(scope="module")
def graph(defs):
    return defs.resolve_asset_graph()


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(name)


def test_asset_keys(graph):
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(ALL_ASSETS)


@pytest.mark.parametrize("asset", ALL_ASSETS)
def test_parents(graph, asset):
    assert {k.to_user_string() for k in graph.get(_key(asset)).parent_keys} == PARENTS[asset]


def test_raw_assets_are_observable_sources(graph):
    for name in RAW_ASSETS:
        node = graph.get(_key(name))
        assert node.is_observable and not node.is_materializable, name
    for name in EPISODE_ASSETS + DATASET_ASSETS:
        assert graph.get(_key(name)).is_materializable, name


@pytest.mark.parametrize("asset", EPISODE_ASSETS)
def test_episode_assets_are_episode_x_strategy(graph, asset):
    pdef = graph.get(_key(asset)).partitions_def
    assert isinstance(pdef, dg.MultiPartitionsDefinition)
    dims = {d.name: d.partitions_def for d in pdef.partitions_defs}
    assert set(dims) == {EPISODE_DIM, STRATEGY_DIM}
    assert isinstance(dims[EPISODE_DIM], dg.DynamicPartitionsDefinition)
    assert dims[EPISODE_DIM].name == "episode"
    assert isinstance(dims[STRATEGY_DIM], dg.StaticPartitionsDefinition)
    assert dims[STRATEGY_DIM].get_partition_keys() == list(STRATEGIES)


@pytest.mark.parametrize("asset", DATASET_ASSETS)
def test_dataset_is_partitioned_by_strategy(graph, asset):
    pdef = graph.get(_key(asset)).partitions_def
    assert isinstance(pdef, dg.StaticPartitionsDefinition)
    assert pdef.get_partition_keys() == list(STRATEGIES)
    mapping = graph.get_partition_mapping(_key(asset), _key("episode_metadata"))
    assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
    assert mapping.partition_dimension_name == STRATEGY_DIM


@pytest.mark.parametrize("asset", RAW_ASSETS)
def test_raw_assets_are_partitioned_by_episode(graph, asset):
    pdef = graph.get(_key(asset)).partitions_def
    assert isinstance(pdef, dg.DynamicPartitionsDefinition)
    assert pdef.name == "episode"


def test_checks(graph):
    assert set(graph.asset_check_keys) == {EPISODE_CHECK, DATASET_CHECK, DATASET_V30_CHECK}
    episode_check = graph.get(EPISODE_CHECK)
    assert episode_check.blocking, "episode_conformance must block the run (and so the dataset)"
    assert isinstance(episode_check.partitions_def, dg.MultiPartitionsDefinition)
    assert graph.get(DATASET_CHECK).partitions_def.get_partition_keys() == list(STRATEGIES)
    assert graph.get(DATASET_V30_CHECK).partitions_def.get_partition_keys() == list(STRATEGIES)


def test_dataset_formats_are_labelled(graph):
    """The UI tells the two datasets apart: a format tag and a description naming it."""
    for asset, fmt in zip(DATASET_ASSETS, ("v2.1", "v3.0")):
        node = graph.get(_key(asset))
        assert node.tags.get("format") == fmt
        assert f"LeRobot {fmt} dataset" in node.description


def test_jobs(defs):
    convert = defs.resolve_job_def("convert_episode_job")
    assert isinstance(convert.partitions_def, dg.MultiPartitionsDefinition)
    assert {k.to_user_string() for k in convert.asset_layer.executable_asset_keys} >= set(EPISODE_ASSETS)
    dataset = defs.resolve_job_def("dataset_job")
    assert dataset.partitions_def.get_partition_keys() == list(STRATEGIES)
    assert defs.resolve_job_def("observe_raw_job") is not None


def test_sensors(defs):
    sensors = {s.name: s for s in defs.get_repository_def().sensor_defs}
    assert set(sensors) == {"dataset_refresh_sensor", "raw_folder_sensor", "episode_stream_sensor",
                            "orphaned_run_sensor", "backfill_sensor"}
    assert sensors["backfill_sensor"].job_name == "convert_episode_job"
    assert sensors["backfill_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["orphaned_run_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["dataset_refresh_sensor"].job_name == "dataset_job"
    assert sensors["dataset_refresh_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["raw_folder_sensor"].job_name == "convert_episode_job"
    assert sensors["raw_folder_sensor"].default_status == dg.DefaultSensorStatus.STOPPED
    assert sensors["episode_stream_sensor"].job_name == "convert_episode_job"


def test_every_asset_and_check_has_a_description(graph):
    for key in graph.get_all_asset_keys():
        assert (graph.get(key).description or "").strip(), f"{key.to_user_string()} has no description"
    for key in graph.asset_check_keys:
        assert (graph.get(key).description or "").strip(), f"{key} has no description"


def test_definitions_validate_cli(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "configs" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "LEROBOT_PIPELINE_WORK_DIR": str(tmp_path / "work")}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr
