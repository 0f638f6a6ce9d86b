"""Sensors evaluated against a real instance and real converted episodes (no daemon)."""

from __future__ import annotations

import dagster as dg
import pytest

from lerobot_pipeline.defs import sensors
from lerobot_pipeline.defs.dataset_build import store_digest
from lerobot_pipeline.defs.partitions import EPISODE_DIM, multi_key
from lerobot_pipeline.sources import SourceRegistry

from .conftest import SOURCE


def _tick(w, sensor):
    ctx = dg.build_sensor_context(instance=w.instance, definitions=w.defs, resources={"pipeline": w.pipeline})
    return sensor(ctx)


def refresh(w):
    return _tick(w, sensors.dataset_refresh_sensor)


def scan(w):
    return _tick(w, sensors.raw_folder_sensor)


def _requests(result) -> dict[str, dg.RunRequest]:
    assert isinstance(result, dg.SensorResult), result
    return {r.partition_key: r for r in result.run_requests}


def _job_origin(job: str):
    """Where a run of ``job`` comes from: required of QUEUED runs (internal Dagster records, no public API)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(module_name="lerobot_pipeline.definitions", attribute="defs"),
        location_name="lerobot_pipeline")
    return RemoteJobOrigin(repository_origin=RemoteRepositoryOrigin(code_location_origin=location,
                                                                    repository_name="__repository__"),
                           job_name=job)


def _fake_run(w, job: str, status: dg.DagsterRunStatus, tags: dict[str, str]) -> dg.DagsterRun:
    """A run record as the queued run coordinator / a launcher leaves it; nothing executes."""
    return w.instance.create_run_for_job(job_def=w.job(job), status=status, tags=tags,
                                         remote_job_origin=_job_origin(job))


@pytest.fixture
def converted(pipeline_world):
    """Two registered episodes converted with 'nearest'; no dataset assembled yet."""
    w = pipeline_world
    for i in range(2):
        w.record(f"episode_{i:04d}", index=i)
    keys = w.register()
    for k in keys:
        assert w.convert(k, "nearest").success
    return w, keys


# ----------------------------------------------------------------------------- dataset_refresh_sensor


def test_refresh_skips_while_nothing_is_committed(pipeline_world):
    w = pipeline_world
    w.record("episode_0000", index=0)
    w.register()
    result = refresh(w)
    assert isinstance(result, dg.SkipReason)
    assert "every dataset holds the committed episodes" in result.skip_message


def test_refresh_requests_the_strategy_whose_episodes_changed(converted):
    w, keys = converted
    result = refresh(w)
    reqs = _requests(result)
    assert set(reqs) == {"nearest"}, "only the strategy with committed episodes needs a dataset"
    digest = store_digest(w.pipeline, "nearest", keys)
    assert reqs["nearest"].run_key == f"dataset:nearest:{digest}:v2.1"
    assert digest in reqs["nearest"].run_key
    assert reqs["nearest"].tags.get("lerobot_pipeline/trigger") == "refresh"

    # executing what it asked for brings the dataset up to date: the next tick skips with the reason
    assert w.assemble("nearest").success
    result = refresh(w)
    assert isinstance(result, dg.SkipReason)
    assert "every dataset holds the committed episodes" in result.skip_message


def test_refresh_run_key_follows_the_store(converted):
    w, keys = converted
    assert w.assemble("nearest").success
    assert isinstance(refresh(w), dg.SkipReason)

    # a re-converted episode is a new committed version: a new digest, hence a new run key
    assert w.convert(keys[0], "nearest").success
    first = _requests(refresh(w))["nearest"]
    assert first.run_key == f"dataset:nearest:{store_digest(w.pipeline, 'nearest', keys)}:v2.1"

    # a second strategy gets its own request, independent of the first
    assert w.convert(keys[1], "window").success
    reqs = _requests(refresh(w))
    assert set(reqs) == {"nearest", "window"}
    assert reqs["nearest"].run_key == first.run_key
    assert reqs["window"].run_key == f"dataset:window:{store_digest(w.pipeline, 'window', keys)}:v2.1"


def test_refresh_requests_after_a_partition_is_removed(converted):
    w, keys = converted
    assert w.assemble("nearest").success
    w.instance.delete_dynamic_partition(EPISODE_DIM, keys[0])
    reqs = _requests(refresh(w))
    assert set(reqs) == {"nearest"}
    assert reqs["nearest"].run_key == f"dataset:nearest:{store_digest(w.pipeline, 'nearest', [keys[1]])}:v2.1"


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED])
def test_refresh_waits_while_an_assembly_of_that_strategy_is_in_flight(converted, status):
    w, keys = converted
    assert w.convert(keys[0], "window").success
    _fake_run(w, "dataset_job", status, {"dagster/partition": "nearest"})
    result = refresh(w)
    # nearest is in flight; window is not and is still requested
    reqs = _requests(result)
    assert set(reqs) == {"window"}


def test_refresh_skip_names_the_in_flight_strategy(converted):
    w, _ = converted
    _fake_run(w, "dataset_job", dg.DagsterRunStatus.QUEUED, {"dagster/partition": "nearest"})
    result = refresh(w)
    assert isinstance(result, dg.SkipReason)
    assert "nearest: assembly in flight" in result.skip_message

    # finished runs do not hold the strategy back
    run = w.instance.get_runs(dg.RunsFilter(job_name="dataset_job"))[0]
    w.instance.report_run_canceled(run)
    assert set(_requests(refresh(w))) == {"nearest"}


def test_refresh_is_bounded_while_conversions_run(converted):
    if sensors.QUIET_SECONDS < 30:
        pytest.skip(f"LEROBOT_PIPELINE_REFRESH_QUIET_SECONDS={sensors.QUIET_SECONDS} is too short to observe the wait")
    w, keys = converted
    # a conversion of the strategy in flight, but the dataset was never assembled: assemble now
    _fake_run(w, "convert_episode_job", dg.DagsterRunStatus.STARTED,
              {"dagster/partition": str(multi_key(keys[0], "nearest")), "dagster/partition/strategy": "nearest"})
    assert set(_requests(refresh(w))) == {"nearest"}

    # assembled just now, the store moves on while conversions still run: wait for the quiet period
    assert w.assemble("nearest").success
    assert w.convert(keys[1], "nearest").success
    result = refresh(w)
    assert isinstance(result, dg.SkipReason)
    assert "nearest: conversions running" in result.skip_message

    # conversions of another strategy do not hold nearest back
    run = w.instance.get_runs(dg.RunsFilter(job_name="convert_episode_job", statuses=[dg.DagsterRunStatus.STARTED]))[0]
    w.instance.report_run_canceled(run)
    _fake_run(w, "convert_episode_job", dg.DagsterRunStatus.STARTED,
              {"dagster/partition": str(multi_key(keys[0], "window")), "dagster/partition/strategy": "window"})
    assert set(_requests(refresh(w))) == {"nearest"}


# ----------------------------------------------------------------------------- raw_folder_sensor


def test_raw_folder_sensor_registers_complete_episodes_only(pipeline_world):
    w = pipeline_world
    strategy = sensors.SCAN_STRATEGY
    w.record("episode_0000", index=0)
    w.record("episode_0001", index=1)
    w.record("episode_0002", index=2)
    # still being written: the images' metadata.json (written last by a rig) is not there yet
    meta = w.raw / "images" / "pick_place" / "episode_0002" / "metadata.json"
    held_back = meta.read_bytes()
    meta.unlink()
    SourceRegistry(w.work).register(SOURCE, w.raw)

    result = scan(w)
    assert isinstance(result, dg.SensorResult), result
    complete = ["local.episode_0000", "local.episode_0001"]
    [add] = result.dynamic_partitions_requests
    assert add.partitions_def_name == EPISODE_DIM
    assert list(add.partition_keys) == complete
    assert {r.partition_key: r.run_key for r in result.run_requests} == {
        multi_key(k, strategy): f"scan:{k}|{strategy}" for k in complete
    }

    # what the daemon does with the result: add the partitions; then nothing is new
    w.instance.add_dynamic_partitions(EPISODE_DIM, list(add.partition_keys))
    result = scan(w)
    assert isinstance(result, dg.SkipReason)
    assert "no new complete episodes" in result.skip_message

    # the rig finishes the episode: only it is picked up
    meta.write_bytes(held_back)
    result = scan(w)
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["local.episode_0002"]]
    assert [r.run_key for r in result.run_requests] == [f"scan:local.episode_0002|{strategy}"]


def test_raw_folder_sensor_reports_unreadable_sources(pipeline_world):
    w = pipeline_world
    w.raw.mkdir()
    SourceRegistry(w.work).register("gone", w.tmp / "no_such_root")
    result = scan(w)
    assert isinstance(result, dg.SkipReason)
    assert "1 source(s) unreadable" in result.skip_message


def test_worker_alive_tells_live_dead_and_reused_pids():
    import os
    import subprocess
    import sys
    import time

    import psutil

    me = psutil.Process(os.getpid())
    assert sensors.worker_alive(os.getpid(), time.time())
    # a pid whose process started well after the run did is a reused pid, not the run's worker
    assert not sensors.worker_alive(os.getpid(), me.create_time() - 100)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not sensors.worker_alive(gone.pid, time.time())


def test_orphan_sensor_finds_the_worker_pid_of_a_real_run(converted):
    import os

    w, _ = converted
    run = w.instance.get_run_records(dg.RunsFilter(job_name="convert_episode_job"), limit=1)[0].dagster_run
    # in-process runs execute in this test process: their RUN_START event carries its pid
    assert sensors.worker_pid(w.instance, run.run_id) == os.getpid()
    result = _tick(w, sensors.orphaned_run_sensor)
    assert isinstance(result, dg.SkipReason) and "none with a dead worker" in result.skip_message


def test_refresh_leaves_the_first_assembly_to_conversion_runs_that_assemble_as_they_end(converted, monkeypatch):
    """With in-run assembly (the default) a conversion in flight will assemble the dataset when it ends: before
    the first assembly the refresh waits for it (seen in CI: a refresh launched between a backfill run's first
    commit and its own assembly), for at most a quiet period from the conversions' start."""
    w, keys = converted
    w.pipeline = w.pipeline.replace(assemble_after_convert=True)
    _fake_run(w, "convert_episode_job", dg.DagsterRunStatus.STARTED,
              {"dagster/asset_partition_range_start": f"{keys[0]}|nearest",
               "dagster/asset_partition_range_end": f"{keys[1]}|nearest"})
    if sensors.QUIET_SECONDS >= 30:
        result = refresh(w)
        assert isinstance(result, dg.SkipReason) and "nearest: conversions running" in result.skip_message
    monkeypatch.setattr(sensors, "QUIET_SECONDS", 0)  # the conversions have run longer than a quiet period
    assert set(_requests(refresh(w))) == {"nearest"}


def test_refresh_counts_a_backfill_batch_as_conversions_in_flight(converted):
    if sensors.QUIET_SECONDS < 30:
        pytest.skip(f"LEROBOT_PIPELINE_REFRESH_QUIET_SECONDS={sensors.QUIET_SECONDS} is too short to observe the wait")
    w, keys = converted
    assert w.assemble("nearest").success
    assert w.convert(keys[1], "nearest").success  # the store moved on
    # a batch run of window conversions does not hold nearest back; one of nearest does
    _fake_run(w, "convert_episode_job", dg.DagsterRunStatus.STARTED,
              {"dagster/asset_partition_range_start": f"{keys[0]}|window",
               "dagster/asset_partition_range_end": f"{keys[1]}|window"})
    assert set(_requests(refresh(w))) == {"nearest"}
    _fake_run(w, "convert_episode_job", dg.DagsterRunStatus.STARTED,
              {"dagster/asset_partition_range_start": f"{keys[0]}|nearest",
               "dagster/asset_partition_range_end": f"{keys[1]}|nearest"})
    result = refresh(w)
    assert isinstance(result, dg.SkipReason) and "nearest: conversions running" in result.skip_message


def test_refresh_sees_a_commit_made_while_the_dataset_was_built(converted):
    """The dataset records the store digest read before it scanned the store: a commit that lands during the
    build leaves the two different, so the next tick assembles again."""
    w, keys = converted
    assert w.assemble("nearest").success
    assert isinstance(refresh(w), dg.SkipReason)
    state = w.pipeline.dataset_state_path("nearest")
    before = state.read_text()
    assert w.convert(keys[0], "nearest").success  # as if it committed mid-build
    state.write_text(before)
    assert set(_requests(refresh(w))) == {"nearest"}
