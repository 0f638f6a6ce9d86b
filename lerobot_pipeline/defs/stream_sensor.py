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
from lerobot_pipeline.errors import PipelineError

SOURCE_TAG = "lerobot_pipeline/source"
EPISODE_TAG = "lerobot_pipeline/episode_key"
STREAM_ID_TAG = "lerobot_pipeline/stream_id"


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


def stream_tick(context: dg.SensorEvaluationContext, redis_stream: RedisStreamResource, pipeline: PipelineResource):
    """One evaluation; separate from the decorator so tests can call it with their own resources."""
    from lerobot_pipeline.streaming.messages import EpisodeMessage, MessageError

    import redis

    settings = redis_stream.settings()
    unreachable = f"Redis unreachable ({settings.redacted_url()})"
    try:
        stream = redis_stream.open()
    except Exception as e:  # noqa: BLE001 - any connection problem: skip with the reason, resume next tick
        return dg.SkipReason(f"{unreachable}: {type(e).__name__}: {e}; retrying next tick")
    try:
        try:
            entries = stream.read_after(context.cursor, settings.sensor.max_messages_per_tick)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            return dg.SkipReason(f"{unreachable}: {type(e).__name__}: {e}; retrying next tick")
        # anything else (e.g. a cursor that is not a stream id) fails the tick visibly; the cursor stays
        if not entries:
            return dg.SkipReason(f"no new episodes after stream id {context.cursor or '0-0'}")
        existing = set(context.instance.get_dynamic_partitions(EPISODE_DIM))
        sources = pipeline.sources()
        new_keys, requests, rejected = [], [], 0
        for stream_id, fields in entries:
            try:
                msg = EpisodeMessage.from_fields(fields)
                sources.raw_root(msg.source)  # a source without a configured raw root cannot be converted
                if msg.config_overrides:
                    pipeline.check_overrides(msg.strategy, msg.config_overrides)
            except (MessageError, PipelineError) as e:
                reason = getattr(e, "reason", None) or str(e)
                stream.dead_letter(stream_id, fields, reason)
                context.log.warning(f"rejected stream entry {stream_id}: {reason}")
                rejected += 1
                continue
            key = msg.partition_episode_key
            if key not in existing and key not in new_keys:
                new_keys.append(key)
            tags = {SOURCE_TAG: msg.source, EPISODE_TAG: key, STREAM_ID_TAG: stream_id,
                    "alignment_strategy": msg.strategy, "dagster/max_retries": str(settings.retries.max_automatic)}
            if msg.config_overrides:
                tags[OVERRIDES_TAG] = json.dumps(msg.config_overrides, sort_keys=True)
            requests.append(dg.RunRequest(partition_key=multi_key(key, msg.strategy), run_key=msg.run_key, tags=tags))
        last_id = entries[-1][0]
        context.log.info(f"read {len(entries)} entries up to {last_id}: {len(requests)} run request(s), {rejected} rejected")
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[episode_partitions.build_add_request(new_keys)] if new_keys else [],
            cursor=last_id,
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
