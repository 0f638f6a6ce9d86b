"""Sensors that need no queue: keep each strategy's dataset current, and (optionally) scan raw folders."""


import os
import time

import dagster as dg

from lerobot_pipeline.core.raw import discover_episodes
from lerobot_pipeline.defs.dataset_assets import dataset_digest, store_digest
from lerobot_pipeline.defs.jobs import convert_episode_job, dataset_job
from lerobot_pipeline.defs.partitions import EPISODE_DIM, episode_partitions, multi_key
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.errors import PipelineError
from lerobot_pipeline.ids import STRATEGIES

REFRESH_SECONDS = int(os.environ.get("LEROBOT_PIPELINE_REFRESH_SECONDS", "5"))
QUIET_SECONDS = int(os.environ.get("LEROBOT_PIPELINE_REFRESH_QUIET_SECONDS", "60"))
SCAN_STRATEGY = os.environ.get("LEROBOT_PIPELINE_SCAN_STRATEGY", "chunking")
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def _in_flight(instance: dg.DagsterInstance, job: str, tags: dict[str, str]) -> bool:
    return bool(instance.get_run_records(dg.RunsFilter(job_name=job, statuses=IN_FLIGHT, tags=tags), limit=1))


def _last_assembly_age(instance: dg.DagsterInstance, strategy: str) -> float:
    recs = instance.get_run_records(dg.RunsFilter(job_name=dataset_job.name, tags={"dagster/partition": strategy}), limit=1)
    if not recs:
        return float("inf")
    return time.time() - recs[0].create_timestamp.timestamp()


@dg.sensor(
    job=dataset_job, minimum_interval_seconds=REFRESH_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Re-assembles a strategy's dataset when its committed episodes differ from what the dataset holds "
        "(compares the store with meta/provenance.jsonl; works past 100 episodes). Bounded: one assembly in "
        "flight per strategy, and while conversions are still running at most one per quiet period."
    ),
)
def dataset_refresh_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
    keys = context.instance.get_dynamic_partitions(EPISODE_DIM)
    nothing = store_digest(pipeline, STRATEGIES[0], [])
    requests, waiting = [], []
    for strategy in STRATEGIES:
        want = store_digest(pipeline, strategy, keys)
        have = dataset_digest(pipeline.dataset_dir(strategy))
        if want == have or want == nothing:
            continue
        if _in_flight(context.instance, dataset_job.name, {"dagster/partition": strategy}):
            waiting.append(f"{strategy}: assembly in flight")
            continue
        busy = _in_flight(context.instance, convert_episode_job.name, {"dagster/partition/strategy": strategy})
        if busy and _last_assembly_age(context.instance, strategy) < QUIET_SECONDS:
            waiting.append(f"{strategy}: conversions running, last assembly < {QUIET_SECONDS}s ago")
            continue
        requests.append(dg.RunRequest(partition_key=strategy, run_key=f"dataset:{strategy}:{want}",
                                      tags={"lerobot_pipeline/trigger": "refresh"}))
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
        return dg.SkipReason("no new complete episodes" + (f" ({len(problems)} source(s) unreadable)" if problems else ""))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=multi_key(k, SCAN_STRATEGY), run_key=f"scan:{k}|{SCAN_STRATEGY}")
                      for k in new_keys],
        dynamic_partitions_requests=[episode_partitions.build_add_request(new_keys)],
    )


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that executes a run: from its RUN_START event, or, while it is still
    starting, from the launcher's "Started process for run (pid: N)" engine event."""
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START):
        if event.dagster_event and event.dagster_event.pid:
            return int(event.dagster_event.pid)
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = event.dagster_event.engine_event_data if event.dagster_event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None:
            return int(pid.value if hasattr(pid, "value") else pid)
    return None


def worker_alive(pid: int, run_start: float | None) -> bool:
    """True while ``pid`` is the run's worker: exists, and was not started after the run (pid reuse)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return run_start is None or created <= run_start + 5


@dg.sensor(
    minimum_interval_seconds=int(os.environ.get("LEROBOT_PIPELINE_ORPHAN_SECONDS", "20")),
    default_status=dg.DefaultSensorStatus.RUNNING, description=(
        "Marks conversion and dataset runs FAILED when their worker process is gone (daemon or machine "
        "killed mid-run), so run retries convert the episode again instead of it staying 'started' for ever "
        "and holding a run-queue slot. Dagster's default run launcher cannot check worker health itself. "
        "Assumes run workers on this machine (the default launcher)."
    ),
)
def orphaned_run_sensor(context: dg.SensorEvaluationContext):
    records = context.instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=500)
    failed = []
    for rec in records:
        run = rec.dagster_run
        if run.job_name not in (convert_episode_job.name, dataset_job.name):
            continue
        pid = worker_pid(context.instance, run.run_id)  # None: never spawned (run monitoring's start timeout)
        if pid is None or worker_alive(pid, rec.start_time or rec.create_timestamp.timestamp()):
            continue
        context.instance.report_run_failed(
            run, message=f"run worker (pid {pid}) is gone: the daemon or machine stopped mid-run; marked failed "
                         "so that run retries convert it again")
        failed.append(run.run_id)
    if failed:
        context.log.warning(f"marked {len(failed)} orphaned run(s) failed: {', '.join(failed)}")
        return dg.SkipReason(f"marked {len(failed)} orphaned run(s) failed for retry")
    return dg.SkipReason(f"{len(records)} starting/started run(s), none with a dead worker")
