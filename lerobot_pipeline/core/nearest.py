"""Vectorised time look-ups on sorted int64 nanosecond arrays (no per-frame Python loops)."""

from __future__ import annotations

import numpy as np


def nearest_index(t_sorted: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the element of ``t_sorted`` nearest to each query time; ties go to the earlier one."""
    n = len(t_sorted)
    right = np.searchsorted(t_sorted, query, side="left")
    right = np.clip(right, 0, n - 1)
    left = np.clip(right - 1, 0, n - 1)
    pick_left = np.abs(query - t_sorted[left]) <= np.abs(t_sorted[right] - query)
    return np.where(pick_left, left, right)


def window_bounds(t_sorted: np.ndarray, query: np.ndarray, half_width_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """``[lo, hi)`` index ranges of samples with ``|t - q| <= half_width`` for each query ``q``."""
    lo = np.searchsorted(t_sorted, query - half_width_ns, side="left")
    hi = np.searchsorted(t_sorted, query + half_width_ns, side="right")
    return lo, hi


def covered_mask(n: int, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Boolean mask of length ``n``: True where some interval ``[start, stop)`` covers the index."""
    diff = np.zeros(n + 1, dtype=np.int64)
    keep = stops > starts
    np.add.at(diff, starts[keep], 1)
    np.add.at(diff, stops[keep], -1)
    return np.cumsum(diff[:-1]) > 0


def ms_to_ns(ms: float) -> int:
    return int(round(ms * 1_000_000))
