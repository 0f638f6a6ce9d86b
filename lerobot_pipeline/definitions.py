"""The Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here.

Layout mirrors the graph: raw sources → episode assets (episode × strategy) → one dataset per
strategy; checks beside their assets; sensors keep datasets current and turn published episodes
into runs. Paths come from the environment (see README): LEROBOT_PIPELINE_WORK_DIR,
LEROBOT_PIPELINE_CONFIG_DIR, LEROBOT_PIPELINE_REDIS_CONFIG.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from lerobot_pipeline.defs import dataset_assets, dataset_v30_assets, episode_assets, raw_sources
from lerobot_pipeline.defs.backfill_sensor import backfill_sensor
from lerobot_pipeline.defs.jobs import convert_episode_job, dataset_job, observe_raw_job
from lerobot_pipeline.defs.resources import PACKAGE_CONFIGS, PipelineResource, RedisStreamResource
from lerobot_pipeline.defs.sensors import dataset_refresh_sensor, orphaned_run_sensor, raw_folder_sensor
from lerobot_pipeline.defs.stream_sensor import episode_stream_sensor


def pipeline_resource_from_env() -> PipelineResource:
    return PipelineResource(
        work_dir=os.environ.get("LEROBOT_PIPELINE_WORK_DIR", str(Path.cwd() / ".lerobot_pipeline")),
        config_dir=os.environ.get("LEROBOT_PIPELINE_CONFIG_DIR", str(PACKAGE_CONFIGS)),
        redis_config=os.environ.get("LEROBOT_PIPELINE_REDIS_CONFIG") or None,
        formats=[f for f in os.environ.get("LEROBOT_PIPELINE_FORMATS", "v2.1").split(",") if f],
    )


def redis_resource_from_env() -> RedisStreamResource:
    return RedisStreamResource(config_path=os.environ.get("LEROBOT_PIPELINE_REDIS_CONFIG") or None)


def build_definitions(pipeline: PipelineResource, redis_stream: RedisStreamResource | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules([raw_sources, episode_assets, dataset_assets, dataset_v30_assets]),
        asset_checks=[dataset_assets.dataset_conformance, dataset_v30_assets.dataset_v30_conformance],
        jobs=[convert_episode_job, dataset_job, observe_raw_job],
        sensors=[dataset_refresh_sensor, raw_folder_sensor, episode_stream_sensor, orphaned_run_sensor,
                 backfill_sensor],
        resources={"pipeline": pipeline, "redis_stream": redis_stream or redis_resource_from_env()},
    )


def warm_run_worker() -> None:
    """Called by a spare run worker (defs/run_worker.py) once it has imported this module, before it has a run:
    what a conversion step would otherwise do on its first episode, while the video workers wait. Imports
    matplotlib (the joint plot, 0.4 s; pandas is never needed: core/arrow.py), and starts
    the video workers' forkserver (0.35 s of PyAV/OpenCV imports). Not when the steps run on Celery workers: this
    process then only orchestrates, and the warm-up would only take CPU from the workers on this host."""
    from lerobot_pipeline.defs.executors import executor_settings

    if executor_settings().kind == "celery":
        return
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    from lerobot_pipeline.core.forkserver import start_forkserver

    start_forkserver()


defs = build_definitions(pipeline_resource_from_env())
