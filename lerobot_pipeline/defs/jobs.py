"""Jobs: convert episodes (per episode × strategy partition) and assemble a dataset (per strategy)."""

import dagster as dg

from lerobot_pipeline.defs.dataset_assets import lerobot_dataset
from lerobot_pipeline.defs.episode_assets import aligned_frames, episode_metadata, episode_parquet, episode_videos
from lerobot_pipeline.defs.partitions import episode_x_strategy, strategy_partitions
from lerobot_pipeline.defs.raw_sources import raw_images, raw_joints

def step_failure_text(event: dg.DagsterEvent) -> str | None:
    """What a failed step says: the Failure's description (our typed errors), else the error's last line."""
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip().splitlines()[-1] if data.error else None


EPISODE_ASSETS = [aligned_frames, episode_parquet, episode_videos, episode_metadata]

convert_episode_job = dg.define_asset_job(
    "convert_episode_job",
    selection=dg.AssetSelection.assets(*EPISODE_ASSETS),
    partitions_def=episode_x_strategy,
    description="Convert one recorded episode with one strategy (aligned frames → parquet, videos → metadata).",
    tags={"dagster/max_retries": "1", "dagster/retry_strategy": "FROM_FAILURE"},
    # one process per run: the steps share the episode's files, and a process per step would cost
    # more than the conversion of a short episode; parallelism comes from concurrent runs.
    executor_def=dg.in_process_executor,
)

dataset_job = dg.define_asset_job(
    "dataset_job",
    selection=dg.AssetSelection.assets(lerobot_dataset),
    partitions_def=strategy_partitions,
    description="Assemble (or refresh) the LeRobot dataset of one strategy from the committed episodes.",
    executor_def=dg.in_process_executor,
)

observe_raw_job = dg.define_asset_job(
    "observe_raw_job",
    selection=dg.AssetSelection.assets(raw_joints.key, raw_images.key),
    description="Fingerprint the raw files of every registered episode (changed raw data → stale downstream).",
)
