"""End to end with a real ``dagster-daemon``: a job backfill of 4 episodes × window, then the refresh sensor.

The daemon runs in its own session (so its whole process group can be signalled) through an exec
wrapper that restores SIGINT's default disposition (a background process otherwise inherits SIG_IGN
and Dagster maps SIGTERM onto the SIGINT handler, see docs/dagster_notes.md). Teardown always stops
it and then kills, by pid, anything still alive that it started (code server, run workers), and
asserts nothing survives.
"""

from __future__ import annotations

import os
import signal
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
from lerobot_pipeline.core.validate import validate_dataset
from lerobot_pipeline.defs.partitions import multi_key
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.sample_data import generate_dataset

from .conftest import REPO_ROOT, SECONDS, SIZE, SOURCE

pytestmark = pytest.mark.slow

HARD_TIMEOUT_S = 300
BACKFILL_TIMEOUT_S = 180
DATASET_TIMEOUT_S = 120
STRATEGY = "window"
EPISODES = 4
BATCH = 2
EXEC_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


class HardTimeout(BaseException):
    """Raised by SIGALRM in the test's main thread; BaseException so nothing swallows it."""


@pytest.fixture
def hard_timeout():
    def _expired(signum, frame):
        raise HardTimeout(f"daemon test exceeded its hard timeout of {HARD_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(HARD_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _started_by(home: Path, root_pid: int) -> list[psutil.Process]:
    """The daemon's descendants plus any process carrying our DAGSTER_HOME (reparented run workers)."""
    procs = {}
    try:
        root = psutil.Process(root_pid)
        procs[root.pid] = root
        for child in root.children(recursive=True):
            procs[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    me = os.getpid()
    for p in psutil.process_iter(["pid", "uids"]):
        if p.pid == me or p.pid in procs:
            continue
        try:
            if p.info["uids"] and p.info["uids"].real != os.getuid():
                continue
            if p.environ().get("DAGSTER_HOME") == str(home):
                procs[p.pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return list(procs.values())


def _stop_daemon(proc: subprocess.Popen, home: Path) -> list[int]:
    """SIGTERM the daemon's process group, wait, SIGKILL what remains; returns pids that survived it all."""
    tracked = _started_by(home, proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(tracked, timeout=10)
    if alive or proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in alive + [p for p in _started_by(home, proc.pid) if _alive(p)]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=10)
        _, alive = psutil.wait_procs(alive, timeout=10)
    # a process can appear during the shutdown: a spare worker's forkserver, started as the spare was let go,
    # exits by itself once its imports are done and it sees its owner gone. Only what stays is a leak.
    late = [p for p in _started_by(home, proc.pid) if _alive(p) and p.pid not in {a.pid for a in alive}]
    _, late = psutil.wait_procs(late, timeout=20)
    return [p.pid for p in alive + late if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def daemon_env(tmp_path, isolated_env, monkeypatch):
    home = isolated_env["home"]
    (home / "dagster.yaml").write_text((REPO_ROOT / "configs" / "dagster.yaml").read_text())
    monkeypatch.setenv("LEROBOT_PIPELINE_REFRESH_SECONDS", "2")
    monkeypatch.setenv("LEROBOT_PIPELINE_BACKFILL_BATCH", str(BATCH))  # 4 episodes -> 2 runs of 2
    return isolated_env


@pytest.fixture
def start_daemon(tmp_path, daemon_env):
    """``start_daemon()`` launches ``dagster-daemon run -w workspace.yaml``; teardown always stops it.

    Start it only once the instance's SQLite storages exist: several processes creating them at the
    same time on a fresh DAGSTER_HOME race (seen: "Version table 'alembic_version' has more than one
    head present" in the next CLI).
    """
    home = daemon_env["home"]
    started: list[subprocess.Popen] = []
    log_path = tmp_path / "daemon.log"
    log = open(log_path, "wb")

    def _start() -> subprocess.Popen:
        daemon_bin = Path(sys.executable).with_name("dagster-daemon")
        proc = subprocess.Popen(
            [sys.executable, "-c", EXEC_WITH_DEFAULT_SIGINT, str(daemon_bin), "run",
             "-w", str(REPO_ROOT / "workspace.yaml")],
            cwd=REPO_ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        started.append(proc)
        return proc

    try:
        yield _start, log_path
    finally:
        signal.alarm(0)  # the hard timeout must not interrupt the shutdown below (itself bounded, ~50 s at most)
        survivors = [pid for proc in started for pid in _stop_daemon(proc, home)]
        log.close()
        assert not survivors, f"processes of the daemon survived teardown: {survivors}"


def _init_storage(instance: dg.DagsterInstance) -> None:
    """Create the run, event log and schedule storages (tables and alembic stamps) in this process."""
    instance.get_runs(limit=1)
    instance.get_dynamic_partitions("episode")
    instance.all_instigator_state()


def _log_tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def test_backfill_runs_batches_and_each_run_updates_the_dataset(hard_timeout, start_daemon, daemon_env, tmp_path):
    start, log = start_daemon
    t0 = time.monotonic()
    raw = tmp_path / "raw"
    generate_dataset(raw, episodes=EPISODES, seconds=SECONDS, size=SIZE, seed=3)
    work = daemon_env["work"]
    instance = dg.DagsterInstance.get()  # $DAGSTER_HOME, the daemon's instance
    try:
        _init_storage(instance)
        proc = start()
        keys, skipped = orchestrate.register_episodes(instance, work, raw, SOURCE)
        assert len(keys) == EPISODES and not skipped

        tag = uuid.uuid4().hex[:12]
        n_runs = orchestrate.launch_backfill(instance, work, STRATEGY, keys, tag)
        assert n_runs == EPISODES // BATCH
        res = orchestrate.wait_for_backfill(instance, tag, n_runs, timeout=BACKFILL_TIMEOUT_S)
        assert proc.poll() is None, "daemon died:\n" + _log_tail(log)
        assert not res.get("timeout"), f"backfill timed out: {res}\n" + _log_tail(log)
        assert res == {"runs": n_runs, "succeeded": n_runs, "failed": 0}, res
        t_backfill = time.monotonic() - t0

        runs = instance.get_runs(dg.RunsFilter(tags={"lerobot_pipeline/backfill": tag}))
        ranges = sorted((r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                        for r in runs)
        assert ranges == [(str(multi_key(keys[i], STRATEGY)), str(multi_key(keys[i + 1], STRATEGY)))
                          for i in range(0, EPISODES, BATCH)]
        assert all(r.job_name == "convert_episode_job" and r.tags["alignment_strategy"] == STRATEGY for r in runs)
        assert all(r.tags.get("dagster/sensor_name") == "backfill_sensor" for r in runs)
        # every partition materialised once, by its batch's run
        assert instance.get_materialized_partitions(dg.AssetKey("episode_metadata")) == {
            str(multi_key(k, STRATEGY)) for k in keys}

        # the runs assembled the dataset themselves as they ended: no refresh tick needed
        dataset = PipelineResource(work_dir=str(work)).dataset_dir(STRATEGY)
        held = {row["episode_key"] for row in read_provenance(dataset)}
        assert held == set(keys), sorted(held)
        t_dataset = time.monotonic() - t0
        report = validate_dataset(dataset)
        assert report.ok, report.format()
        assert sorted(row["episode_index"] for row in read_provenance(dataset)) == list(range(EPISODES))
        # and the refresh sensor agrees there is nothing left to do
        time.sleep(3)
        assert not instance.get_runs(dg.RunsFilter(job_name="dataset_job")), "dataset already current"
        print(f"\nbackfill done after {t_backfill:.1f} s, dataset complete after {t_dataset:.1f} s")
    finally:
        instance.dispose()
