"""Per episode × strategy: aligned frames → parquet and videos → metadata (the commit point).

Each asset body reads its partition, calls the core and returns metadata; files live in the
episode store, so nothing large passes through an IO manager.
"""


import os

import dagster as dg

from lerobot_pipeline.core.convert import align_episode
from lerobot_pipeline.core.episode_checks import check_parts
from lerobot_pipeline.core.episode_writer import (
    commit_episode,
    commit_filtered,
    load_aligned,
    load_staged,
    mark_pending,
    new_version_dir,
    pending_version,
    read_manifest,
    write_aligned,
    write_parquets,
    write_videos,
)
from lerobot_pipeline.core.raw import read_episode
from lerobot_pipeline.defs import ui_metadata
from lerobot_pipeline.defs.partitions import EPISODE_DIM, STRATEGY_DIM, episode_x_strategy, split_key
from lerobot_pipeline.defs.raw_sources import raw_images, raw_joints
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.errors import EpisodeRejected, PipelineError

RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)
GROUP = "episode"


def _fail(e: PipelineError) -> dg.Failure:
    """A failure that shows the error's own message in the UI; bad input is not retried."""
    return dg.Failure(description=str(e), allow_retries=False, metadata={"error": type(e).__name__})


@dg.asset(
    partitions_def=episode_x_strategy, deps=[raw_joints, raw_images], group_name=GROUP, retry_policy=RETRY,
    kinds={"python", "numpy"}, description=(
        "Cameras synced on the base camera's timeline and the arms aligned with the partition's strategy; "
        "gap policy applied. An episode a policy refuses (too short, missing camera) is recorded as filtered."
    ),
)
def aligned_frames(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    episode_key, strategy = split_key(context)
    try:
        config = pipeline.config_for_run(context, strategy)
        ref = pipeline.episode_ref(episode_key, config)
        raw = read_episode(ref, config)
        vdir = new_version_dir(pipeline.store, strategy, episode_key)
        try:
            aligned = align_episode(raw, config)
        except EpisodeRejected as e:
            mark_pending(vdir, filtered=e.reason)
            context.log.warning(str(e))
            return dg.MaterializeResult(metadata={"status": "filtered", "reason": e.reason})
    except PipelineError as e:
        raise _fail(e) from e
    parts = list(aligned.parts)
    write_aligned(vdir, parts)
    mark_pending(vdir)
    r = parts[0].report
    return dg.MaterializeResult(metadata={
        "status": "aligned",
        "frames": sum(len(p.capture_t_ns) for p in parts),
        "parts": len(parts),
        "utilisation": dg.MetadataValue.float(r.utilisation_total),
        "alignment_error": ui_metadata.error_table(r),
        "joint_plot": dg.MetadataValue.md(ui_metadata.joint_plot(parts[0], raw, config.fps)),
        "version": vdir.name,
    })


@dg.asset(
    partitions_def=episode_x_strategy, deps=[aligned_frames], group_name=GROUP, retry_policy=RETRY,
    kinds={"parquet"}, description="One parquet per LeRobot episode: state, action, capture time, timestamp = i/fps.",
)
def episode_parquet(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    episode_key, strategy = split_key(context)
    vdir, filtered = pending_version(pipeline.store, strategy, episode_key)
    if filtered:
        return dg.MaterializeResult(metadata={"status": "filtered", "reason": filtered})
    paths = write_parquets(vdir, pipeline.config_for_run(context, strategy), load_aligned(vdir))
    return dg.MaterializeResult(metadata={"files": len(paths), "path": dg.MetadataValue.path(str(paths[0]))})


@dg.asset(
    partitions_def=episode_x_strategy, deps=[aligned_frames], group_name=GROUP, retry_policy=RETRY,
    pool="video", kinds={"video"}, description=(
        "One mp4 per LeRobot episode and camera, frame k = row k, pts k/fps from 0; JPEGs streamed into the "
        "encoder (codec/crf/gop from config). Pool 'video' bounds how many encode at once."
    ),
)
def episode_videos(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    episode_key, strategy = split_key(context)
    config = pipeline.config_for_run(context, strategy)
    vdir, filtered = pending_version(pipeline.store, strategy, episode_key)
    if filtered:
        return dg.MaterializeResult(metadata={"status": "filtered", "reason": filtered})
    parts = load_aligned(vdir)
    try:
        raw = read_episode(pipeline.episode_ref(episode_key, config), config)
        paths = write_videos(vdir, config, parts, raw.cameras, jobs=min(pipeline.video_threads, os.cpu_count() or 1))
    except PipelineError as e:
        raise _fail(e) from e
    size = sum(p.stat().st_size for p in paths)
    return dg.MaterializeResult(metadata={
        "videos": len(paths), "codec": config.video.codec, "gop": config.video.gop, "crf": config.video.crf,
        "megabytes": round(size / 1e6, 2), "thumbnails": dg.MetadataValue.md(ui_metadata.thumbnail_strip(parts[0], raw)),
    })


@dg.asset(
    partitions_def=episode_x_strategy, deps=[episode_parquet, episode_videos], group_name=GROUP,
    kinds={"json"}, description=(
        "Stats and quality report of the episode, then the commit: the store's episode.json points at this "
        "version, which is what datasets pick up. Frames, fills, drops, alignment error, utilisation."
    ),
)
def episode_metadata(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    episode_key, strategy = split_key(context)
    vdir, filtered = pending_version(pipeline.store, strategy, episode_key)
    if filtered:
        commit_filtered(vdir, filtered)
        return dg.MaterializeResult(metadata={"status": "filtered", "reason": filtered})
    try:
        parts = commit_episode(vdir)
    except PipelineError as e:
        raise _fail(e) from e
    return dg.MaterializeResult(metadata={"status": "committed", **ui_metadata.episode_metadata(parts)})


@dg.asset_check(
    asset=episode_metadata, partitions_def=episode_x_strategy, blocking=True, description=(
        "Video frame count = rows for every camera, timestamp = i/fps, no NaN, alignment error within "
        "tolerance. A failing episode blocks its run; the dataset refuses to include it."
    ),
)
def episode_conformance(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
    keys = context.partition_key.keys_by_dimension
    episode_key, strategy = keys[EPISODE_DIM], keys[STRATEGY_DIM]
    config = pipeline.config_for_run(context, strategy)
    episode_dir = pipeline.episode_dir(strategy, episode_key)
    parts = load_staged(episode_dir)
    if not parts:
        reason = "not committed" if read_manifest(episode_dir) is None else "filtered by policy"
        return dg.AssetCheckResult(passed=reason != "not committed", severity=dg.AssetCheckSeverity.WARN,
                                   description=reason)
    result = check_parts(parts, config)
    return dg.AssetCheckResult(
        passed=result.passed,
        metadata={
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in result.problems) or "none"),
            "utilisation": dg.MetadataValue.float(parts[0].report.utilisation_total),
            "rows": sum(p.length for p in parts),
        },
    )
