"""Per-episode feature statistics exactly as LeRobot 0.3.3 computes them (``compute_stats.py``).

Numeric features: min/max/mean/std (population) over frames, ``count = [frames]``. Camera
features: a subset of frames sampled evenly, large frames strided down, per-channel stats over
all sampled pixels divided by 255, shaped ``[3, 1, 1]``, ``count = [sampled frames]``. Image stats
are accumulated frame by frame (:class:`ImageStatsAccumulator`), so no episode is held in memory.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt


def estimate_num_samples(n: int, min_samples: int = 100, max_samples: int = 10_000, power: float = 0.75) -> int:
    if n < min_samples:
        min_samples = n
    return max(min_samples, min(int(n**power), max_samples))


def downsample_stride(height: int, width: int, target: int = 150, threshold: int = 300) -> int:
    if max(height, width) < threshold:
        return 1
    return int(width / target) if width > height else int(height / target)


def numeric_stats(array: np.ndarray) -> dict[str, list[Any]]:
    """Stats of one numeric feature over its first axis; scalars get shape ``[1]``."""
    a = np.asarray(array)
    if a.ndim == 1:
        a = a[:, None]
    a64 = a.astype(np.float64)
    return {
        "min": a.min(axis=0).tolist(),
        "max": a.max(axis=0).tolist(),
        "mean": a64.mean(axis=0).tolist(),
        "std": a64.std(axis=0).tolist(),
        "count": [int(len(a))],
    }


class ImageStatsAccumulator:
    """Streams RGB uint8 frames (H, W, 3) in; produces LeRobot image stats for the sampled ones."""

    def __init__(self, n_frames: int):
        self.count = estimate_num_samples(n_frames)  # LeRobot counts samples before de-duplication
        # the frames LeRobot samples; a frame sampled twice (short episodes) weighs twice
        picked, times = np.unique(np.round(np.linspace(0, n_frames - 1, self.count)).astype(int), return_counts=True)
        self.weights: dict[int, int] = dict(zip(picked.tolist(), times.tolist()))
        self._sum = np.zeros(3)
        self._sumsq = np.zeros(3)
        self._n = 0
        self._min = np.full(3, 255.0)
        self._max = np.zeros(3)

    def wants(self, frame_index: int) -> bool:
        return frame_index in self.weights

    def add(self, frame_index: int, rgb: np.ndarray) -> None:
        self._add(frame_index, rgb, (0, 1, 2))

    def add_bgr(self, frame_index: int, bgr: np.ndarray) -> None:
        self._add(frame_index, bgr, (2, 1, 0))

    def _add(self, frame_index: int, img: np.ndarray, channels: tuple[int, int, int]) -> None:
        """Per-channel 256-bin histograms of the (strided) frame: sums, squares, min and max are exact
        integers, the same numbers LeRobot's float64 pass gives, at a fraction of its cost."""
        w = self.weights.get(frame_index)
        if not w:
            return
        s = downsample_stride(img.shape[0], img.shape[1])
        px = np.ascontiguousarray(img[::s, ::s])
        levels = np.arange(256, dtype=np.float64)
        for out, c in enumerate(channels):
            hist = cv2.calcHist([px], [c], None, [256], [0, 256]).ravel().astype(np.float64)
            present = np.flatnonzero(hist)
            self._sum[out] += w * float(hist @ levels)
            self._sumsq[out] += w * float(hist @ (levels * levels))
            self._min[out] = min(self._min[out], float(present[0]))
            self._max[out] = max(self._max[out], float(present[-1]))
        self._n += w * px.shape[0] * px.shape[1]

    def result(self) -> dict[str, list[Any]]:
        if self._n == 0:
            raise ValueError("no sampled frame was added")
        mean = self._sum / self._n
        var = np.maximum(self._sumsq / self._n - mean**2, 0.0)

        def shaped(v: npt.ArrayLike) -> list[Any]:
            return (np.asarray(v) / 255.0).reshape(3, 1, 1).tolist()

        return {"min": shaped(self._min), "max": shaped(self._max), "mean": shaped(mean),
                "std": shaped(np.sqrt(var)), "count": [self.count]}
