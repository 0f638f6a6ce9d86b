"""One LeRobot v2.1 dataset per strategy, assembled from every committed episode of that strategy.

Which episodes and versions the dataset holds is recorded in its ``meta/provenance.jsonl`` (Dagster's
staleness stops following dependencies past 100 partitions, so the refresh sensor compares that
record with the store instead).
"""


import hashlib
from pathlib import Path

import dagster as dg

from lerobot_pipeline.core.dataset import assemble_dataset, read_provenance
from lerobot_pipeline.core.episode_checks import check_parts
from lerobot_pipeline.core.episode_writer import StagedPart, load_staged, read_manifest
from lerobot_pipeline.core.validate import validate_dataset
from lerobot_pipeline.defs import ui_metadata
from lerobot_pipeline.defs.episode_assets import episode_metadata
from lerobot_pipeline.defs.partitions import EPISODE_DIM, STRATEGY_DIM, strategy_partitions
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.errors import PipelineError


def committed_parts(pipeline: PipelineResource, strategy: str, episode_keys: list[str]) -> tuple[list[StagedPart], dict]:
    """Committed parts of the registered episodes, and {episode_key: why it is left out}."""
    parts, left_out = [], {}
    for key in episode_keys:
        episode_dir = pipeline.episode_dir(strategy, key)
        manifest = read_manifest(episode_dir)
        if manifest is None:
            left_out[key] = "not converted yet"
        elif manifest.get("filtered"):
            left_out[key] = f"filtered: {manifest['filtered']}"
        else:
            parts.extend(load_staged(episode_dir))
    return parts, left_out


def store_digest(pipeline: PipelineResource, strategy: str, episode_keys: list[str]) -> str:
    """Digest of the committed versions of the registered episodes (what the dataset should hold)."""
    h = hashlib.sha256()
    for key in sorted(episode_keys):
        m = read_manifest(pipeline.episode_dir(strategy, key))
        if m and not m.get("filtered"):
            h.update(f"{key}:{m['version']}\n".encode())
    return h.hexdigest()[:16]


def dataset_digest(dataset_dir: Path) -> str:
    """The same digest computed from what the dataset actually holds."""
    h = hashlib.sha256()
    seen = {}
    for row in read_provenance(dataset_dir):
        seen[row["episode_key"]] = row["version"]
    for key in sorted(seen):
        h.update(f"{key}:{seen[key]}\n".encode())
    return h.hexdigest()[:16]


@dg.asset(
    partitions_def=strategy_partitions, group_name="dataset", kinds={"lerobot"},
    deps=[dg.AssetDep(episode_metadata, partition_mapping=dg.MultiToSingleDimensionPartitionMapping(STRATEGY_DIM))],
    retry_policy=dg.RetryPolicy(max_retries=1, delay=5), description=(
        "The LeRobot v2.1 dataset of one strategy: every committed episode of every registered recording, "
        "indices 0..N-1 stable across re-runs, videos hard-linked (never re-encoded), built aside, validated, "
        "then swapped in. Kept current by dataset_refresh_sensor."
    ),
)
def lerobot_dataset(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    strategy = context.partition_key
    config = pipeline.config(strategy)
    keys = context.instance.get_dynamic_partitions(EPISODE_DIM)
    parts, left_out = committed_parts(pipeline, strategy, keys)
    if not parts:
        raise dg.Failure(description=f"no committed episode for strategy {strategy!r} yet", allow_retries=False)
    bad = check_parts(parts, config)
    if not bad.passed:
        raise dg.Failure(
            description="episodes failed their conformance check; dataset left unchanged:\n" + "\n".join(bad.problems[:20]),
            allow_retries=False,
        )
    try:
        summary = assemble_dataset(parts, pipeline.dataset_dir(strategy), config)
    except PipelineError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(summary.root)),
        "episodes": summary.episodes,
        "recordings": len({r["episode_key"] for r in summary.provenance}),
        "frames": summary.frames,
        "hours": round(summary.frames / config.fps / 3600, 3),
        "reused_unchanged": summary.reused,
        "rewritten": summary.rewritten,
        "left_out": dg.MetadataValue.md("\n".join(f"- {k}: {v}" for k, v in sorted(left_out.items())) or "none"),
        "episodes_table": ui_metadata.dataset_table(summary.provenance),
        "store_digest": dataset_digest(summary.root),
    })


@dg.asset_check(asset=lerobot_dataset, partitions_def=strategy_partitions, description=(
    "The project's LeRobot v2.1 validator over the whole dataset (totals, lengths vs rows vs video frames, "
    "timestamps, contiguous index, stats)."
))
def dataset_conformance(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
    strategy = context.partition_key
    report = validate_dataset(pipeline.dataset_dir(strategy))
    return dg.AssetCheckResult(
        passed=report.ok,
        metadata={
            "episodes": report.episodes, "frames": report.frames, "videos_checked": report.videos_checked,
            "report": dg.MetadataValue.md("```\n" + report.format()[-4000:] + "\n```"),
        },
    )
