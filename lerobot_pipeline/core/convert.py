"""One recording in, staged LeRobot episodes out: read → sync cameras → align → gap policy → write.

``convert_episode`` is what the CLI and the Dagster assets call; it knows nothing of either.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core.align import ArmAlignment, align_arm, align_arms, frame_arrays, padded_steps
from lerobot_pipeline.core.camera_videos import PendingVideos, default_jobs, pool_for, submit_videos
from lerobot_pipeline.core.episode_writer import (
    PartData,
    StagedPart,
    commit_episode,
    commit_filtered,
    new_version_dir,
    write_parquets,
    write_reports,
)
from lerobot_pipeline.core.memory import return_freed_memory
from lerobot_pipeline.core.raw import EpisodeRef, RawEpisode, joint_warnings, read_arm, read_cameras, read_episode
from lerobot_pipeline.core.report import ErrorStats, PartReport
from lerobot_pipeline.core.sync import CameraTimeline, GapPlan, plan_gaps, sync_cameras
from lerobot_pipeline.errors import EpisodeRejected, RawDataError, UndecodableImage


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
    timeline = sync_cameras(raw, config)
    arms = align_arms(raw.arms, timeline.t_ns, config.alignment)
    return _plan_parts(raw, timeline, arms, {a.name: a.nan_filled for a in raw.arms}, config, task)


def read_and_align(ref: EpisodeRef, config: PipelineConfig, *, task: str | None = None,
                   extra_bad: dict[str, dict[str, str]] | None = None) -> AlignedEpisode:
    """``align_episode(read_episode(ref))`` holding one arm's raw samples at a time (a 20-minute arm is ~17 MB).

    The cameras are read first so each arm can be aligned as soon as it is read; the errors stay those of
    ``read_episode`` then ``align_episode`` (an unreadable joint file is reported before a camera problem
    or a rejection). The result's ``raw`` has no ``arms``.
    """
    deferred: Exception | None = None
    try:
        cameras, missing, camera_warnings = read_cameras(ref, config, extra_bad)
        timeline = sync_cameras(RawEpisode(ref, (), cameras, missing), config)
    except (RawDataError, EpisodeRejected) as e:
        deferred = e
    arms, warnings, nan_filled = [], [], {}
    for arm_config in config.robot.arms:
        samples = read_arm(ref, arm_config, config)
        warnings += joint_warnings(samples)
        nan_filled[samples.name] = samples.nan_filled
        if deferred is None:
            arms.append(align_arm(samples, timeline.t_ns, config.alignment))
        del samples
        return_freed_memory()  # the arm's samples and its reading transients, before the next arm
    if deferred is not None:
        raise deferred
    raw = RawEpisode(ref, (), cameras, missing, tuple(warnings + camera_warnings))
    return _plan_parts(raw, timeline, tuple(arms), nan_filled, config, task)


def _plan_parts(raw: RawEpisode, timeline: CameraTimeline, arms: tuple[ArmAlignment, ...], nan_filled: dict[str, int],
                config: PipelineConfig, task: str | None) -> AlignedEpisode:
    ref = raw.ref
    t = timeline.t_ns
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
            # finite: every arm has a nearest sample for every frame
            arm_error_ms={a.name: cast(ErrorStats, ErrorStats.of(a.err_ms[frames])) for a in arms},
            utilisation={k2: round(v, 4) for k2, v in utilisation.items()},
            utilisation_total=round(used_total, 4),
            nan_filled=dict(nan_filled),
            warnings=list(raw.warnings), notes=list(plan.notes),
            padded_steps=padded_steps(arms, frames),
            bad_images={name: c.bad_files() for name, c in raw.cameras.items() if c.bad},
            long_gaps=plan.long_gaps,
        )
        parts.append(PartData(
            arrays=frame_arrays(arms, slice(seg.start, seg.stop), config.alignment.strategy),
            capture_t_ns=t[frames].astype(np.int64),
            camera_frames={m.name: m.index[frames] for m in timeline.matches},
            report=report,
        ))
    return AlignedEpisode(raw, timeline, arms, plan, tuple(parts))


MAX_UNDECODABLE = 100  # images found undecodable only while encoding, before the episode is given up


@dataclass
class PendingEpisode:
    """An episode whose arrays and parquet are written and whose videos are encoding on a pool."""

    ref: EpisodeRef
    version_dir: Path
    videos: PendingVideos
    redo: Callable[[dict[str, dict[str, str]]], PendingEpisode]  # start again with these images left out
    undecodable: dict[str, dict[str, str]] = field(default_factory=dict)  # camera -> {file: reason}

    def finish(self) -> list[StagedPart]:
        """Wait for the videos, then commit the version (the point where datasets can see it).

        A JPEG that passed the cheap structural check but does not decode is a missing frame of its camera
        (domain.md §3), not a lost recording: the episode is aligned again without it — the gap policy
        decides what that instant shows — and the half-written version is discarded.
        """
        current = self
        while True:
            try:
                current.videos.wait()
                return commit_episode(current.version_dir)
            except UndecodableImage as e:
                bad = {cam: dict(files) for cam, files in current.undecodable.items()}
                if e.file_name in bad.get(e.camera, {}) or sum(map(len, bad.values())) >= MAX_UNDECODABLE:
                    raise
                bad.setdefault(e.camera, {})[e.file_name] = "undecodable (found while encoding)"
                shutil.rmtree(current.version_dir, ignore_errors=True)
                current = current.redo(bad)


def start_episode(ref: EpisodeRef, config: PipelineConfig, store: str | Path, pool: Executor, *,
                  task: str | None = None,
                  observe: Callable[[RawEpisode, AlignedEpisode], None] | None = None,
                  undecodable: dict[str, dict[str, str]] | None = None) -> PendingEpisode:
    """Read, align and write the parquet of one recording, and submit its videos to ``pool``.

    ``observe`` sees the raw and aligned episode before they are dropped (the Dagster layer draws its plots
    from them); ``undecodable`` names images to treat as missing. Raises :class:`RawDataError` for unusable
    input and :class:`EpisodeRejected` when a policy refuses the episode (too short, missing camera, gap
    under ``reject``).
    """
    if observe is None:  # one arm's raw samples at a time
        aligned = read_and_align(ref, config, task=task, extra_bad=undecodable)
    else:  # observe draws from every arm's raw samples
        raw = read_episode(ref, config, extra_bad=undecodable)
        aligned = align_episode(raw, config, task=task)
        observe(raw, aligned)
        del raw
    parts, cameras = list(aligned.parts), aligned.raw.cameras
    del aligned  # the per-arm alignments: only the parts' arrays are written
    return_freed_memory()
    vdir = new_version_dir(store, config.alignment.strategy, ref.key)
    write_reports(vdir, parts)
    videos = submit_videos(vdir, config, parts, cameras, pool)  # first: the workers encode while parquet is written
    try:
        write_parquets(vdir, config, parts)
    except BaseException:
        videos.cancel()
        raise
    return_freed_memory()

    def redo(bad: dict[str, dict[str, str]]) -> PendingEpisode:
        return start_episode(ref, config, store, pool, task=task, observe=observe, undecodable=bad)

    return PendingEpisode(ref, vdir, videos, redo, undecodable or {})


def convert_episode(
    ref: EpisodeRef, config: PipelineConfig, store: str | Path, *, task: str | None = None, jobs: int | None = None,
    pool: Executor | None = None,
) -> list[StagedPart]:
    """Convert one recording into the episode store (all stages) and commit it; returns its parts.

    Videos encode on ``pool`` if given, else on this process's shared pool of ``jobs`` worker processes.
    """
    pool = pool or pool_for(jobs or default_jobs(config))
    return start_episode(ref, config, store, pool, task=task).finish()


def commit_rejected(store: str | Path, strategy: str, episode_key: str, reason: str) -> None:
    """Record that a recording yields no episode under the current config (datasets leave it out, and say why)."""
    commit_filtered(new_version_dir(store, strategy, episode_key), reason)
