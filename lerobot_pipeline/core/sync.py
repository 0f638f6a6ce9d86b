"""Camera synchronisation (domain.md §3) and the gap policy for frames without a valid partner.

The base camera's capture times are the output timeline. Every other camera (role ``sync`` or
``downsample``; the maths is the same, a faster camera just has surplus frames that are never
chosen) contributes its nearest frame, valid within ``sync.tolerance_ms``. The joint strategies add
their own validity (align.py); :func:`plan_gaps` then decides what the episode becomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core.nearest import nearest_index
from lerobot_pipeline.core.raw import RawEpisode
from lerobot_pipeline.errors import EpisodeRejected


@dataclass(frozen=True)
class CameraMatch:
    name: str
    index: np.ndarray  # (n,) int64 frame index into the camera's frames; -1 = camera absent (black)
    err_ms: np.ndarray  # (n,) float64 |t_camera - t_base| in ms; NaN when absent
    valid: np.ndarray  # (n,) bool


@dataclass(frozen=True)
class CameraTimeline:
    t_ns: np.ndarray  # (n,) int64 base camera capture times = output timeline
    matches: tuple[CameraMatch, ...]  # in config camera order, base included

    @property
    def valid(self) -> np.ndarray:
        ok = np.ones(len(self.t_ns), dtype=bool)
        for m in self.matches:
            ok &= m.valid
        return ok


def sync_cameras(raw: RawEpisode, config: PipelineConfig) -> CameraTimeline:
    base = config.base_camera
    ep = raw.ref.key
    if base.name not in raw.cameras:
        raise EpisodeRejected(ep, f"base camera '{base.name}' has no frames")
    if raw.missing_cameras and config.filtering.require_all_cameras:
        raise EpisodeRejected(ep, f"camera(s) {', '.join(raw.missing_cameras)} missing (filtering.require_all_cameras)")
    t = raw.cameras[base.name].t_ns
    tol_ns = config.sync.tolerance_ms * 1e6
    matches = []
    for cam in config.cameras:
        frames = raw.cameras.get(cam.name)
        if frames is None:
            matches.append(CameraMatch(cam.name, np.full(len(t), -1, np.int64), np.full(len(t), np.nan),
                                       np.ones(len(t), bool)))
            continue
        idx = nearest_index(frames.t_ns, t)
        err_ns = np.abs(frames.t_ns[idx] - t)
        matches.append(CameraMatch(cam.name, idx.astype(np.int64), err_ns / 1e6, err_ns <= tol_ns))
    return CameraTimeline(t, tuple(matches))


@dataclass(frozen=True)
class Segment:
    start: int  # first base-frame index
    stop: int  # one past the last

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class GapPlan:
    parts: tuple[Segment, ...]  # the LeRobot episodes this recording becomes
    trimmed_start: int  # invalid frames dropped at the start
    trimmed_end: int  # invalid frames dropped at the end
    filled: np.ndarray  # (n,) bool: kept although invalid (policy 'fill'; nearest data used, flagged)
    dropped_gaps: int  # invalid frames dropped inside the episode (policy 'split')
    dropped_short: int  # frames of pieces shorter than filtering.min_duration_sec
    notes: tuple[str, ...]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal ``[start, stop)`` runs of True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def plan_gaps(
    valid: np.ndarray, t_ns: np.ndarray, config: PipelineConfig, episode: str, reasons: dict[str, np.ndarray]
) -> GapPlan:
    """Turn per-frame validity into episode parts under the configured gap policy.

    Invalid frames at the ends are trimmed. Inside, ``fill`` keeps them (flagged), ``split`` cuts the
    episode at each gap, ``reject`` refuses the episode naming the first gap. Pieces shorter than
    ``filtering.min_duration_sec`` are dropped; pieces longer than ``sync.max_episode_sec`` are cut
    into equal parts below it (LeRobot's float32 timestamps fail past 1024 s).
    ``reasons`` maps a camera/arm name to its own validity mask, to name culprits in messages.
    """
    n = len(valid)
    fps = config.fps
    notes: list[str] = []
    ok = np.flatnonzero(valid)
    if len(ok) == 0:
        worst = min(reasons, key=lambda k: reasons[k].sum()) if reasons else "?"
        raise EpisodeRejected(episode, f"no frame has every camera and arm within tolerance (worst: {worst})")
    first, last = int(ok[0]), int(ok[-1])
    filled = np.zeros(n, dtype=bool)
    inner_invalid = ~valid[first : last + 1]
    policy = config.sync.gap_policy
    dropped_gaps = 0
    if not inner_invalid.any():
        pieces = [(first, last + 1)]
    elif policy == "reject":
        gap_at = first + int(np.flatnonzero(inner_invalid)[0])
        culprits = [k for k, m in reasons.items() if not m[gap_at]]
        t_rel = (t_ns[gap_at] - t_ns[0]) / 1e9
        raise EpisodeRejected(
            episode,
            f"gap at frame {gap_at} (t={t_rel:.3f} s): no valid partner in {', '.join(culprits)} "
            "(sync.gap_policy=reject)",
        )
    elif policy == "fill":
        filled[first : last + 1] = inner_invalid
        pieces = [(first, last + 1)]
        notes.append(f"filled {int(inner_invalid.sum())} frame(s) inside the episode from the nearest data")
    else:  # split
        pieces = [(s + first, e + first) for s, e in _runs(~inner_invalid)]
        dropped_gaps = int(inner_invalid.sum())
        notes.append(f"split at {len(pieces) - 1} gap(s), dropping {dropped_gaps} frame(s)")
    min_frames = int(np.ceil(config.filtering.min_duration_sec * fps))
    kept = [(s, e) for s, e in pieces if e - s >= max(min_frames, 1)]
    dropped_short = sum(e - s for s, e in pieces) - sum(e - s for s, e in kept)
    if dropped_short:
        notes.append(f"dropped {dropped_short} frame(s) in piece(s) shorter than {config.filtering.min_duration_sec} s")
    if not kept:
        dur = (last + 1 - first) / fps
        raise EpisodeRejected(
            episode, f"too short: {dur:.2f} s of usable frames < filtering.min_duration_sec={config.filtering.min_duration_sec}"
        )
    max_frames = max(1, int(config.sync.max_episode_sec * fps))  # at least one frame per part
    parts: list[Segment] = []
    for s, e in kept:
        k = -(-(e - s) // max_frames)
        if k > 1:
            notes.append(f"{(e - s) / fps:.1f} s piece split into {k} parts below sync.max_episode_sec")
        bounds = np.linspace(s, e, k + 1).round().astype(int)
        parts.extend(Segment(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    return GapPlan(tuple(parts), first, n - 1 - last, filled, dropped_gaps, dropped_short, tuple(notes))
