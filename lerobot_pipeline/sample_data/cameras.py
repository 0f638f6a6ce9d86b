"""The camera half of a synthetic episode: capture times with jitter and dropped bursts, and the JPEGs.

Each frame's content is a function of the camera and of its capture time (:func:`render_frame`), so
that video tests can predict what a decoded frame shows.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

from lerobot_pipeline.config import PipelineConfig
from lerobot_pipeline.core.fsutil import atomic_path

#: Capture rate of a camera by its role when ``camera_fps`` does not name it.
DEFAULT_FPS_BY_ROLE = {"base": 25.0, "sync": 25.0, "downsample": 30.0}

CAMERA_START_OFFSET_MS = (-12.0, 150.0)  # first frame relative to the trigger start
CAMERA_STOP_AFTER_JOINTS_MS = (40.0, 80.0)  # cameras keep running after the joints stop
DROP_BURST_LENGTHS = (1, 2, 3)  # consecutive frames lost per drop event
DROP_BURST_WEIGHTS = (0.5, 0.3, 0.2)
MAX_DROP_GAP_MS = 140.0  # the longest real stall seen (cam_head) is ~131 ms

JPEG_QUALITY = 90
#: BGR tint per camera position in ``config.cameras`` (cycled when there are more cameras).
CAMERA_TINTS = ((40, 40, 200), (40, 180, 40), (200, 60, 40), (0, 200, 220), (200, 0, 200), (200, 200, 0))


def camera_rates(cfg: PipelineConfig, overrides: dict[str, float]) -> dict[str, float]:
    """Capture rate per configured camera: ``overrides`` first, else by role."""
    names = [c.name for c in cfg.cameras]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"camera_fps names unknown cameras {unknown}; configured: {names}")
    rates = {c.name: float(overrides.get(c.name, DEFAULT_FPS_BY_ROLE[c.role])) for c in cfg.cameras}
    bad = {n: r for n, r in rates.items() if not r > 0}
    if bad:
        raise ValueError(f"camera rates must be > 0, got {bad}")
    return rates


def render_frame(camera_index: int, frame_index: int, t_sec: float, size: tuple[int, int]) -> np.ndarray:
    """The BGR image camera number ``camera_index`` captures ``t_sec`` seconds after the trigger.

    A gradient background tinted per camera, a filled circle whose position is a function of
    ``t_sec`` (and of the camera), and ``frame_index`` (the frame's position in the camera's
    file list) drawn as large text. Tests may call it to predict what a decoded frame should show.
    """
    width, height = size
    img = _background(camera_index, width, height).copy()
    cx, cy = circle_center(camera_index, t_sec, size)
    radius = max(3, min(width, height) // 8)
    cv2.circle(img, (cx, cy), radius, (255, 255, 255), thickness=-1, lineType=cv2.LINE_AA)
    cv2.circle(img, (cx, cy), max(1, radius // 2), (0, 0, 0), thickness=-1, lineType=cv2.LINE_AA)
    scale = min(width, height) / 100.0
    thickness = max(1, int(round(scale * 2)))
    cv2.putText(img, str(frame_index), (max(2, width // 20), height - max(4, height // 12)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return img


def circle_center(camera_index: int, t_sec: float, size: tuple[int, int]) -> tuple[int, int]:
    """Pixel centre (x, y) of the moving circle of :func:`render_frame` at ``t_sec``."""
    width, height = size
    phase = 2.1 * camera_index
    x = width * (0.5 + 0.3 * math.cos(2 * math.pi * 0.4 * t_sec + phase))
    y = height * (0.45 + 0.25 * math.sin(2 * math.pi * 0.65 * t_sec + phase))
    return int(round(x)), int(round(y))


def camera_timestamps(
    rng: np.random.Generator, trigger_start: int, joints_end: int, fps: float, jitter_ms: float, drop_rate: float,
) -> np.ndarray:
    """Capture times (int64 ns, strictly ascending) of one camera, with jitter and dropped bursts."""
    period = 1e9 / fps
    first = trigger_start + int(rng.uniform(*CAMERA_START_OFFSET_MS) * 1e6)
    last = joints_end + int(rng.uniform(*CAMERA_STOP_AFTER_JOINTS_MS) * 1e6)
    n = max(1, int((last - first) // period) + 1)
    jitter = min(jitter_ms * 1e6, period * 0.45)  # never reorders frames
    offsets = np.arange(n) * period + rng.uniform(-jitter, jitter, size=n)
    keep = np.ones(n, dtype=bool)
    lengths, weights = _drop_bursts(period)
    if lengths:
        mean_burst = float(np.dot(lengths, weights))
        next_allowed = 0  # a kept frame separates two bursts, so gaps never merge
        for start in np.flatnonzero(rng.random(n) < drop_rate / mean_burst):
            length = int(rng.choice(lengths, p=weights))
            if start >= next_allowed:
                keep[start: start + length] = False
                next_allowed = start + length + 1
    keep[0] = keep[-1] = True  # the camera's extent stays what it recorded
    return first + np.round(offsets[keep]).astype(np.int64)


def _drop_bursts(period_ns: float) -> tuple[list[int], list[float]]:
    """Burst lengths (and their weights) whose gap stays within :data:`MAX_DROP_GAP_MS`.

    At 30 Hz bursts of 1, 2 and 3 frames give gaps of ~67, 100 and 133 ms; at 25 Hz only 1 and 2.
    """
    allowed = [(n, w) for n, w in zip(DROP_BURST_LENGTHS, DROP_BURST_WEIGHTS)
               if (n + 1) * period_ns <= MAX_DROP_GAP_MS * 1e6]
    total = sum(w for _, w in allowed)
    return [n for n, _ in allowed], [w / total for _, w in allowed]


def write_frames(
    cam_dir: Path, stamps: np.ndarray, camera_index: int, trigger_start: int, size: tuple[int, int],
) -> None:
    """Render, encode and atomically write one JPEG per timestamp, one at a time."""
    cam_dir.mkdir(parents=True, exist_ok=True)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY]
    for i, ts in enumerate(stamps):
        img = render_frame(camera_index, i, (int(ts) - trigger_start) / 1e9, size)
        ok, buf = cv2.imencode(".jpg", img, params)
        if not ok:  # pragma: no cover - cv2 only fails on invalid images
            raise RuntimeError(f"cv2 could not encode frame {i} of {cam_dir}")
        with atomic_path(cam_dir / f"{int(ts)}.jpg") as tmp:
            tmp.write_bytes(buf.tobytes())


@functools.lru_cache(maxsize=32)
def _background(camera_index: int, width: int, height: int) -> np.ndarray:
    """Per-camera tinted gradient (read-only; callers copy it)."""
    tint = np.array(CAMERA_TINTS[camera_index % len(CAMERA_TINTS)], dtype=np.float32)
    gx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    gy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    ramp = np.concatenate([np.broadcast_to(gx, (height, width, 1)),
                           np.broadcast_to(gy, (height, width, 1)),
                           np.broadcast_to((gx + gy) / 2, (height, width, 1))], axis=2)
    img = 0.6 * tint + 0.4 * 255.0 * np.roll(ramp, camera_index, axis=2)
    out = np.clip(img, 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out
