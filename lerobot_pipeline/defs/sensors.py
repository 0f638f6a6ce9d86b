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
    requests, waiting = [], []
    for strategy in STRATEGIES:
        want = store_digest(pipeline, strategy, keys)
        have = dataset_digest(pipeline.dataset_dir(strategy))
        if want == have or want == store_digest(pipeline, strategy, []):
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
