"""Steps lost with a dead Celery worker, judged by Celery's own signals, from any host.

A step on the Celery executor runs on some worker host; its run process (on the daemon host) waits for
the task's result in the backend. A worker killed with the machine (SIGKILL, power loss) never writes
that result: the task stays STARTED for ever and the run never ends. Celery marks a task whose pool
process died as failed (``WorkerLostError``) itself, but only while the worker's main process lives.
This module covers the rest, without any local pid:

1. running tasks and their worker: ``task_track_started`` + ``result_extended`` make every worker record
   STARTED, its hostname, the task name and its arguments (run id, step key) in the result backend
   before the step begins (earlier than any Dagster event it writes);
2. a worker is dead when it answers no broadcast ping (two tries); a busy worker still answers, its
   main process serves remote control while the pool child runs the step;
3. the dead worker's STARTED tasks of runs still in progress are sent again under their own task id,
   which the run process is waiting on: the step runs on a live worker and the run goes on (Dagster's run retries do
   not apply to runs of a finished job backfill, so failing the run would lose the episode). A task
   lost twice is marked failed with ``WorkerLostError`` (as Celery does when a pool child dies): the
   run then fails the engine's usual way. Tasks of runs no longer in progress are only marked failed.

The scan reads every task record the backend keeps (``result_expires``: a day), once per sensor tick
while Celery runs are in progress. ``step_workers`` tells from Dagster's events which worker ran a step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import dagster as dg

LOST_MESSAGE = "step lost with its celery worker"
MAX_REDELIVERIES = 2
WORKER_METADATA_KEY = "Celery worker"  # set by dagster_celery.tasks on its "Executing steps" event


def step_workers(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """``(step_key, worker hostname)`` of every step execution of the run on a Celery worker, in order."""
    out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = event.engine_event_data if event else None
        worker = data.metadata.get(WORKER_METADATA_KEY) if data and data.metadata else None
        if worker is not None and entry.step_key:
            out.append((entry.step_key, str(getattr(worker, "value", worker))))
    return out


def celery_app(settings=None):
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    from lerobot_pipeline.defs.executors import EXECUTOR_ENV, executor_settings

    settings = settings or executor_settings({**os.environ, EXECUTOR_ENV: "celery"})
    return make_app(CeleryExecutor.for_cli(**settings.celery_config()).app_args())


def unanswered(app, hostnames: Iterable[str], tries: int = 2, timeout: float = 2.0) -> set[str]:
    """The workers among ``hostnames`` that answer none of ``tries`` broadcast pings."""
    missing = set(hostnames)
    for _ in range(tries):
        if not missing:
            break
        replies = app.control.ping(destination=sorted(missing), timeout=timeout, limit=len(missing)) or []
        for reply in replies:
            missing -= set(reply)
    return missing


def started_tasks(app) -> list[tuple[str, dict]]:
    """``(task_id, meta)`` of every task the result backend holds as STARTED."""
    backend = app.backend
    prefix = backend.task_keyprefix
    prefix = prefix.decode() if isinstance(prefix, bytes) else prefix
    out = []
    for key in backend.client.scan_iter(match=f"{prefix}*", count=500):
        raw = backend.client.get(key)
        try:
            meta = json.loads(raw) if raw else None
        except ValueError:
            continue
        if meta and meta.get("status") == "STARTED" and (meta.get("result") or {}).get("hostname"):
            k = key.decode() if isinstance(key, bytes) else key
            out.append((k[len(prefix):], meta))
    return out


def task_step(meta: dict) -> tuple[str | None, list[str]]:
    """The run id and step keys an ``execute_plan`` task executes (from its recorded arguments)."""
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import unpack_value

    packed = (meta.get("kwargs") or {}).get("execute_step_args_packed")
    if not packed:
        return None, []
    try:
        args = unpack_value(packed, as_type=ExecuteStepArgs)
    except Exception:  # noqa: BLE001 - a task of another application or version: not ours to judge
        return None, []
    return args.run_id, list(args.step_keys_to_execute or [])


def redeliver(app, task_id: str, meta: dict, resend: bool = True, max_redeliveries: int = MAX_REDELIVERIES) -> bool:
    """Send a lost task again under its own id (the run process waits on that id); False: marked failed.

    As ``task_acks_late`` would after its visibility timeout, but on a failed health check. The state is
    set to RETRY first, so the next check does not send it twice. A task lost ``max_redeliveries`` times,
    one whose arguments the backend does not hold, or one not to ``resend``, is marked failed
    (WorkerLostError) instead.
    """
    from billiard.exceptions import WorkerLostError

    host = (meta.get("result") or {}).get("hostname")
    count = app.backend.client.incr(f"lerobot_pipeline:celery_redelivered:{task_id}")
    app.backend.client.expire(f"lerobot_pipeline:celery_redelivered:{task_id}", 86400)
    routing_key = meta.get("queue")
    lost = WorkerLostError(f"celery worker {host} stopped answering pings while running this step (host or "
                           "worker died)")
    if not resend or count > max_redeliveries or not meta.get("name") or meta.get("kwargs") is None \
            or not routing_key:
        app.backend.mark_as_failure(task_id, lost)
        return False
    app.backend.mark_as_retry(task_id, lost)
    app.send_task(meta["name"], args=meta.get("args") or (), kwargs=meta["kwargs"], task_id=task_id,
                  queue=routing_key.split(".", 1)[0], routing_key=routing_key)
    return True


def redeliver_lost_steps(instance: dg.DagsterInstance, app=None) -> list[str]:
    """Re-send the running tasks of dead workers; returns "run_id:step_key@worker" for each lost step."""
    app = app or celery_app()
    started = started_tasks(app)
    dead = unanswered(app, {meta["result"]["hostname"] for _, meta in started})
    lost = []
    for task_id, meta in started:
        host = meta["result"]["hostname"]
        if host not in dead:
            continue
        run_id, steps = task_step(meta)
        run = instance.get_run_by_id(run_id) if run_id else None
        if run is None:  # not a step of this instance: not ours to touch
            continue
        in_progress = run.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING)
        sent = redeliver(app, task_id, meta, resend=in_progress)
        what = "sent again to the pool" if sent else "marked failed"
        instance.report_engine_event(f"{LOST_MESSAGE} {host}: its celery task was {what}", run,
                                     step_key=steps[0] if len(steps) == 1 else None)
        lost.append(f"{run_id}:{','.join(steps)}@{host}")
    return lost
