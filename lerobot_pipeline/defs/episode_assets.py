"""Per episode × strategy: aligned frames → parquet and videos → metadata (the commit point).

The four assets are one step (``convert_episodes``, a multi-asset): the graph shows each stage, but one
process reads the raw episode once and streams it through all of them, and a backfill hands each run a batch
of partitions that the step pipelines on the shared video worker pool (``convert --jobs`` does the same).
Each partition is reported on its own: its materialisations and its conformance check are logged when it
commits, a failing one is reported failed without failing the others' results, and the step fails at the
end naming every episode that did not convert.
"""


import os
from collections import deque
from dataclasses import dataclass

import dagster as dg

from lerobot_pipeline.core.camera_videos import prestart_video_pool
from lerobot_pipeline.core.convert import AlignedEpisode, PendingEpisode, commit_rejected, start_episode
from lerobot_pipeline.core.episode_checks import check_parts
from lerobot_pipeline.core.raw import RawEpisode
from lerobot_pipeline.defs import ui_metadata
from lerobot_pipeline.defs.dataset_build import DATASET_KEYS, build_dataset
from lerobot_pipeline.defs.executors import video_step_tags
from lerobot_pipeline.defs.partitions import EPISODE_DIM, STRATEGY_DIM, episode_x_strategy
from lerobot_pipeline.defs.raw_sources import raw_images, raw_joints
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.errors import EpisodeRejected, PipelineError, RawDataError

GROUP = "episode"
def backfill_batch() -> int:
    """Partitions per run of a backfill (LEROBOT_PIPELINE_BACKFILL_BATCH, default 25). A run costs ~2 CPU-s
    of process start and imports, ~1.5 s from request to step and its own pipeline fill and drain; a 20-s
    three-camera episode ~2.5 CPU-s. At 10 that was a tenth of a backfill (two runs of 6 instead of one of 12:
    1.18-1.47x `convert` against 1.04-1.05x, bench/bench_backfill.py); at 25 a run lasts about a minute per
    core, and a run retried after a crash converts at most that again."""
    return max(1, int(os.environ.get("LEROBOT_PIPELINE_BACKFILL_BATCH", "25")))


BATCH = backfill_batch()

ALIGNED, PARQUET, VIDEOS, METADATA = (dg.AssetKey(k) for k in ("aligned_frames", "episode_parquet", "episode_videos",
                                                                "episode_metadata"))
CHECK = dg.AssetCheckKey(METADATA, "episode_conformance")


def _spec(key: dg.AssetKey, deps, kinds: set[str], description: str) -> dg.AssetSpec:
    return dg.AssetSpec(key, deps=deps, partitions_def=episode_x_strategy, group_name=GROUP, kinds=kinds,
                        skippable=True, description=description)


SPECS = [
    _spec(ALIGNED, [raw_joints, raw_images], {"python", "numpy"},
          "Cameras synced on the base camera's timeline and the arms aligned with the partition's strategy; gap "
          "policy applied. An episode a policy refuses (too short, missing camera) is recorded as filtered."),
    _spec(PARQUET, [ALIGNED], {"parquet"},
          "One parquet per LeRobot episode: state, action, capture time, timestamp = i/fps."),
    _spec(VIDEOS, [ALIGNED], {"video"},
          "One mp4 per LeRobot episode and camera, frame k = row k, pts k/fps from 0; JPEGs streamed into the "
          "encoder (codec/crf/gop from config) on worker processes. Pool 'video' bounds how many steps encode."),
    _spec(METADATA, [PARQUET, VIDEOS], {"json"},
          "Stats and quality report of the episode, then the commit: the store's episode.json points at this "
          "version, which is what datasets pick up. Frames, fills, drops, alignment error, utilisation."),
]
CONFORMANCE = dg.AssetCheckSpec(
    CHECK.name, asset=METADATA, partitions_def=episode_x_strategy, blocking=True, description=(
        "Video frame count = rows for every camera, timestamp = i/fps, no NaN, alignment error within "
        "tolerance. A failing episode fails its run; the dataset refuses to include it."),
)


@dataclass
class _InFlight:
    key: str
    pending: PendingEpisode
    metadata: dict  # per asset key, filled as the stages happen


def _observe(metadata: dict, config):
    def observe(raw: RawEpisode, aligned: AlignedEpisode) -> None:
        parts = aligned.parts
        r = parts[0].report
        metadata[ALIGNED] = {
            "status": "aligned", "frames": sum(len(p.capture_t_ns) for p in parts), "parts": len(parts),
            "utilisation": dg.MetadataValue.float(r.utilisation_total),
            "alignment_error": ui_metadata.error_table(r),
            "joint_plot": dg.MetadataValue.md(ui_metadata.joint_plot(parts[0], raw, config.fps)),
        }
        metadata[VIDEOS] = {"codec": config.video.codec, "gop": config.video.gop, "crf": config.video.crf,
                            "thumbnails": dg.MetadataValue.md(ui_metadata.thumbnail_strip(parts[0], raw))}
    return observe


@dg.multi_asset(
    name="convert_episodes", specs=SPECS, check_specs=[CONFORMANCE], partitions_def=episode_x_strategy,
    can_subset=False, pool="video", backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=BATCH),
    op_tags=video_step_tags(),  # with the Celery executor: the video queue's workers take the step
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description="Convert recorded episodes: read raw once, align, write parquet and videos, commit, check.",
)
def convert_episodes(context: dg.AssetExecutionContext, pipeline: PipelineResource):
    keys = list(context.partition_keys)
    pool = prestart_video_pool(pipeline.video_workers)  # workers start while the first episode is read
    failed: dict[str, PipelineError] = {}
    checks: list[dg.AssetCheckEvaluation] = []
    in_flight: deque[_InFlight] = deque()

    def finish_oldest() -> None:
        item = in_flight.popleft()
        episode_key, strategy = _dims(item.key)
        try:
            parts = item.pending.finish()
        except PipelineError as e:
            failed[item.key] = e
            context.log.error(f"{item.key}: {e}")
            return
        config = pipeline.config_for_run(context, strategy)
        result = check_parts(parts, config)
        size = sum(p.video(c.name).stat().st_size for p in parts for c in config.cameras)
        item.metadata[PARQUET] = {"files": len(parts), "path": dg.MetadataValue.path(str(parts[0].parquet))}
        item.metadata[VIDEOS] |= {"videos": len(parts) * len(config.cameras), "megabytes": round(size / 1e6, 2)}
        item.metadata[METADATA] = {"status": "committed", **ui_metadata.episode_metadata(parts)}
        for key in (ALIGNED, PARQUET, VIDEOS, METADATA):
            context.log_event(dg.AssetMaterialization(key, partition=item.key, metadata=item.metadata[key]))
        checks.append(dg.AssetCheckEvaluation(
            asset_key=METADATA, check_name=CHECK.name, passed=result.passed, partition=item.key, blocking=True,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in result.problems) or "none"),
                      "utilisation": dg.MetadataValue.float(parts[0].report.utilisation_total),
                      "rows": sum(p.length for p in parts)}))
        if not result.passed:
            failed[item.key] = RawDataError(
                episode_key, "failed its conformance check: " + "; ".join(result.problems[:5]))

    for key in keys:
        episode_key, strategy = _dims(key)
        metadata: dict = {}
        try:
            config = pipeline.config_for_run(context, strategy)
            ref = pipeline.episode_ref(episode_key, config)
            pending = start_episode(ref, config, pipeline.store, pool, observe=_observe(metadata, config))
        except EpisodeRejected as e:
            commit_rejected(pipeline.store, strategy, episode_key, e.reason)
            context.log.warning(str(e))
            for asset in (ALIGNED, PARQUET, VIDEOS, METADATA):
                context.log_event(dg.AssetMaterialization(asset, partition=key, metadata={"status": "filtered",
                                                                                         "reason": e.reason}))
            checks.append(dg.AssetCheckEvaluation(asset_key=METADATA, check_name=CHECK.name, passed=True,
                                                  partition=key, description=f"filtered by policy: {e.reason}"))
            continue
        except PipelineError as e:
            failed[key] = e
            context.log.error(f"{key}: {e}")
            continue
        in_flight.append(_InFlight(key, pending, metadata))
        while len(in_flight) > pipeline.video_workers:
            finish_oldest()
    while in_flight:
        finish_oldest()
    if pipeline.assemble_after_convert and len(failed) < len(keys):
        for strategy in sorted({_dims(k)[1] for k in keys}):
            for fmt in pipeline.formats:
                _assemble(context, pipeline, strategy, fmt)

    if failed:
        for evaluation in checks:
            context.log_event(evaluation)
        # bad input will fail the same way again; anything else (I/O, a killed worker) is worth a retry
        retry = any(not isinstance(e, (RawDataError, EpisodeRejected)) for e in failed.values())
        raise dg.Failure(
            description=f"{len(failed)} of {len(keys)} episode(s) did not convert:\n"
            + "\n".join(f"- {k}: {e}" for k, e in failed.items()),
            allow_retries=retry, metadata={"failed": dg.MetadataValue.json(sorted(failed))})
    if len(keys) == 1:  # the check's own output: Dagster attributes it to the run's one partition
        (evaluation,) = checks
        yield dg.AssetCheckResult(asset_key=METADATA, check_name=CHECK.name, passed=evaluation.passed,
                                  metadata=evaluation.metadata, description=evaluation.description)
        return
    for evaluation in checks:
        context.log_event(evaluation)
    yield dg.AssetCheckResult(asset_key=METADATA, check_name=CHECK.name, passed=all(e.passed for e in checks),
                              description=f"batch of {len(keys)} partitions; each partition's result is recorded "
                              "on its own", metadata={"partitions": len(keys)})


def _assemble(context: dg.AssetExecutionContext, pipeline: PipelineResource, strategy: str, fmt: str) -> None:
    """Bring the strategy's dataset up to date now, in this run, and report it as a materialisation of
    ``lerobot_dataset`` (the asset's own code path): the episode is in the dataset when its run ends. A failure
    here does not fail the conversion; the dataset stays as it was and dataset_refresh_sensor tries again."""
    try:
        metadata = build_dataset(context.instance, pipeline, strategy, fmt)
    except dg.Failure as e:
        context.log.warning(f"dataset {strategy} ({fmt}) not updated (dataset_refresh_sensor will retry): "
                            f"{e.description}")
        return
    context.log_event(dg.AssetMaterialization(DATASET_KEYS[fmt], partition=strategy, metadata=metadata,
                                              description="assembled by the conversion run right after its commits"))


def _dims(key: str) -> tuple[str, str]:
    mk = episode_x_strategy.get_partition_key_from_str(key) if isinstance(key, str) else key
    dims = mk.keys_by_dimension
    return dims[EPISODE_DIM], dims[STRATEGY_DIM]
