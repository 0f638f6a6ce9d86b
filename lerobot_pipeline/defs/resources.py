"""The one resource the assets need: where raw data, the episode store and datasets live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import dagster as dg

from lerobot_pipeline.config import PipelineConfig, load_config
from lerobot_pipeline.core.episode_writer import episode_store_dir
from lerobot_pipeline.core.features import action_shape
from lerobot_pipeline.errors import ConfigError
from lerobot_pipeline.core.raw import EpisodeRef, find_episode
from lerobot_pipeline.ids import parse_episode_key
from lerobot_pipeline.sources import SourceRegistry

PACKAGE_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OVERRIDES_TAG = "lerobot_pipeline/config_overrides"  # JSON of per-episode overrides from a queue message


class PipelineResource(dg.ConfigurableResource):
    """Paths and per-strategy conversion configs.

    ``work_dir`` holds the source registry, the episode store and the datasets
    (``datasets/<dataset_name>_<strategy>``); ``config_dir`` holds ``dual_arm_<strategy>.yaml``;
    ``redis_config`` (optional) adds the ``sources`` configured for streaming.
    """

    work_dir: str
    config_dir: str = str(PACKAGE_CONFIGS)
    redis_config: Optional[str] = None
    video_threads: int = 3

    def config(self, strategy: str, overrides: Optional[dict] = None) -> PipelineConfig:
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
    def store(self) -> Path:
        return Path(self.work_dir) / "store"

    def dataset_dir(self, strategy: str) -> Path:
        return Path(self.work_dir) / "datasets" / f"{self.config(strategy).output.dataset_name}_{strategy}"

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

    config_path: Optional[str] = None

    def settings(self):
        from lerobot_pipeline.streaming.settings import load_redis_settings

        return load_redis_settings(self.config_path)

    def open(self):
        from lerobot_pipeline.streaming.stream import EpisodeStream

        return EpisodeStream.from_settings(self.settings())
