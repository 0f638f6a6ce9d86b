"""Camera synchronisation (domain.md §3) and the gap policy for frames without a valid partner.

The base camera's capture times are the output timeline. Every other camera (role ``sync`` or
``downsample``; the maths is the same, a faster camera just has surplus frames that are never
chosen) contributes its nearest frame, valid within ``sync.tolerance_ms``. The joint strategies add
their own validity (align.py); :func:`plan_gaps` then decides what the episode becomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core.nearest import nearest_index
from lerobot_pipeline.core.raw import CameraFrames, RawEpisode
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


def _match(frames: CameraFrames, t: np.ndarray, tol_ns: float) -> CameraMatch:
    """Nearest *good* frame of ``frames`` for each time of ``t``: bad frames are never partners."""
    good = frames.good_index()
    if len(good) == 0:
        return CameraMatch(frames.name, np.full(len(t), -1, np.int64), np.full(len(t), np.nan), np.zeros(len(t), bool))
    idx = good[nearest_index(frames.t_ns[good], t)]
    err_ns = np.abs(frames.t_ns[idx] - t)
    return CameraMatch(frames.name, idx.astype(np.int64), err_ns / 1e6, err_ns <= tol_ns)


def sync_cameras(raw: RawEpisode, config: PipelineConfig) -> CameraTimeline:
    """Match every camera onto the base camera's capture times.

    The base camera's bad frames (core/jpeg.py) stay on the timeline, so nothing after them shifts;
    like every camera's bad frames they are never chosen, which makes those instants invalid (gap policy).
    """
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
        matches.append(_match(frames, t, tol_ns))
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
    dropped_gaps: int  # invalid frames dropped inside the episode (policy 'split', or a fill too long)
    dropped_short: int  # frames of pieces shorter than filtering.min_duration_sec
    notes: tuple[str, ...]
    long_gaps: int = 0  # gaps longer than sync.max_fill_ms (invalid runs and base-camera holes) cut or refused


MAX_GAP_NOTES = 10


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal ``[start, stop)`` runs of True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _pieces(keep: np.ndarray, cut_after: np.ndarray) -> list[tuple[int, int]]:
    """Runs of ``keep``, also cut between frames ``i`` and ``i + 1`` where ``cut_after[i]``."""
    cuts = np.flatnonzero(cut_after) + 1
    out: list[tuple[int, int]] = []
    for s, e in _runs(keep):
        inner = cuts[(cuts > s) & (cuts < e)].tolist()
        bounds = [s, *inner, e]
        out.extend(zip(bounds[:-1], bounds[1:]))
    return out


@dataclass(frozen=True)
class _Gap:
    """A hole inside the episode: invalid frames ``[start, stop)``, or (``stop == start``) missing base frames."""

    start: int
    stop: int
    ms: float
    culprits: tuple[str, ...]

    def describe(self, t_ns: np.ndarray) -> str:
        t_rel = (t_ns[self.start] - t_ns[0]) / 1e9
        if self.stop == self.start:
            return f"base camera has no frame for {self.ms:.0f} ms before frame {self.start} (t={t_rel:.3f} s)"
        return (f"gap at frame {self.start} (t={t_rel:.3f} s): {self.stop - self.start} frame(s), {self.ms:.0f} ms, "
                f"no valid partner in {', '.join(self.culprits)}")


def _inner_gaps(valid: np.ndarray, t_ns: np.ndarray, first: int, last: int, fps: int,
                reasons: Mapping[str, np.ndarray]) -> list[_Gap]:
    """Invalid runs inside ``[first, last]`` and the base camera's own holes (missing frames), in time order.

    A hole of the base timeline is measured in whole missing frames, like a run of invalid frames.
    """
    period_ms = 1000.0 / fps
    gaps = []
    for s, e in _runs(~valid[first : last + 1]):
        s, e = s + first, e + first
        gaps.append(_Gap(s, e, (e - s) * period_ms, tuple(k for k, m in reasons.items() if not m[s:e].all())))
    missing = np.rint(np.diff(t_ns[first : last + 1]) * fps / 1e9).astype(np.int64) - 1
    holes = np.flatnonzero(missing > 0) + first
    gaps += [_Gap(int(i) + 1, int(i) + 1, float(missing[i - first]) * period_ms, ()) for i in holes]
    gaps.sort(key=lambda g: (g.start, g.stop))
    return gaps


def plan_gaps(
    valid: np.ndarray, t_ns: np.ndarray, config: PipelineConfig, episode: str, reasons: dict[str, np.ndarray]
) -> GapPlan:
    """Turn per-frame validity into episode parts under the configured gap policy.

    Invalid frames at the ends are trimmed. Inside, ``fill`` keeps runs of invalid frames up to
    ``sync.max_fill_ms`` long (flagged); a longer run goes to ``sync.long_gap_policy`` (``split``:
    dropped and the episode cut there; ``reject``). ``split`` cuts the episode at each gap, ``reject``
    refuses the episode naming the first gap. A hole in the base camera itself (missing base frames)
    is never filled: up to ``max_fill_ms`` it is kept as it is (as every policy always did), longer it
    is a long gap (cut under ``split``/``long_gap_policy=split``, refused under ``reject``), so that
    ``timestamp = frame_index / fps`` never hides seconds of missing recording.
    Pieces shorter than ``filtering.min_duration_sec`` are dropped; pieces longer than
    ``sync.max_episode_sec`` are cut into equal parts below it (LeRobot's float32 timestamps fail past
    1024 s). ``reasons`` maps a camera/arm name to its own validity mask, to name culprits in messages.
    """
    n = len(valid)
    fps = config.fps
    sync = config.sync
    notes: list[str] = []
    ok = np.flatnonzero(valid)
    if len(ok) == 0:
        worst = min(reasons, key=lambda k: reasons[k].sum()) if reasons else "?"
        raise EpisodeRejected(episode, f"no frame has every camera and arm within tolerance (worst: {worst})")
    first, last = int(ok[0]), int(ok[-1])
    filled = np.zeros(n, dtype=bool)
    cut_after = np.zeros(n, dtype=bool)
    policy = sync.gap_policy
    gaps = _inner_gaps(valid, t_ns, first, last, fps, reasons)
    long = [g for g in gaps if g.ms > sync.max_fill_ms]
    if policy == "reject":
        refused = next((g for g in gaps if g.stop > g.start or g.ms > sync.max_fill_ms), None)
        if refused is not None:
            raise EpisodeRejected(episode, f"{refused.describe(t_ns)} (sync.gap_policy=reject)")
    if policy == "fill" and long and sync.long_gap_policy == "reject":
        raise EpisodeRejected(
            episode, f"{long[0].describe(t_ns)}: longer than sync.max_fill_ms={sync.max_fill_ms:g} "
            "(sync.long_gap_policy=reject)",
        )
    keep = np.zeros(n, dtype=bool)
    keep[first : last + 1] = True
    for g in gaps:
        if g.stop == g.start:
            cut_after[g.start - 1] = g.ms > sync.max_fill_ms
        elif policy == "fill" and g.ms <= sync.max_fill_ms:
            filled[g.start : g.stop] = True
        else:
            keep[g.start : g.stop] = False
    dropped_gaps = int(keep[first : last + 1].size - keep[first : last + 1].sum())
    if filled.any():
        notes.append(f"filled {int(filled.sum())} frame(s) inside the episode from the nearest data "
                     f"(runs up to sync.max_fill_ms={sync.max_fill_ms:g})")
    for g in long[:MAX_GAP_NOTES]:
        how = "split there" if policy == "split" else "not filled: split there (sync.long_gap_policy=split)"
        notes.append(f"{g.describe(t_ns)}: longer than sync.max_fill_ms={sync.max_fill_ms:g}, {how}")
    if len(long) > MAX_GAP_NOTES:
        notes.append(f"... and {len(long) - MAX_GAP_NOTES} more gap(s) longer than sync.max_fill_ms")
    pieces = _pieces(keep, cut_after)
    if len(pieces) > 1 or dropped_gaps:
        notes.append(f"split at {len(pieces) - 1} gap(s), dropping {dropped_gaps} frame(s)")
    min_frames = int(np.ceil(config.filtering.min_duration_sec * fps))
    kept = [(s, e) for s, e in pieces if e - s >= max(min_frames, 1)]
    dropped_short = sum(e - s for s, e in pieces) - sum(e - s for s, e in kept)
    if dropped_short:
        notes.append(f"dropped {dropped_short} frame(s) in piece(s) shorter than {config.filtering.min_duration_sec} s")
    if not kept:
        dur = (last + 1 - first) / fps
        raise EpisodeRejected(
            episode, f"too short: {dur:.2f} s of usable frames < "
                     f"filtering.min_duration_sec={config.filtering.min_duration_sec}"
        )
    max_frames = max(1, int(config.sync.max_episode_sec * fps))  # at least one frame per part
    parts: list[Segment] = []
    for s, e in kept:
        k = -(-(e - s) // max_frames)
        if k > 1:
            notes.append(f"{(e - s) / fps:.1f} s piece split into {k} parts below sync.max_episode_sec")
        bounds = np.linspace(s, e, k + 1).round().astype(int)
        parts.extend(Segment(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    return GapPlan(tuple(parts), first, n - 1 - last, filled, dropped_gaps, dropped_short, tuple(notes), len(long))
