"""Jobs: convert episodes (per episode × strategy partition) and assemble a dataset (per strategy)."""

import dagster as dg

from lerobot_pipeline.defs.dataset_assets import lerobot_dataset
from lerobot_pipeline.defs.dataset_v30_assets import lerobot_dataset_v30
from lerobot_pipeline.defs.episode_assets import convert_episodes
from lerobot_pipeline.defs.executors import pipeline_executor
from lerobot_pipeline.defs.partitions import episode_x_strategy, strategy_partitions
from lerobot_pipeline.defs.raw_sources import raw_images, raw_joints


def step_failure_text(event: dg.DagsterEvent) -> str | None:
    """What a failed step says: the Failure's description (our typed errors), else the error's last line."""
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip().splitlines()[-1] if data.error else None


convert_episode_job = dg.define_asset_job(
    "convert_episode_job",
    selection=dg.AssetSelection.assets(convert_episodes),
    partitions_def=episode_x_strategy,
    description="Convert one recorded episode with one strategy (aligned frames → parquet, videos → metadata).",
    tags={"dagster/max_retries": "1", "dagster/retry_strategy": "FROM_FAILURE"},
    # one step per run (the episode assets are one multi-asset); its videos encode on worker processes.
    # In-process by default; LEROBOT_PIPELINE_EXECUTOR=celery sends the step to a worker pool
    executor_def=pipeline_executor(),
)

dataset_job = dg.define_asset_job(
    "dataset_job",
    selection=dg.AssetSelection.assets(lerobot_dataset, lerobot_dataset_v30),
    partitions_def=strategy_partitions,
    description="Assemble (or refresh) the LeRobot dataset of one strategy from the committed episodes.",
    executor_def=pipeline_executor(),
)

observe_raw_job = dg.define_asset_job(
    "observe_raw_job",
    selection=dg.AssetSelection.assets(raw_joints.key, raw_images.key),
    description="Fingerprint the raw files of every registered episode (changed raw data → stale downstream).",
)
