"""Backfills from the CLI (`lerobot-pipeline backfill`): a request file becomes batched conversion runs at once.

Dagster's own asset backfill (the UI's "Launch backfill", which honours the multi-asset's multi_run policy
too) is driven by a daemon loop that wakes every 30 s, twice per backfill (runs, then the dataset); for a
batch of short recordings that is more than the conversion. The CLI instead writes
``<work>/backfills/<id>.json`` (strategy and the partition ranges of its batches); this sensor turns every
batch into one run with Dagster's partition-range tags and the run key ``backfill:<id>:<n>``. The request
file outlives a killed CLI or daemon, the cursor only moves with a successful tick, and the run keys make
a re-read request launch nothing twice.

The CLI normally queues the runs itself (defs/backfill_submit.py) and marks its request ``direct``: such a
request is left alone for ``DIRECT_GRACE_SECONDS`` after it was written, then requested like any other, so
that the run keys fill in whatever batch a killed CLI did not queue.
"""

import json
import math
import re
import time

import dagster as dg

from lerobot_pipeline.defs.jobs import convert_episode_job
from lerobot_pipeline.defs.partitions import EPISODE_DIM, multi_key
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.ids import STRATEGIES

BACKFILL_TAG = "lerobot_pipeline/backfill"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
_ID = re.compile(r"^[0-9a-f]{8,32}$")
KEEP_IDS = 1000  # request ids the cursor remembers
DIRECT_GRACE_SECONDS = 60  # a direct request is the CLI's until then (it stops submitting at half of it)


def plan_batches(registered: list[str], selected: list[str], batch: int,
                 parallel: int = 1) -> list[tuple[str, str, int]]:
    """(first key, last key, count) per run: ``selected`` in registration order, cut where it is not contiguous
    in ``registered`` (a range covers every partition between its ends) and every ``size`` keys.

    Runs hold at most ``batch`` keys, come in a multiple of ``parallel`` (the steps that can run at once, so no
    slot idles through the last round) and are even: 20 keys with batch 10 on 4 slots make 4 runs of 5, 24 on 2
    slots 4 runs of 6 (not 10, 10, 4), 12 on 1 slot 2 runs of 6 (not 10 and 2).
    """
    chosen = set(selected)
    n = len(chosen.intersection(registered))
    if n == 0:
        return []
    parallel = max(1, parallel)
    n_runs = min(n, math.ceil(math.ceil(n / max(1, batch)) / parallel) * parallel)
    size = math.ceil(n / n_runs)
    runs, current = [], []
    for key in registered:
        if key in chosen and len(current) < size:
            current.append(key)
            continue
        if current:
            runs.append((current[0], current[-1], len(current)))
        current = [key] if key in chosen else []
    if current:
        runs.append((current[0], current[-1], len(current)))
    return runs


def parallel_steps(instance: dg.DagsterInstance) -> int:
    """How many conversion steps can run at once: the limit of pool ``video`` (set with ``dagster instance
    concurrency set``, else the instance's ``default_limit``), capped by ``max_concurrent_runs``; 1 if unknown."""
    try:
        config = instance.get_concurrency_config()
        limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
        slots = limits.get("video", config.pool_config.default_pool_limit)
        runs = config.run_queue_config.max_concurrent_runs if config.run_queue_config else None
    except Exception:  # noqa: BLE001 - an older storage or no run queue: plan as for one slot
        return 1
    bounds = [int(v) for v in (slots, runs) if v is not None and int(v) > 0]
    return max(1, min(bounds)) if bounds else 1


def batch_run_request(backfill_id: str, n: int, strategy: str, first: str, last: str) -> dg.RunRequest:
    tags = {BACKFILL_TAG: backfill_id, "alignment_strategy": strategy}
    if first == last:
        return dg.RunRequest(run_key=f"backfill:{backfill_id}:{n}", partition_key=multi_key(first, strategy), tags=tags)
    return dg.RunRequest(run_key=f"backfill:{backfill_id}:{n}", tags=tags | {
        RANGE_START: str(multi_key(first, strategy)), RANGE_END: str(multi_key(last, strategy))})


@dg.sensor(
    job=convert_episode_job, minimum_interval_seconds=2, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns `lerobot-pipeline backfill` requests into batched conversion runs (one run per batch of "
    "partitions); each run assembles its dataset when it ends.",
)
def backfill_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
    done = set(json.loads(context.cursor)) if context.cursor else set()
    folder = pipeline.backfill_dir
    pending = sorted(p for p in folder.glob("*.json") if p.stem not in done) if folder.is_dir() else []
    if not pending:
        return dg.SkipReason("no new backfill request")
    registered = set(context.instance.get_dynamic_partitions(EPISODE_DIM))
    requests, deferred = [], 0
    for path in pending:
        try:
            req = json.loads(path.read_text())
            if not _ID.match(path.stem) or req["strategy"] not in STRATEGIES:
                raise ValueError("bad id or strategy")
            if req.get("direct") and time.time() < float(req["created"]) + DIRECT_GRACE_SECONDS:
                deferred += 1  # the CLI is queueing these runs itself; look again once its window is over
                continue
            batches = [(str(a), str(b)) for a, b, _ in req["batches"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            context.log.warning(f"ignoring malformed backfill request {path.name}: {e}")
        else:
            for n, (first, last) in enumerate(batches):
                if first in registered and last in registered:
                    requests.append(batch_run_request(path.stem, n, req["strategy"], first, last))
                else:
                    context.log.warning(f"backfill {path.stem} batch {n}: {first}..{last} is no longer registered")
        done.add(path.stem)
    cursor = json.dumps(sorted(done)[-KEEP_IDS:])
    if not requests:
        reason = (f"{deferred} backfill request(s) being queued by the CLI" if deferred else
                  "backfill requests held no registered partitions")
        return dg.SensorResult(skip_reason=reason, cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
