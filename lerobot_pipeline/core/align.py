"""Joint alignment strategies (domain.md §4): put each arm's samples onto the camera timeline.

All three are vectorised with ``searchsorted``; the only Python loops run over arms, chunk steps
or blocks of frames, never over frames one by one.

- ``nearest``: the nearest sample; a frame is invalid for an arm farther than ``tolerance_ms``.
- ``window``: ``mean``/``median`` of the samples with ``|t_joint - t| <= window_ms``; invalid if none.
- ``chunking``: state = nearest sample, valid within ``tolerance_ms`` exactly like ``nearest`` (a
  frame whose state would come from a stale sample is invalid: trimmed at the ends, gap policy
  inside); action = ``chunk_size`` master samples from the nearest one forward, one joint sample per
  step or every ``chunk_step_ms``; only the chunk's future steps past the end of the data are padded
  (``padding_mode`` repeats the last value or writes zeros) and counted per frame (``chunk_padded``).

Invalid frames still get a value (the nearest sample), used if the gap policy is ``fill``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from lerobot_pipeline.config import AlignmentConfig
from lerobot_pipeline.core.nearest import covered_mask, ms_to_ns, nearest_index, window_bounds
from lerobot_pipeline.core.raw import ArmSamples

WINDOW_BLOCK_ELEMENTS = 4_000_000  # bound on frames × samples-per-window gathered at once (median)


@dataclass(frozen=True)
class ArmAlignment:
    name: str
    role: str
    state: np.ndarray  # (n, J) float64 value per output frame
    valid: np.ndarray  # (n,) bool
    err_ms: np.ndarray  # (n,) float64 distance to the nearest sample
    chunk: np.ndarray | None  # (n, C, J) float32 (the column's dtype) action chunk (masters, chunking only)
    chunk_padded: np.ndarray | None  # (n, C) bool
    intervals: tuple[tuple[np.ndarray, np.ndarray], ...]  # sample ranges [lo, hi) each frame used
    n_samples: int

    def used_samples(self, frames: np.ndarray) -> int:
        """How many of this arm's samples contribute to at least one of ``frames``."""
        starts = np.concatenate([lo[frames] for lo, _ in self.intervals])
        stops = np.concatenate([hi[frames] for _, hi in self.intervals])
        return int(covered_mask(self.n_samples, starts, stops).sum())


def _window_aggregate(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, aggregation: str) -> np.ndarray:
    n, j = len(lo), values.shape[1]
    count = hi - lo
    out = np.full((n, j), np.nan)
    has = count > 0
    if aggregation == "mean":
        csum = np.vstack([np.zeros((1, j)), np.cumsum(values, axis=0)])
        out[has] = (csum[hi[has]] - csum[lo[has]]) / count[has, None]
        return out
    # median: gather a padded (frames × max_count × J) block at a time, NaN outside each window
    max_count = int(count.max()) if n else 0
    if max_count == 0:
        return out
    block = max(1, WINDOW_BLOCK_ELEMENTS // (max_count * j))
    offsets = np.arange(max_count)
    for b in range(0, n, block):
        sl = slice(b, b + block)
        idx = lo[sl, None] + offsets
        inside = offsets < count[sl, None]
        gathered = values[np.minimum(idx, len(values) - 1)]
        gathered[~inside] = np.nan
        rows = has[sl]
        out[sl][rows] = np.nanmedian(gathered[rows], axis=1)
    return out


def align_arm(arm: ArmSamples, t: np.ndarray, cfg: AlignmentConfig) -> ArmAlignment:
    """Align one arm's samples to output times ``t`` (int64 ns) with the configured strategy."""
    ts, vals = arm.t_ns, arm.values
    n_s = len(ts)
    near = nearest_index(ts, t)
    err_ns = np.abs(ts[near] - t)
    err_ms = err_ns / 1e6
    state = vals[near]
    chunk = padded = None
    intervals = [(near, near + 1)]
    valid = err_ns <= ms_to_ns(cfg.tolerance_ms)  # nearest and chunking: the state must not be stale
    if cfg.strategy == "window":
        lo, hi = window_bounds(ts, t, ms_to_ns(cfg.window_ms))
        valid = hi > lo
        agg = _window_aggregate(vals, lo, hi, cfg.aggregation)
        state = np.where(valid[:, None], agg, state)
        intervals = [(np.where(valid, lo, near), np.where(valid, hi, near + 1))]
    elif cfg.strategy == "chunking" and arm.role == "master":
        steps = np.arange(cfg.chunk_size)
        if cfg.chunk_step_ms is None:
            idx = near[:, None] + steps  # one joint sample per step
            padded = idx >= n_s
        else:
            target = ts[near][:, None] + steps * ms_to_ns(cfg.chunk_step_ms)
            idx = nearest_index(ts, target)
            padded = target > ts[-1]
        idx = np.minimum(idx, n_s - 1)
        # repeat: the last sample stands in for everything past the end; gathered step by step straight
        # into the output dtype (no float64 (frames x steps x joints) copy of a 20-minute episode)
        chunk = np.empty((len(t), cfg.chunk_size, vals.shape[1]), dtype=np.float32)
        for k in range(cfg.chunk_size):
            chunk[:, k] = vals[idx[:, k]]
        if cfg.padding_mode == "zeros":
            chunk[padded] = 0.0
        used = np.where(padded, 0, idx)
        intervals = [(used[:, k], np.where(padded[:, k], 0, used[:, k] + 1)) for k in range(cfg.chunk_size)]
    return ArmAlignment(arm.name, arm.role, state, valid, err_ms, chunk, padded, tuple(intervals), n_s)


def align_arms(arms: tuple[ArmSamples, ...], t: np.ndarray, cfg: AlignmentConfig) -> tuple[ArmAlignment, ...]:
    return tuple(align_arm(a, t, cfg) for a in arms)


@dataclass(frozen=True)
class FrameArrays:
    """The LeRobot columns of one part, as float32."""

    state_slave: np.ndarray  # (L, S*J)
    state_master: np.ndarray  # (L, M*J)
    action: np.ndarray  # (L, M*J) or (L, C, M*J)


def _stacked_f32(blocks: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(blocks, axis=-1).astype(np.float32)`` without the float64 intermediate."""
    out = np.empty((*blocks[0].shape[:-1], sum(b.shape[-1] for b in blocks)), dtype=np.float32)
    col = 0
    for b in blocks:
        out[..., col:col + b.shape[-1]] = b  # the same float64 -> float32 rounding as astype
        col += b.shape[-1]
    return out


def frame_arrays(aligned: tuple[ArmAlignment, ...], frames: np.ndarray | slice, strategy: str) -> FrameArrays:
    """The part's columns; ``frames`` (indices, or a slice: views, no float64 copies) selects its rows."""
    slaves = [a for a in aligned if a.role == "slave"]
    masters = [a for a in aligned if a.role == "master"]
    state_slave = _stacked_f32([a.state[frames] for a in slaves])
    state_master = _stacked_f32([a.state[frames] for a in masters])
    if strategy == "chunking":
        action = _stacked_f32([cast(np.ndarray, a.chunk)[frames] for a in masters])
    else:
        action = state_master.copy()
    return FrameArrays(state_slave, state_master, action)


def padded_steps(aligned: tuple[ArmAlignment, ...], frames: np.ndarray) -> dict[str, list[int]]:
    """Per master arm (chunking only): ``hist[k]`` = frames among ``frames`` whose chunk has ``k`` padded steps."""
    out = {}
    for a in aligned:
        if a.chunk_padded is not None:
            counts = a.chunk_padded[frames].sum(axis=1)
            out[a.name] = np.bincount(counts, minlength=a.chunk_padded.shape[1] + 1).tolist()
    return out
