"""Sensors that need no queue: keep each strategy's dataset current, and (optionally) scan raw folders."""


import os
import socket
import time

import dagster as dg

from lerobot_pipeline.core.raw import discover_episodes
from lerobot_pipeline.defs.dataset_build import DATASET_KEYS, dataset_digest, store_digest
from lerobot_pipeline.defs.executors import executor_settings
from lerobot_pipeline.defs.jobs import convert_episode_job, dataset_job
from lerobot_pipeline.defs.partitions import EPISODE_DIM, episode_partitions, multi_key
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.defs.run_launcher import HOST_TAG  # in-process and warm-launched runs: the host whose pids count
from lerobot_pipeline.defs.run_retry import GRACE_SECONDS, retry_missed_runs
from lerobot_pipeline.errors import PipelineError
from lerobot_pipeline.ids import STRATEGIES

REFRESH_SECONDS = int(os.environ.get("LEROBOT_PIPELINE_REFRESH_SECONDS", "5"))
QUIET_SECONDS = int(os.environ.get("LEROBOT_PIPELINE_REFRESH_QUIET_SECONDS", "60"))
SCAN_STRATEGY = os.environ.get("LEROBOT_PIPELINE_SCAN_STRATEGY", "chunking")
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def _in_flight(instance: dg.DagsterInstance, job: str, tags: dict[str, str]) -> bool:
    return bool(instance.get_run_records(dg.RunsFilter(job_name=job, statuses=IN_FLIGHT, tags=tags), limit=1))


def _conversions_in_flight(instance: dg.DagsterInstance, strategy: str) -> float | None:
    """When the oldest queued or running conversion run of ``strategy`` was created (None: there is none): one
    partition (its strategy tag) or a backfill batch (the range tags ``<episode>|<strategy>``)."""
    in_flight = dg.RunsFilter(job_name=convert_episode_job.name, statuses=IN_FLIGHT)
    created = []
    for rec in instance.get_run_records(in_flight, limit=100):
        tags = rec.dagster_run.tags
        if (tags.get("dagster/partition/strategy") == strategy
                or tags.get("dagster/asset_partition_range_start", "").endswith(f"|{strategy}")):
            created.append(rec.create_timestamp.timestamp())
    return min(created) if created else None


def _last_assembly_age(instance: dg.DagsterInstance, strategy: str) -> float:
    """Seconds since the strategy's dataset was last assembled or asked to be: the newest dataset_job run, or
    the newest dataset materialisation (a conversion run assembles its dataset itself as it ends, so a
    backfill's first run to end must count, or its other runs' commits would start a dataset_job beside
    them)."""
    times = []
    recs = instance.get_run_records(
        dg.RunsFilter(job_name=dataset_job.name, tags={"dagster/partition": strategy}), limit=1)
    if recs:
        times.append(recs[0].create_timestamp.timestamp())
    for key in DATASET_KEYS.values():
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[strategy]), limit=1).records
        if found:
            times.append(found[0].timestamp)
    return time.time() - max(times) if times else float("inf")


@dg.sensor(
    job=dataset_job, minimum_interval_seconds=REFRESH_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Re-assembles a strategy's dataset when its committed episodes differ from what the dataset holds "
        "(compares the store with meta/provenance.jsonl; works past 100 episodes). Bounded: one assembly in "
        "flight per strategy, and while conversions are still running at most one per quiet period (counted "
        "from their start before the first assembly: each conversion run assembles the dataset as it ends)."
    ),
)
def dataset_refresh_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
    keys = context.instance.get_dynamic_partitions(EPISODE_DIM)
    requests, waiting = [], []
    for strategy in STRATEGIES:
        want = store_digest(pipeline, strategy, keys)
        stale = [fmt for fmt in pipeline.formats
                 if want is not None and want != dataset_digest(pipeline, strategy, fmt)]
        if not stale:
            continue
        if _in_flight(context.instance, dataset_job.name, {"dagster/partition": strategy}):
            waiting.append(f"{strategy}: assembly in flight")
            continue
        busy_since = _conversions_in_flight(context.instance, strategy)
        if busy_since is not None:
            age = _last_assembly_age(context.instance, strategy)
            if age == float("inf") and pipeline.assemble_after_convert:
                # never assembled yet, but the conversion runs assemble as they end: the first of them is due
                # (a refresh now would run beside it); wait for it up to a quiet period from their start
                age = time.time() - busy_since
            if age < QUIET_SECONDS:
                waiting.append(f"{strategy}: conversions running, last assembly < {QUIET_SECONDS}s ago")
                continue
        requests.append(dg.RunRequest(
            partition_key=strategy, run_key=f"dataset:{strategy}:{want}:{','.join(stale)}",
            asset_selection=[DATASET_KEYS[fmt] for fmt in stale], tags={"lerobot_pipeline/trigger": "refresh"}))
    if not requests:
        return dg.SkipReason("; ".join(waiting) or "every dataset holds the committed episodes")
    return dg.SensorResult(run_requests=requests)


@dg.sensor(
    job=convert_episode_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "For labs without a queue: scans every registered source's raw root, registers newly completed "
        f"episodes as partitions and converts them with strategy '{SCAN_STRATEGY}'. Off by default."
    ),
)
def raw_folder_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
    existing = set(context.instance.get_dynamic_partitions(EPISODE_DIM))
    config = pipeline.config(SCAN_STRATEGY)
    new_keys, problems = [], []
    for source, root in sorted(pipeline.sources().all().items()):
        try:
            refs, _ = discover_episodes(root, config, source)
        except PipelineError as e:
            problems.append(str(e))
            continue
        new_keys.extend(r.key for r in refs if r.key not in existing)
    for p in problems:
        context.log.warning(p)
    if not new_keys:
        return dg.SkipReason(
            "no new complete episodes" + (f" ({len(problems)} source(s) unreadable)" if problems else ""))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=multi_key(k, SCAN_STRATEGY), run_key=f"scan:{k}|{SCAN_STRATEGY}")
                      for k in new_keys],
        dynamic_partitions_requests=[episode_partitions.build_add_request(new_keys)],
    )


def worker_event(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, time it was reported) of the process that executes a run: from its RUN_START event, or,
    while it is still starting, from the launcher's "Started process for run (pid: N)" engine event."""
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START):
        if event.dagster_event and event.dagster_event.pid:
            return int(event.dagster_event.pid), event.timestamp
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = event.dagster_event.engine_event_data if event.dagster_event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None:
            return int(pid.value if hasattr(pid, "value") else pid), event.timestamp
    return None


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    found = worker_event(instance, run_id)
    return found[0] if found else None


def worker_alive(pid: int, reported_at: float | None) -> bool:
    """True while ``pid`` is the run's worker: exists, and was not started after the event that named
    it (a reused pid). Not the run's creation time: a queued run's worker starts long after that."""
    import psutil

    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return reported_at is None or created <= reported_at + 5


def release_run_resources(instance: dg.DagsterInstance, run_id: str) -> int:
    """Free every claim a run that has ended (or was just marked failed) still holds; returns how many
    pool slots were freed.

    - Pool slots (``video``): a step claims its slot in the instance's concurrency table and frees it
      itself when the step ends; a worker killed mid-step never does, and the slot stays claimed for
      ever. ``free_concurrency_slots_for_run`` (the call Dagster's monitoring daemon makes for
      ``run_monitoring.free_slots_after_run_end_seconds``) frees its slots and its pending (blocked)
      step claims, and hands the slots to the next waiting steps.
    - The project's other claims need nothing here (docs/reliability.md; the kill tests check them):
      the dataset lock is an ``fcntl`` lock the kernel drops with the process; a failed partition's run
      key does not block its retry (run retries carry their own lineage, and the stream sensor gives a
      re-published, all-failed partition a new key: ``run_key_for``); a dead run's version directory is
      never committed, and every run builds a version directory of its own.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return 0
    held = sum(1 for pool in storage.get_concurrency_keys()
               for slot in storage.get_concurrency_info(pool).claimed_slots if slot.run_id == run_id)
    storage.free_concurrency_slots_for_run(run_id)
    return held


def run_worker_dead(instance: dg.DagsterInstance, rec) -> str | None:
    """Why the run's own process is known dead, or None (alive, not yet spawned, or not on this host).

    Only pids of this host are judged: runs launched by the daemon's run launcher (its "Started process
    for run" event; the daemon runs this sensor) and in-process runs tagged with this host. A run of a
    CLI on another host is never failed from here. Steps on Celery workers: ``lost_celery_steps``.
    """
    run = rec.dagster_run
    host = run.tags.get(HOST_TAG)
    if host is not None and host != socket.gethostname():
        return None
    found = worker_event(instance, run.run_id)  # None: never spawned (run monitoring's start timeout)
    # a queued run's process starts long after the run was created: compare with the event that named it
    if found is None or worker_alive(*found):
        return None
    pid = found[0]
    return (f"run worker (pid {pid} on {socket.gethostname()}) is gone: the daemon or machine stopped mid-run; "
            "marked failed so that run retries convert it again")


WATCHED_JOBS = (convert_episode_job.name, dataset_job.name)  # the runs whose dead workers are handled here


def started_runs(instance: dg.DagsterInstance) -> list:
    """Records of the runs that are starting or started (any job)."""
    return instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=500)


def fail_orphaned_runs(instance: dg.DagsterInstance, records=None) -> list[tuple[dg.DagsterRun, str, int]]:
    """Mark the conversion and dataset runs whose worker on this host is gone FAILED and free the pool
    slots they hold: ``(run, reason, slots freed)`` for each. Run by ``orphaned_run_sensor`` and, since an
    in-process run (``materialize``, ``demo``) has no daemon watching it, by those commands before they
    start: a CLI killed mid-step would otherwise leave its run STARTED holding the ``video`` slot, and the
    re-run's step would wait for it for ever."""
    done = []
    for rec in records if records is not None else started_runs(instance):
        run = rec.dagster_run
        if run.job_name not in WATCHED_JOBS:
            continue
        reason = run_worker_dead(instance, rec)
        if reason is None:
            continue
        instance.report_run_failed(run, message=reason)
        done.append((run, reason, release_run_resources(instance, run.run_id)))
    return done


def lost_celery_steps(context, runs: list[dg.DagsterRun]) -> list[str]:
    """Steps of ``runs`` whose Celery worker died (see defs/celery_health.py), their tasks sent again."""
    runs = [r for r in runs if r.job_name in WATCHED_JOBS]
    if not runs or executor_settings().kind != "celery":
        return []
    from lerobot_pipeline.defs.celery_health import redeliver_lost_steps

    lost = redeliver_lost_steps(context.instance)
    if lost:
        context.log.warning(f"steps lost with their Celery worker, tasks sent again: {', '.join(lost)}")
    return lost


@dg.sensor(
    minimum_interval_seconds=int(os.environ.get("LEROBOT_PIPELINE_ORPHAN_SECONDS", "20")),
    default_status=dg.DefaultSensorStatus.RUNNING, description=(
        "Marks conversion and dataset runs FAILED when their worker process is gone (daemon or machine "
        "killed mid-run), so run retries convert the episode again instead of it staying 'started' for ever "
        "and holding a run-queue slot. Dagster's default run launcher cannot check worker health itself. "
        "Judges pids of this host only; steps lost with a dead Celery worker (no ping reply) are sent again. "
        f"Also retries, once, a failed run Dagster marked will-retry but did not retry within {GRACE_SECONDS:g} s "
        "(with SQLite storage its run-retry daemon can miss one: docs/reliability.md)."
    ),
)
def orphaned_run_sensor(context: dg.SensorEvaluationContext):
    records = started_runs(context.instance)
    failed = []
    for run, _, freed in fail_orphaned_runs(context.instance, records):
        if freed:
            context.log.warning(f"run {run.run_id}: freed {freed} pool slot(s) its dead worker still held")
        failed.append(run.run_id)
    lost = lost_celery_steps(context, [r.dagster_run for r in records])
    retried = [f"{run.run_id} as {new_id}" for run, new_id in retry_missed_runs(context.instance, WATCHED_JOBS)
               if new_id]
    if retried:
        context.log.warning(f"retried {len(retried)} failed run(s) Dagster's run-retry daemon missed: "
                            + ", ".join(retried))
    if failed:
        context.log.warning(f"marked {len(failed)} orphaned run(s) failed: {', '.join(failed)}")
    done = ([f"marked {len(failed)} orphaned run(s) failed for retry"] if failed else []) + (
        [f"{len(lost)} step(s) lost with a dead Celery worker sent to the pool again"] if lost else []) + (
        [f"retried {len(retried)} run(s) Dagster's run-retry daemon missed"] if retried else [])
    return dg.SkipReason("; ".join(done) or f"{len(records)} starting/started run(s), none with a dead worker")
