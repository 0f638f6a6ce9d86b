"""Streaming conversion: episodes published to the Redis stream become partition runs.

The sensor reads the stream *after its cursor* (non-destructive XREAD), registers new episode
partitions and requests one run per (source, episode, strategy) with that triple as run key, all in
one ``SensorResult`` with the new cursor. A tick that fails persists no cursor, so the next tick reads
the same messages again (at-least-once) and the run keys make the runs exactly-once. Malformed or
hostile messages go to a dead-letter record and never block the stream.
"""

import json
import os

import dagster as dg

from lerobot_pipeline.defs.jobs import convert_episode_job
from lerobot_pipeline.defs.partitions import EPISODE_DIM, episode_partitions, multi_key
from lerobot_pipeline.defs.resources import OVERRIDES_TAG, PipelineResource, RedisStreamResource
from lerobot_pipeline.defs.run_retry import retry_owed
from lerobot_pipeline.errors import PipelineError

SOURCE_TAG = "lerobot_pipeline/source"
EPISODE_TAG = "lerobot_pipeline/episode_key"
STREAM_ID_TAG = "lerobot_pipeline/stream_id"
READ_BATCH = 1000  # entries per XREAD within a tick
LOGGED_REJECTIONS = 20  # rejected entries logged one by one per tick (all are dead-lettered)


def _interval() -> int:
    """``LEROBOT_PIPELINE_STREAM_INTERVAL_SECONDS``, else ``sensor.interval_seconds`` of the redis config."""
    if os.environ.get("LEROBOT_PIPELINE_STREAM_INTERVAL_SECONDS"):
        return int(os.environ["LEROBOT_PIPELINE_STREAM_INTERVAL_SECONDS"])
    from lerobot_pipeline.streaming.settings import load_redis_settings

    try:
        return load_redis_settings(os.environ.get("LEROBOT_PIPELINE_REDIS_CONFIG") or None).sensor.interval_seconds
    except PipelineError:
        return 5  # a broken config is reported by every tick; the location still loads


INTERVAL = _interval()


_FINISHED_BAD = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _ended_for_good(run: dg.DagsterRun) -> bool:
    """Failed or canceled, and no automatic retry still owed (``run_retry.retry_owed``)."""
    return run.status in _FINISHED_BAD and not retry_owed(run)


def run_key_for(instance: dg.DagsterInstance, run_key: str, stream_id: str) -> str:
    """The message's run key, unless every conversion of that partition has ended in failure (run retries
    included, and none still owed): then publishing it again is a retry, and a failed run's key must not block
    it (Dagster skips any key it has seen), so the key gets the entry's stream id (``<key>#<id>``: re-reading
    the same entry after a failed tick still gives the same key, so still one run). Seen in a daemon-kill test:
    an entry read again between a failure and the creation of its owed retry gave a second, concurrent
    conversion of the episode."""
    recs = instance.get_run_records(dg.RunsFilter(job_name=convert_episode_job.name,
                                                  tags={"dagster/partition": run_key}), limit=50)
    if recs and all(_ended_for_good(r.dagster_run) for r in recs):
        return f"{run_key}#{stream_id}"
    return run_key


def stream_tick(context: dg.SensorEvaluationContext, redis_stream: RedisStreamResource, pipeline: PipelineResource):
    """One evaluation; separate from the decorator so tests can call it with their own resources."""
    import redis

    from lerobot_pipeline.streaming.messages import EpisodeMessage, MessageError

    settings = redis_stream.settings()
    unreachable = f"Redis unreachable ({settings.redacted_url()})"
    try:
        stream = redis_stream.open()
    except Exception as e:  # noqa: BLE001 - any connection problem: skip with the reason, resume next tick
        return dg.SkipReason(f"{unreachable}: {type(e).__name__}: {e}; retrying next tick")
    sensor = settings.sensor
    cursor, scanned, rejected = context.cursor, 0, 0
    new_keys, requests, existing = [], [], None
    try:
        sources = pipeline.sources()
        # bounded per tick: at most max_messages_per_tick run requests and max_entries_per_tick entries
        # scanned, read in batches, so a flood of rejected entries drains in a few ticks
        while scanned < sensor.max_entries_per_tick and len(requests) < sensor.max_messages_per_tick:
            try:
                batch = stream.read_after(cursor, min(READ_BATCH, sensor.max_entries_per_tick - scanned))
            except (redis.ConnectionError, redis.TimeoutError) as e:
                return dg.SkipReason(f"{unreachable}: {type(e).__name__}: {e}; retrying next tick")
            # anything else (e.g. a cursor that is not a stream id) fails the tick visibly; the cursor stays
            if not batch:
                break
            letters = []
            for stream_id, fields in batch:
                if len(requests) >= sensor.max_messages_per_tick:
                    break
                cursor, scanned = stream_id, scanned + 1
                try:
                    msg = EpisodeMessage.from_fields(fields)
                    sources.raw_root(msg.source)  # a source without a configured raw root cannot be converted
                    if msg.config_overrides:
                        pipeline.check_overrides(msg.strategy, msg.config_overrides)
                except (MessageError, PipelineError) as e:
                    reason = getattr(e, "reason", None) or str(e)
                    letters.append((stream_id, fields, reason))
                    if rejected + len(letters) <= LOGGED_REJECTIONS:
                        context.log.warning(f"rejected stream entry {stream_id}: {reason}")
                    continue
                if existing is None:
                    existing = set(context.instance.get_dynamic_partitions(EPISODE_DIM))
                key = msg.partition_episode_key
                if key not in existing and key not in new_keys:
                    new_keys.append(key)
                tags = {SOURCE_TAG: msg.source, EPISODE_TAG: key, STREAM_ID_TAG: stream_id,
                        "alignment_strategy": msg.strategy, "dagster/max_retries": str(settings.retries.max_automatic)}
                if msg.config_overrides:
                    tags[OVERRIDES_TAG] = json.dumps(msg.config_overrides, sort_keys=True)
                requests.append(dg.RunRequest(partition_key=multi_key(key, msg.strategy),
                                              run_key=run_key_for(context.instance, msg.run_key, stream_id),
                                              tags=tags))
            stream.dead_letter_many(letters)
            rejected += len(letters)
        if not scanned:
            return dg.SkipReason(f"no new episodes after stream id {context.cursor or '0-0'}")
        context.log.info(f"read {scanned} entries up to {cursor}: {len(requests)} run request(s), {rejected} rejected"
                         + (f" (only the first {LOGGED_REJECTIONS} logged)" if rejected > LOGGED_REJECTIONS else ""))
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[episode_partitions.build_add_request(new_keys)] if new_keys else [],
            cursor=cursor,
        )
    finally:
        stream.close()


@dg.sensor(
    job=convert_episode_job, minimum_interval_seconds=INTERVAL, default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Turns episodes published by recording rigs (Redis stream, see configs/redis.yaml) into partition runs: "
        "one run per (source, episode, strategy), nothing lost (cursor advances only with a successful tick), "
        "nothing twice (run keys). Rejected messages are kept as dead letters (lerobot-pipeline monitor)."
    ),
)
def episode_stream_sensor(context: dg.SensorEvaluationContext, redis_stream: RedisStreamResource,
                          pipeline: PipelineResource):
    return stream_tick(context, redis_stream, pipeline)
