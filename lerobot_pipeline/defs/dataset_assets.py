"""One LeRobot dataset per strategy and format (v2.1: ``lerobot_dataset``; v3.0: ``lerobot_dataset_v30``), assembled
from every committed episode of that strategy (the build itself: ``dataset_build.py``).

Which episodes and versions the dataset holds is recorded in its ``meta/provenance.jsonl`` (Dagster's
staleness stops following dependencies past 100 partitions, so the refresh sensor compares a store digest
with the one the dataset was built from instead).
"""

from pathlib import Path

import dagster as dg

from lerobot_pipeline.core.validate import validate_dataset
from lerobot_pipeline.defs.dataset_build import DATASET, build_dataset
from lerobot_pipeline.defs.episode_assets import METADATA as episode_metadata
from lerobot_pipeline.defs.partitions import STRATEGY_DIM, strategy_partitions
from lerobot_pipeline.defs.resources import PipelineResource

EPISODES_OF_STRATEGY = dg.AssetDep(
    episode_metadata, partition_mapping=dg.MultiToSingleDimensionPartitionMapping(STRATEGY_DIM))


@dg.asset(
    key=DATASET, partitions_def=strategy_partitions, group_name="dataset", kinds={"lerobot"}, tags={"format": "v2.1"},
    deps=[EPISODES_OF_STRATEGY], retry_policy=dg.RetryPolicy(max_retries=1, delay=5), description=(
        "The LeRobot v2.1 dataset of one strategy: every committed episode of every registered recording, "
        "indices 0..N-1 stable across re-runs, videos hard-linked (never re-encoded), built aside, validated, "
        "then swapped in. Kept current by the conversion runs themselves and dataset_refresh_sensor."
    ),
)
def lerobot_dataset(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=build_dataset(context.instance, pipeline, context.partition_key, "v2.1"))


def conformance_result(root: Path) -> dg.AssetCheckResult:
    """The project's validator (v2.1 or v3.0, by the dataset's codebase_version) as a check result."""
    report = validate_dataset(root)
    return dg.AssetCheckResult(
        passed=report.ok,
        metadata={
            "format": report.version,
            "episodes": report.episodes, "frames": report.frames, "videos_checked": report.videos_checked,
            "report": dg.MetadataValue.md("```\n" + report.format()[-4000:] + "\n```"),
        },
    )


@dg.asset_check(asset=lerobot_dataset, partitions_def=strategy_partitions, description=(
    "The project's LeRobot v2.1 validator over the whole dataset (totals, lengths vs rows vs video frames, "
    "timestamps, contiguous index, stats)."
))
def dataset_conformance(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
    return conformance_result(pipeline.dataset_dir(context.partition_key))
