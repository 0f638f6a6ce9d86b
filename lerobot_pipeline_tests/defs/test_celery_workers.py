"""Two real Celery workers, PostgreSQL instance storage, a real daemon: a backfill survives a killed worker.

Throwaway services on 127.0.0.1: a redis-server (broker + result backend), a PostgreSQL cluster (the
instance storage of configs/dagster_postgres.yaml), two ``lerobot-pipeline worker start`` processes
(concurrency 1 each, distinct names) and ``dagster-daemon``. The backfill's steps are spread over both
workers; once each has run a step, worker A is SIGKILLed (its whole process group, as a host crash)
while it runs one (frozen with SIGSTOP first, so the kill surely lands mid-task). orphaned_run_sensor
sees A stop answering pings and sends A's task again; worker B runs the step, every run succeeds, and
the dataset holds every episode exactly once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from lerobot_pipeline.cli import orchestrate
from lerobot_pipeline.core.dataset import read_provenance
from lerobot_pipeline.core.validate import validate_dataset
from lerobot_pipeline.daemon import DaemonProcess
from lerobot_pipeline.defs.celery_health import LOST_MESSAGE, celery_app, started_tasks, step_workers
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.localcluster import WorkerProcess, deployment_env, postgres_cluster, write_instance_yaml
from lerobot_pipeline.sample_data import generate_dataset
from lerobot_pipeline.streaming.embedded import start_embedded

from .conftest import REPO_ROOT, SOURCE

pytestmark = pytest.mark.slow

EPISODES = 6  # enough that work is left once both workers have taken steps
STRATEGY = "nearest"
TIMEOUT_S = 150
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


def _error_of(entry) -> str:
    data = getattr(entry.dagster_event, "event_specific_data", None)
    error = getattr(data, "error", None)
    return f" [{error.message.strip()[-300:]}]" if error else ""


def _failures(instance, runs) -> str:
    """Why each failed run failed (run failure and step failure messages), for assertion messages."""
    kinds = {dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ENGINE_EVENT}
    out = []
    for r in runs:
        if r.status == dg.DagsterRunStatus.FAILURE:
            msgs = [e.message + _error_of(e) for e in instance.all_logs(r.run_id, of_type=kinds)
                    if "celery task" not in e.message]
            out.append(f"{r.run_id} {r.tags.get('dagster/partition')}: " + " | ".join(msgs[-4:]))
    return "\n".join(out)


def _freeze_while_running(worker: WorkerProcess, app) -> bool:
    """SIGSTOP the worker's group; keep it frozen if it holds a STARTED task, else let it go on."""
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    if any(meta["result"]["hostname"] == worker.hostname for _, meta in started_tasks(app)):
        return True
    os.killpg(worker.proc.pid, signal.SIGCONT)
    return False


def _wait(cond, timeout: float, what: str, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + "\n---\n".join(_tail(p) for p in logs))
        time.sleep(0.5)


@pytest.fixture
def cluster(tmp_path, isolated_env, monkeypatch):
    """Redis + PostgreSQL + the environment every process of the deployment shares."""
    with start_embedded(db=0) as redis_server, postgres_cluster() as pg_env:
        env = deployment_env(redis_server.url, pg_env, tmp_path / "redis.yaml")
        env.update(LEROBOT_PIPELINE_ORPHAN_SECONDS="3", LEROBOT_PIPELINE_REFRESH_SECONDS="2")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        write_instance_yaml(isolated_env["home"], max_runs=4, video_slots=2)
        isolated_env["work"].mkdir(parents=True, exist_ok=True)
        yield isolated_env


def test_backfill_on_two_celery_workers_survives_a_killed_worker(tmp_path, cluster, monkeypatch):
    # one partition per run, so that the runs (each one conversion step) spread over both workers
    monkeypatch.setenv("LEROBOT_PIPELINE_BACKFILL_BATCH", "1")
    t0 = time.monotonic()
    raw, work = tmp_path / "raw", cluster["work"]
    # 10-s episodes: a step lasts long enough (~3 s) to be caught running; 2-s ones took ~1 s once conversion got
    # faster, and every step could end between two looks
    generate_dataset(raw, episodes=EPISODES, seconds=10.0, size=(64, 48), seed=5)
    instance = dg.DagsterInstance.get()
    assert "postgres" in type(instance.run_storage).__name__.lower()
    keys, skipped = orchestrate.register_episodes(instance, work, raw, SOURCE)
    assert len(keys) == EPISODES and not skipped
    env = dict(os.environ)
    workers = [WorkerProcess(name, env, tmp_path / f"{name}.log") for name in ("wA", "wB")]
    daemon = DaemonProcess(env, tmp_path / "daemon.log", REPO_ROOT / "workspace.yaml")
    logs = [daemon.log_path] + [w.log_path for w in workers]
    try:
        for w in workers:
            w.start()
        _wait(lambda: all(w.ready() for w in workers), 60, "both workers ready", logs)
        daemon.start()
        tag = uuid.uuid4().hex[:12]
        assert orchestrate.launch_backfill(instance, work, STRATEGY, keys, tag) == EPISODES
        runs = lambda: instance.get_runs(dg.RunsFilter(tags={"lerobot_pipeline/backfill": tag}))  # noqa: E731
        hosts = lambda: {h for r in runs() for _, h in step_workers(instance, r.run_id)}  # noqa: E731
        a, b = workers

        # both workers take steps; then A dies (SIGKILL to its group) in the middle of one: frozen first
        # (SIGSTOP), so that the check "A is running a task" cannot go stale before the kill
        _wait(lambda: {a.hostname, b.hostname} <= hosts(), 90, "steps on both workers", logs)
        app = celery_app()
        _wait(lambda: _freeze_while_running(a, app), 60, "worker A frozen while running a task", logs)
        a.kill()
        assert not a.alive()

        res = orchestrate.wait_for_backfill(instance, tag, EPISODES, timeout=TIMEOUT_S)
        assert res.get("failed") == 0 and res.get("succeeded") == EPISODES, (
            f"{res}\n{_failures(instance, runs())}\n" + _tail(daemon.log_path))
        all_runs = runs()
        assert len(all_runs) == EPISODES, "no run failed: the lost step was sent to worker B again"
        engine = dg.DagsterEventType.ENGINE_EVENT
        lost = [(r.run_id, e) for r in all_runs for e in instance.all_logs(r.run_id, of_type=engine)
                if LOST_MESSAGE in e.message]
        assert len(lost) == 1, [e.message for _, e in lost]
        victim, event = lost[0]
        assert a.hostname in event.message and "sent again" in event.message, event.message
        ran_on = [h for step, h in step_workers(instance, victim) if step == event.step_key]
        assert ran_on[-1] == b.hostname, ran_on  # the lost step ran again, on B
        for r in all_runs:  # every step that started succeeded (at least once: a lost step may repeat)
            started = {e.step_key for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_START)}
            ok = {e.step_key for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
            assert ok and ok == started, (r.run_id, started, ok)

        # the refresh sensor assembles the dataset (dataset_job, also on worker B): each episode once
        dataset = PipelineResource(work_dir=str(work)).dataset_dir(STRATEGY)

        def assembled():
            rows = read_provenance(dataset)
            busy = instance.get_runs(dg.RunsFilter(job_name="dataset_job", statuses=IN_FLIGHT))
            return rows if {r["episode_key"] for r in rows} == set(keys) and not busy else None

        rows = _wait(assembled, 90, "the dataset with every episode", logs)
        assert sorted(r["episode_key"] for r in rows if r["part"] == 0) == sorted(keys)
        assert sorted(r["episode_index"] for r in rows) == list(range(len(rows)))
        report = validate_dataset(dataset)
        assert report.ok, report.format()
        print(f"\nmulti-worker backfill of {EPISODES} episodes with a killed worker: {time.monotonic() - t0:.1f} s, "
              f"{len(all_runs)} runs, lost step {event.step_key} re-run on {b.hostname}")
    finally:
        daemon.stop()
        for w in workers:
            w.stop()
        instance.dispose()
    assert not any(w.alive() for w in workers)
