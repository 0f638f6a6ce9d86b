"""Raw joints and raw images of every episode, as observable source assets.

Their data version is a fingerprint of the raw files (names, sizes, mtimes), so a changed or
re-recorded episode marks everything downstream stale and the UI says why.
"""


import dagster as dg

from lerobot_pipeline.core.fingerprint import directory_fingerprint, files_fingerprint
from lerobot_pipeline.defs.partitions import EPISODE_DIM, episode_partitions
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.errors import PipelineError


def _observe(context, pipeline: PipelineResource, which: str) -> dg.DataVersionsByPartition:
    config = pipeline.config("nearest")  # raw layout does not depend on the strategy
    versions = {}
    for key in context.instance.get_dynamic_partitions(EPISODE_DIM):
        try:
            ref = pipeline.episode_ref(key, config)
        except PipelineError as e:
            context.log.warning(f"{key}: {e}")
            versions[key] = dg.DataVersion("missing")
            continue
        if which == "joints":
            fp = files_fingerprint(
                [ref.joints_dir / a.file for a in config.robot.arms] + [ref.joints_dir / "metadata.json"])
        else:
            fp = directory_fingerprint(ref.images_dir)
        versions[key] = dg.DataVersion(fp)
    return dg.DataVersionsByPartition(versions)


@dg.observable_source_asset(
    partitions_def=episode_partitions, group_name="raw", description=(
        "Joint states of the four arms (~250 Hz parquet per arm) under joints/<task>/<episode>. "
        "Data version = fingerprint of the parquet files and metadata.json."
    ),
)
def raw_joints(context, pipeline: PipelineResource) -> dg.DataVersionsByPartition:
    return _observe(context, pipeline, "joints")


@dg.observable_source_asset(
    partitions_def=episode_partitions, group_name="raw", description=(
        "JPEG frames of every camera (25/30 Hz) under images/<task>/<episode>. "
        "Data version = fingerprint of every file (count, names, sizes, mtimes)."
    ),
)
def raw_images(context, pipeline: PipelineResource) -> dg.DataVersionsByPartition:
    return _observe(context, pipeline, "images")
