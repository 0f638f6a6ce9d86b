"""Which Dagster executor runs the conversion and dataset steps, chosen by configuration (no code change).

- ``in_process`` (default): every step of a run in the run's own process (one machine).
- ``multiprocess``: one process per step, on the run worker's machine.
- ``celery``: every step is a Celery task on a pool of workers (``lerobot-pipeline worker start``), any
  number of machines, Redis as broker and result backend. See docs/deployment.md.

Settings, environment first, then the YAML file named by ``LEROBOT_PIPELINE_EXECUTOR_CONFIG``
(keys ``executor``, ``broker``, ``backend``, ``video_queue``), then defaults:

- ``LEROBOT_PIPELINE_EXECUTOR``: ``in_process`` | ``multiprocess`` | ``celery``
- ``LEROBOT_PIPELINE_CELERY_BROKER`` / ``LEROBOT_PIPELINE_CELERY_BACKEND``: Redis URLs; default: the
  streaming sensor's Redis (``configs/redis.yaml`` / ``REDIS_URL``). The embedded Redis is refused: it
  listens on 127.0.0.1 of one machine, so workers elsewhere would never see a task.
- ``LEROBOT_PIPELINE_VIDEO_QUEUE``: the Celery queue of the video-heavy step (default ``video``).

The run process, the daemon and every worker read the same settings, so they agree on the broker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from lerobot_pipeline.errors import ConfigError

EXECUTOR_ENV = "LEROBOT_PIPELINE_EXECUTOR"
CONFIG_ENV = "LEROBOT_PIPELINE_EXECUTOR_CONFIG"
BROKER_ENV = "LEROBOT_PIPELINE_CELERY_BROKER"
BACKEND_ENV = "LEROBOT_PIPELINE_CELERY_BACKEND"
VIDEO_QUEUE_ENV = "LEROBOT_PIPELINE_VIDEO_QUEUE"
EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue: every step without a queue tag
CELERY_QUEUE_TAG = "dagster-celery/queue"
_FILE_KEYS = ("executor", "broker", "backend", "video_queue")

#: Celery settings every process shares (written into the worker's config, passed to the executor):
#: STARTED state, worker hostname and task arguments in the result backend (what the orphan check reads
#: and re-sends), no task
#: reserved ahead by a busy worker (a killed worker must not take queued tasks with it), results kept
#: a day.
CELERY_APP_CONFIG = {
    "task_track_started": True,
    "result_extended": True,
    "worker_disable_prefetch": True,
    "worker_prefetch_multiplier": 1,
    "result_expires": 86400,
}


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "in_process"
    broker: str | None = None
    backend: str | None = None
    video_queue: str = "video"

    def celery_config(self) -> dict[str, Any]:
        """The ``execution.config`` block of dagster-celery: the executor's and the workers' config."""
        return {"broker": self.broker, "backend": self.backend, "config_source": dict(CELERY_APP_CONFIG)}

    @property
    def queues(self) -> tuple[str, ...]:
        return (DEFAULT_QUEUE, self.video_queue)


def _file_settings(env: Mapping[str, str]) -> dict:
    path = env.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError("<file>", f"cannot read executor config {path}: {e.strerror}") from e
    if not isinstance(data, dict):
        raise ConfigError("<root>", f"executor config {path}: expected a mapping")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key in {path} (known: {', '.join(_FILE_KEYS)})")
    return data


def _sensor_redis_url(env: Mapping[str, str]) -> str:
    from lerobot_pipeline.streaming.settings import load_redis_settings

    settings = load_redis_settings(env=env)
    refuse_embedded_redis(settings, "the Celery broker")
    return settings.connection_url()


def refuse_embedded_redis(settings, what: str) -> None:
    """A clear error instead of silently using a Redis only this machine can reach."""
    if settings.uses_embedded:
        raise ConfigError(
            "redis.url", f"{what} would be the embedded Redis (127.0.0.1 of this machine only) while "
            f"{EXECUTOR_ENV}=celery runs steps on other hosts: set REDIS_URL (or redis.url in "
            f"$LEROBOT_PIPELINE_REDIS_CONFIG) or {BROKER_ENV} to a server every host reaches")


def executor_settings(env: Mapping[str, str] | None = None) -> ExecutorSettings:
    env = os.environ if env is None else env
    data = _file_settings(env)
    kind = env.get(EXECUTOR_ENV) or data.get("executor") or "in_process"
    if kind not in EXECUTORS:
        raise ConfigError(EXECUTOR_ENV, f"must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    video_queue = env.get(VIDEO_QUEUE_ENV) or data.get("video_queue") or "video"
    if kind != "celery":
        return ExecutorSettings(kind, video_queue=video_queue)
    broker = env.get(BROKER_ENV) or data.get("broker") or _sensor_redis_url(env)
    backend = env.get(BACKEND_ENV) or data.get("backend") or broker
    for key, url in ((BROKER_ENV, broker), (BACKEND_ENV, backend)):
        if not str(url).startswith(("redis://", "rediss://")):
            raise ConfigError(key, "must be a redis:// or rediss:// URL (Redis is the tested broker and backend)")
    return ExecutorSettings(kind, broker, backend, video_queue)


def pipeline_executor(settings: ExecutorSettings | None = None) -> dg.ExecutorDefinition:
    """The executor of convert_episode_job and dataset_job (see the module docstring)."""
    settings = settings or executor_settings()
    if settings.kind == "multiprocess":
        return dg.multiprocess_executor
    if settings.kind == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(settings.celery_config(), name="celery")
    return dg.in_process_executor


def video_step_tags(settings: ExecutorSettings | None = None) -> dict[str, str]:
    """Op tags of the video-heavy step: its Celery queue (ignored by the other executors)."""
    return {CELERY_QUEUE_TAG: (settings or executor_settings()).video_queue}
