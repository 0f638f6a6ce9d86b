"""One recording in, staged LeRobot episodes out: read → sync cameras → align → gap policy → write.

``convert_episode`` is what the CLI and the Dagster assets call; it knows nothing of either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core.align import ArmAlignment, align_arms, frame_arrays
from lerobot_pipeline.core.episode_writer import (
    PartData,
    StagedPart,
    commit_episode,
    new_version_dir,
    write_aligned,
    write_parquets,
    write_videos,
)
from lerobot_pipeline.core.raw import EpisodeRef, RawEpisode, read_episode
from lerobot_pipeline.core.report import ErrorStats, PartReport
from lerobot_pipeline.core.sync import CameraTimeline, GapPlan, plan_gaps, sync_cameras


@dataclass(frozen=True)
class AlignedEpisode:
    """A recording on its camera timeline, before anything is written."""

    raw: RawEpisode
    timeline: CameraTimeline
    arms: tuple[ArmAlignment, ...]
    plan: GapPlan
    parts: tuple[PartData, ...]


def align_episode(raw: RawEpisode, config: PipelineConfig, *, task: str | None = None) -> AlignedEpisode:
    """Pure computation (no image decoding, no writing): timeline, strategies, gap policy, reports."""
    ref = raw.ref
    timeline = sync_cameras(raw, config)
    t = timeline.t_ns
    arms = align_arms(raw.arms, t, config.alignment)
    reasons = {m.name: m.valid for m in timeline.matches} | {a.name: a.valid for a in arms}
    valid = timeline.valid.copy()
    for a in arms:
        valid &= a.valid
    plan = plan_gaps(valid, t, config, ref.key, reasons)
    kept = np.concatenate([np.arange(s.start, s.stop) for s in plan.parts])
    used = {a.name: a.used_samples(kept) for a in arms}
    utilisation = {a.name: used[a.name] / a.n_samples for a in arms}
    used_total = sum(used.values()) / sum(a.n_samples for a in arms)
    parts = []
    for k, seg in enumerate(plan.parts):
        frames = np.arange(seg.start, seg.stop)
        filled = np.flatnonzero(plan.filled[frames])
        report = PartReport(
            episode_key=ref.key, source=ref.source, episode_id=ref.episode_id,
            task=task or config.output.task or ref.task_text, strategy=config.alignment.strategy,
            config_digest=config.digest(), part=k, n_parts=len(plan.parts), fps=config.fps,
            frames_in=len(t), frames_out=len(frames), start_frame=seg.start,
            capture_start_ns=int(t[seg.start]), capture_end_ns=int(t[seg.stop - 1]),
            trimmed_start=plan.trimmed_start, trimmed_end=plan.trimmed_end,
            dropped_gaps=plan.dropped_gaps, dropped_short=plan.dropped_short,
            filled_frames=filled.tolist(),
            filled_by={name: int((~m[frames]).sum()) for name, m in reasons.items() if (~m[frames]).any()},
            camera_error_ms={m.name: ErrorStats.of(m.err_ms[frames]) for m in timeline.matches},
            arm_error_ms={a.name: ErrorStats.of(a.err_ms[frames]) for a in arms},
            utilisation={k2: round(v, 4) for k2, v in utilisation.items()},
            utilisation_total=round(used_total, 4),
            nan_filled={a.name: a.nan_filled for a in raw.arms},
            warnings=list(raw.warnings), notes=list(plan.notes),
        )
        parts.append(PartData(
            arrays=frame_arrays(arms, frames, config.alignment.strategy),
            capture_t_ns=t[frames].astype(np.int64),
            camera_frames={m.name: m.index[frames] for m in timeline.matches},
            report=report,
        ))
    return AlignedEpisode(raw, timeline, arms, plan, tuple(parts))


def convert_episode(
    ref: EpisodeRef, config: PipelineConfig, store: str | Path, *, task: str | None = None, jobs: int | None = None,
) -> list[StagedPart]:
    """Convert one recording into the episode store (all stages) and commit it; returns its parts.

    Raises :class:`RawDataError` for unusable input and :class:`EpisodeRejected` when a policy
    refuses the episode (too short, missing camera, gap under ``reject``).
    """
    raw = read_episode(ref, config)
    aligned = align_episode(raw, config, task=task)
    parts = list(aligned.parts)
    vdir = new_version_dir(store, config.alignment.strategy, ref.key)
    write_aligned(vdir, parts)
    write_parquets(vdir, config, parts)
    write_videos(vdir, config, parts, raw.cameras, jobs=jobs or min(len(config.cameras), os.cpu_count() or 1))
    return commit_episode(vdir)
