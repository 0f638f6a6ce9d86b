"""The one resource the assets need: where raw data, the episode store and datasets live."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator

from lerobot_pipeline.config import PipelineConfig, load_config
from lerobot_pipeline.core.episode_writer import episode_store_dir
from lerobot_pipeline.core.features import action_shape
from lerobot_pipeline.core.raw import EpisodeRef, find_episode
from lerobot_pipeline.errors import ConfigError
from lerobot_pipeline.ids import parse_episode_key
from lerobot_pipeline.shipped import configs_dir
from lerobot_pipeline.sources import SourceRegistry

VIDEO_WORKERS_ENV = "LEROBOT_PIPELINE_VIDEO_WORKERS"


def default_video_workers() -> int:
    from lerobot_pipeline.core.camera_videos import usable_cpus

    value = os.environ.get(VIDEO_WORKERS_ENV)
    if not value:
        return usable_cpus()
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(VIDEO_WORKERS_ENV, f"expected a whole number of processes >= 1, got {value!r}")
    return int(value)


PACKAGE_CONFIGS = configs_dir()  # the shipped configs; LEROBOT_PIPELINE_CONFIG_DIR points elsewhere
OVERRIDES_TAG = "lerobot_pipeline/config_overrides"  # JSON of per-episode overrides from a queue message


class PipelineResource(dg.ConfigurableResource):
    """Paths and per-strategy conversion configs.

    ``work_dir`` holds the source registry, the episode store and the datasets
    (``datasets/<dataset_name>_<strategy>``); ``config_dir`` holds ``dual_arm_<strategy>.yaml``;
    ``redis_config`` (optional) adds the ``sources`` configured for streaming.
    """

    work_dir: str
    config_dir: str = str(PACKAGE_CONFIGS)
    redis_config: str | None = None
    # processes encoding one in-process step's videos: the cores this process may use (taskset, a cpuset), or
    # LEROBOT_PIPELINE_VIDEO_WORKERS (a Celery prefork child encodes inline whatever this says)
    video_workers: int = Field(default_factory=default_video_workers)
    # a conversion run assembles its strategy's dataset right after its commits (else: dataset_refresh_sensor)
    assemble_after_convert: bool = True
    # dataset formats kept current (conversion runs, dataset_refresh_sensor); the others build on demand
    formats: list[str] = ["v2.1"]

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"v2.1", "v3.0"})
        if unknown or not value:
            raise ValueError(f"formats must be a non-empty list of v2.1 / v3.0, got {value}")
        return value

    def replace(self, **changes) -> PipelineResource:
        """A copy with some fields changed (built anew: Dagster initialises resources from their fields)."""
        return PipelineResource(**{**self.model_dump(), **changes})

    def config(self, strategy: str, overrides: dict | None = None) -> PipelineConfig:
        return load_config(Path(self.config_dir) / f"dual_arm_{strategy}.yaml",
                           {**(overrides or {}), "alignment.strategy": strategy})

    def config_for_run(self, context, strategy: str) -> PipelineConfig:
        """The strategy's config plus the overrides a queue message attached to this run (if any)."""
        raw = context.run.tags.get(OVERRIDES_TAG) if context.run else None
        return self.config(strategy, json.loads(raw) if raw else None)

    def check_overrides(self, strategy: str, overrides: dict) -> None:
        """Refuse overrides that are invalid or would change the dataset's schema (it holds one schema)."""
        base, cfg = self.config(strategy), self.config(strategy, overrides)
        if (cfg.robot, cfg.cameras, action_shape(cfg)) != (base.robot, base.cameras, action_shape(base)):
            raise ConfigError("config_overrides", "would change the dataset schema (robot, cameras or action shape)")

    @property
    def backfill_dir(self) -> Path:
        """Where `lerobot-pipeline backfill` leaves requests for backfill_sensor."""
        return Path(self.work_dir) / "backfills"

    @property
    def store(self) -> Path:
        return Path(self.work_dir) / "store"

    def dataset_dir(self, strategy: str, fmt: str = "v2.1") -> Path:
        """``datasets/<name>_<strategy>`` (v2.1) or ``datasets/<name>_<strategy>_v30`` (v3.0)."""
        suffix = "_v30" if fmt == "v3.0" else ""
        return Path(self.work_dir) / "datasets" / f"{self.config(strategy).output.dataset_name}_{strategy}{suffix}"

    def dataset_state_path(self, strategy: str, fmt: str = "v2.1") -> Path:
        """Beside the dataset (not in it): the store digest it was last assembled from."""
        d = self.dataset_dir(strategy, fmt)
        return d.with_name(f".{d.name}.state.json")

    def episode_dir(self, strategy: str, episode_key: str) -> Path:
        return episode_store_dir(self.store, strategy, episode_key)

    def sources(self) -> SourceRegistry:
        configured, pattern = {}, None
        if self.redis_config:
            from lerobot_pipeline.streaming.settings import load_redis_settings

            settings = load_redis_settings(self.redis_config)
            configured = {name: str(s.raw_root) for name, s in settings.sources.items()}
            pattern = settings.raw_root_pattern
        return SourceRegistry(self.work_dir, configured, pattern)

    def episode_ref(self, episode_key: str, config: PipelineConfig) -> EpisodeRef:
        source, episode_id = parse_episode_key(episode_key)
        return find_episode(self.sources().raw_root(source), episode_id, config, source)


class RedisStreamResource(dg.ConfigurableResource):
    """The episode stream rigs publish to (``configs/redis.yaml``; REDIS_URL / REDIS_PASSWORD win).

    With no server configured the shared embedded redis-server is used (started if needed).
    """

    config_path: str | None = None

    def settings(self):
        from lerobot_pipeline.defs.executors import executor_settings, refuse_embedded_redis
        from lerobot_pipeline.streaming.settings import load_redis_settings

        settings = load_redis_settings(self.config_path)
        if executor_settings().kind == "celery":  # rigs and workers on other hosts cannot reach it
            refuse_embedded_redis(settings, "the episode stream")
        return settings

    def open(self):
        from lerobot_pipeline.streaming.stream import EpisodeStream

        return EpisodeStream.from_settings(self.settings())
