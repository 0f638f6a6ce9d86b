"""WarmRunLauncher (the instance template's run launcher) under a real ``dagster-daemon``: runs in pre-started
workers, each converted once; a worker killed with SIGKILL mid-run is recovered by the orphan sensor and run
retries; ``terminate`` cancels a running run. Fixtures: test_backfill_daemon.py (real daemon, real instance).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest

from lerobot_pipeline.cli import orchestrate
from lerobot_pipeline.core.dataset import read_provenance
from lerobot_pipeline.defs import partitions, sensors
from lerobot_pipeline.defs.partitions import multi_key
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.defs.run_launcher import HOST_TAG, PID_TAG, WarmRunLauncher
from lerobot_pipeline.sample_data import generate_dataset

from .conftest import SIZE, SOURCE
from .test_backfill_daemon import _init_storage, _log_tail, daemon_env, hard_timeout, start_daemon  # noqa: F401

pytestmark = pytest.mark.slow
STRATEGY = "nearest"


def _setup(daemon_env, tmp_path, start_daemon, episodes: int, seconds: float):
    start, log = start_daemon
    raw = tmp_path / "raw"
    generate_dataset(raw, episodes=episodes, seconds=seconds, size=SIZE, seed=5)
    instance = dg.DagsterInstance.get()
    _init_storage(instance)
    proc = start()
    keys, _ = orchestrate.register_episodes(instance, daemon_env["work"], raw, SOURCE)
    return instance, keys, proc, log


def _backfill(instance, work, keys) -> str:
    tag = uuid.uuid4().hex[:12]
    orchestrate.launch_backfill(instance, work, STRATEGY, keys, tag)
    return tag


def _runs(instance, tag):
    return sorted(instance.get_runs(dg.RunsFilter(tags={"lerobot_pipeline/backfill": tag})),
                  key=lambda r: int(r.tags.get("dagster/retry_number", "0")))


def _wait_running(instance, tag, log, timeout=120) -> dg.DagsterRun:
    """The backfill's first run once its step started in its worker (worker pid tagged)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in _runs(instance, tag):
            if PID_TAG in run.tags and instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
                return run
        time.sleep(0.1)
    raise AssertionError("run never started:\n" + _log_tail(log))


def _materialisations(instance, key: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("episode_metadata"), asset_partitions=[key]), limit=100).records
    return len(records)


def _launcher_messages(instance, run_id) -> list[str]:
    return [e.message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if "run worker (pid" in (e.message or "")]


def test_template_uses_the_warm_launcher_and_the_orphan_sensor_host_tag(daemon_env):
    instance = dg.DagsterInstance.get()
    assert isinstance(instance.run_launcher, WarmRunLauncher)
    assert HOST_TAG == sensors.HOST_TAG
    instance.dispose()


def test_backfills_run_once_each_in_warm_workers(hard_timeout, start_daemon, daemon_env, tmp_path):
    instance, keys, proc, log = _setup(daemon_env, tmp_path, start_daemon, episodes=2, seconds=1.5)
    try:
        pids = []
        for attempt in range(2):  # the first run after the daemon starts is cold, the next one warm
            tag = _backfill(instance, daemon_env["work"], keys)
            res = orchestrate.wait_for_backfill(instance, tag, 1, timeout=120)
            assert res == {"runs": 1, "succeeded": 1, "failed": 0}, f"{res}\n" + _log_tail(log)
            (run,) = _runs(instance, tag)
            (message,) = _launcher_messages(instance, run.run_id)
            assert ("pre-started" if attempt else "newly started") in message, message  # ready: load-dependent
            # the worker that executed it is the one tagged (RUN_START names the executing process), also after
            # a re-exec on fresh imports
            assert sensors.worker_pid(instance, run.run_id) == int(run.tags[PID_TAG])
            pids.append(int(run.tags[PID_TAG]))
            for key in keys:
                assert _materialisations(instance, str(multi_key(key, STRATEGY))) == attempt + 1
            # one run per worker process: it exits when its run ends
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and psutil.pid_exists(pids[-1]) and \
                    psutil.Process(pids[-1]).status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.2)
            assert not WarmRunLauncher._is_worker(pids[-1])
            time.sleep(10 if attempt == 0 else 0)  # the spare started when the run ended finishes importing
            if attempt == 0:  # code edited after the spare imported it: the spare re-executes itself (same pid)
                source = Path(partitions.__file__)
                os.utime(source, (source.stat().st_atime, source.stat().st_mtime + 1))
        assert pids[0] != pids[1]
        dataset = PipelineResource(work_dir=str(daemon_env["work"])).dataset_dir(STRATEGY)
        assert sorted(r["episode_key"] for r in read_provenance(dataset)) == sorted(keys)
    finally:
        instance.dispose()


def test_worker_killed_mid_run_is_converted_again_exactly_once(hard_timeout, start_daemon, daemon_env, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("LEROBOT_PIPELINE_ORPHAN_SECONDS", "2")
    instance, keys, proc, log = _setup(daemon_env, tmp_path, start_daemon, episodes=1, seconds=6)
    try:
        tag = _backfill(instance, daemon_env["work"], keys)
        run = _wait_running(instance, tag, log)
        os.kill(int(run.tags[PID_TAG]), signal.SIGKILL)
        # the orphan sensor fails the run, the run-retry daemon then queues its retry (wait_for_backfill can
        # return in between: the failed attempt is the latest until the retry exists)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not any(r.status == dg.DagsterRunStatus.SUCCESS
                                                       for r in _runs(instance, tag)):
            time.sleep(0.5)
        res = orchestrate.wait_for_backfill(instance, tag, 1, timeout=30)
        runs = _runs(instance, tag)
        assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS], \
            f"{res}\n" + _log_tail(log)
        assert runs[1].tags["dagster/retry_number"] == "1"
        assert _materialisations(instance, str(multi_key(keys[0], STRATEGY))) == 1
        dataset = PipelineResource(work_dir=str(daemon_env["work"])).dataset_dir(STRATEGY)
        assert [r["episode_key"] for r in read_provenance(dataset)] == keys
    finally:
        instance.dispose()


def test_a_failure_behind_the_retry_daemons_cursor_is_still_retried_once(hard_timeout, start_daemon, daemon_env,
                                                                        tmp_path, monkeypatch):
    """With SQLite storage a run's RUN_FAILURE event can get a storage id below the run-retry daemon's cursor
    (ids are per run database; seen in CI after a daemon kill), and Dagster never retries it. Here the cursor
    is held far ahead while the worker is killed: the orphan sensor's sweep (defs/run_retry.py) retries it."""
    monkeypatch.setenv("LEROBOT_PIPELINE_ORPHAN_SECONDS", "2")
    monkeypatch.setenv("LEROBOT_PIPELINE_RETRY_GRACE_SECONDS", "5")
    instance, keys, proc, log = _setup(daemon_env, tmp_path, start_daemon, episodes=1, seconds=4)
    cursor = {"EVENT_LOG_CONSUMER_CURSOR-PIPELINE_FAILURE": str(10**9)}
    try:
        tag = _backfill(instance, daemon_env["work"], keys)
        run = _wait_running(instance, tag, log)
        instance.daemon_cursor_storage.set_cursor_values(cursor)
        os.kill(int(run.tags[PID_TAG]), signal.SIGKILL)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not any(r.status == dg.DagsterRunStatus.SUCCESS
                                                       for r in _runs(instance, tag)):
            instance.daemon_cursor_storage.set_cursor_values(cursor)  # the daemon may write back its own value
            time.sleep(0.5)
        runs = _runs(instance, tag)
        assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS], \
            _log_tail(log)
        assert runs[1].parent_run_id == run.run_id and runs[1].tags["dagster/retry_number"] == "1"
        swept = [e.message for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
                 if "orphaned_run_sensor retries it" in (e.message or "")]
        assert swept, "retried by Dagster's daemon after all: the cursor did not hide the failure"
        time.sleep(8)  # more sweeps and retry-daemon ticks: still one retry
        assert len(_runs(instance, tag)) == 2
        assert _materialisations(instance, str(multi_key(keys[0], STRATEGY))) == 1
        dataset = PipelineResource(work_dir=str(daemon_env["work"])).dataset_dir(STRATEGY)
        assert [r["episode_key"] for r in read_provenance(dataset)] == keys
    finally:
        instance.dispose()


def test_terminate_cancels_the_run_in_its_worker(hard_timeout, start_daemon, daemon_env, tmp_path):
    instance, keys, proc, log = _setup(daemon_env, tmp_path, start_daemon, episodes=1, seconds=12)
    try:
        tag = _backfill(instance, daemon_env["work"], keys)
        run = _wait_running(instance, tag, log)
        assert instance.run_launcher.terminate(run.run_id)  # from another process than the daemon's launcher
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not instance.get_run_by_id(run.run_id).is_finished:
            time.sleep(0.2)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED, _log_tail(log)
        pid = int(run.tags[PID_TAG])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and WarmRunLauncher._is_worker(pid):
            time.sleep(0.2)
        assert not WarmRunLauncher._is_worker(pid)
        assert not instance.run_launcher.terminate(run.run_id)  # finished: nothing to terminate
        time.sleep(3)
        assert len(_runs(instance, tag)) == 1, "a cancelled run is not retried"
    finally:
        instance.dispose()


def _retry_like_run(instance: dg.DagsterInstance, stale_pid: int) -> dg.DagsterRun:
    """A run as the run-retry daemon creates one: the failed parent's tags copied, its dead worker's pid
    among them, and a code origin (the launcher refuses a run without one)."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin

    origin = JobPythonOrigin("convert_episode_job", RepositoryPythonOrigin(
        sys.executable, ModuleCodePointer("lerobot_pipeline.definitions", "defs", None)))
    return instance.add_run(dg.DagsterRun(job_name="convert_episode_job", run_id=str(uuid.uuid4()),
                                          job_code_origin=origin,
                                          tags={PID_TAG: str(stale_pid), HOST_TAG: socket.gethostname(),
                                                "dagster/retry_number": "1"}))


def test_a_retried_run_names_its_new_worker_before_the_worker_can_start_it(daemon_env, monkeypatch):
    """Once it acknowledged a run, a worker starts it at once, and run monitoring judges a STARTED run by
    the pid tag. A retry inherits its dead parent's pid: were the tag written after the hand-off, monitoring
    could fail the live retry (seen in CI: an episode converted twice after two daemon kills)."""
    from dagster._core.launcher.base import LaunchRunContext, WorkerStatus

    from lerobot_pipeline.defs import run_launcher

    instance = dg.DagsterInstance.get()
    _init_storage(instance)
    dead = subprocess_dead_pid()
    run = _retry_like_run(instance, dead)
    seen = []

    def spy_hand(worker, run_id, timeout):  # what monitoring would read at the moment the worker may start
        tags = instance.get_run_by_id(run_id).tags
        seen.append((tags[PID_TAG], str(worker.pid)))
        return True  # taken (the worker never gets the line: it is discarded below)

    monkeypatch.setattr(run_launcher._Worker, "hand", spy_hand)
    launcher = WarmRunLauncher(spares=0)
    launcher.register_instance(instance)
    worker = None
    try:
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        assert seen and seen[0][0] == seen[0][1] != str(dead), seen
        latest = instance.get_run_by_id(run.run_id)
        worker = psutil.Process(int(latest.tags[PID_TAG]))
        deadline = time.monotonic() + 30  # the fresh worker is importing; its cmdline names it at once
        while time.monotonic() < deadline and not WarmRunLauncher._is_worker(worker.pid):
            time.sleep(0.05)
        assert launcher.check_run_worker_health(latest).status == WorkerStatus.RUNNING
    finally:
        if worker is not None and worker.is_running():
            worker.kill()
            worker.wait(10)
        launcher.dispose()
        instance.dispose()


def subprocess_dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): a dead worker's."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
