"""``publish_episode``: what a recording program calls right after it finished writing an episode."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import redis

from lerobot_pipeline.config import PipelineConfig, apply_overrides
from lerobot_pipeline.errors import ConfigError
from lerobot_pipeline.streaming.messages import EpisodeMessage, MessageError
from lerobot_pipeline.streaming.settings import RedisSettings, load_redis_settings
from lerobot_pipeline.streaming.stream import EpisodeStream, StreamError

SOURCE_ENV = "ROBOT_ID"
log = logging.getLogger(__name__)


def publish_episode(
    episode_id: str,
    source: str | None = None,
    strategy: str | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    *,
    settings: RedisSettings | None = None,
    check_raw: bool = True,
    client: redis.Redis | None = None,
    config: PipelineConfig | None = None,
) -> str:
    """Publish one finished episode for conversion and return its stream id.

    ``source`` defaults to ``$ROBOT_ID``; ``strategy`` to ``settings.default_strategy``; ``settings``
    to :func:`load_redis_settings` (``$LEROBOT_PIPELINE_REDIS_CONFIG`` or the defaults). The message
    is validated first (:class:`MessageError`). With ``check_raw``, every raw file the converter
    needs must already be under ``settings.raw_root_for(source)`` (arm and file names from
    ``config``, default :class:`PipelineConfig`, with ``config_overrides`` applied), else
    :class:`RawDataError` and nothing is published. ``client`` (``decode_responses=True``) replaces
    the connection made from ``settings``.

    Example::

        publish_episode("episode_0007", "robot_1", "window", {"alignment.window_ms": 30})
    """
    settings = load_redis_settings() if settings is None else settings
    if source is None:
        source = os.environ.get(SOURCE_ENV) or None
        if source is None:
            raise MessageError(f"no source given and ${SOURCE_ENV} is not set")
    msg = EpisodeMessage.new(episode_id, source, strategy or settings.default_strategy, config_overrides)

    if check_raw:
        from lerobot_pipeline.core.raw import find_episode

        base = PipelineConfig() if config is None else config
        try:
            effective = apply_overrides(base, msg.config_overrides) if msg.config_overrides else base
        except ConfigError as e:
            raise MessageError(f"config_overrides: {e}") from e
        find_episode(settings.raw_root_for(source), msg.episode_id, effective, source=source)

    stream = EpisodeStream(client, settings) if client is not None else EpisodeStream.from_settings(settings)
    try:
        stream_id = stream.publish(msg)
    except redis.RedisError as e:
        where = stream.embedded.redacted_url() if stream.embedded else settings.redacted_url()
        raise StreamError(f"cannot publish {msg.run_key} to Redis at {where}: {e}") from e
    finally:
        if client is None:
            stream.close()
    log.info("published %s as %s on %s", msg.run_key, stream_id, settings.stream_key)
    return stream_id
