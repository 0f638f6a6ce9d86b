"""The LeRobot v3.0 dataset of each strategy (``lerobot_dataset_v30``), beside the v2.1 ``lerobot_dataset``.

Same input (every committed episode of the strategy) and the same index rules; written natively in the
layout LeRobot 0.4+ reads, at ``datasets/<name>_<strategy>_v30``. Incremental: adding an episode
rewrites only the open data/video files and meta/ (see docs/v30.md). Kept current like the v2.1 dataset
when ``v3.0`` is among the resource's ``formats`` (LEROBOT_PIPELINE_FORMATS=v2.1,v3.0).
"""

import dagster as dg

from lerobot_pipeline.defs.dataset_assets import EPISODES_OF_STRATEGY, conformance_result
from lerobot_pipeline.defs.dataset_build import DATASET_V30, build_dataset
from lerobot_pipeline.defs.partitions import strategy_partitions
from lerobot_pipeline.defs.resources import PipelineResource


@dg.asset(
    key=DATASET_V30, partitions_def=strategy_partitions, group_name="dataset", kinds={"lerobot"},
    tags={"format": "v3.0"}, deps=[EPISODES_OF_STRATEGY], retry_policy=dg.RetryPolicy(max_retries=1, delay=5),
    description=(
        "The LeRobot v3.0 dataset of one strategy (what LeRobot >= 0.4 loads): episodes concatenated into "
        "size-bounded data/video files, videos remuxed (never re-encoded), incremental, validated, swapped in. "
        "Same episodes and indices as lerobot_dataset (v2.1)."
    ),
)
def lerobot_dataset_v30(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=build_dataset(context.instance, pipeline, context.partition_key, "v3.0"))


@dg.asset_check(asset=lerobot_dataset_v30, partitions_def=strategy_partitions, description=(
    "The project's LeRobot v3.0 validator over the whole dataset (totals, offsets contiguity, lengths vs rows vs "
    "video frames in each from/to window, timestamps, stats)."
))
def dataset_v30_conformance(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
    return conformance_result(pipeline.dataset_dir(context.partition_key, "v3.0"))
