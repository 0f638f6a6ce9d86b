"""Cost of the structural image check (core/jpeg.py) per frame, on a directory tree of JPEGs.

    .venv/bin/python bench/bench_jpeg_check.py /work/shared/fixtures/airbot_real

Prints µs per frame for the check alone (warm page cache: a second pass) and for a full decode,
for comparison.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lerobot_pipeline.core.jpeg import jpeg_problem


def main(root: str) -> None:
    files = sorted(Path(root).rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no .jpg under {root}")
    for _ in range(2):  # the first pass warms the page cache; report the second
        t0 = time.perf_counter()
        problems = [jpeg_problem(f) for f in files]
        check = time.perf_counter() - t0
    sample = files[:: max(1, len(files) // 500)]
    t0 = time.perf_counter()
    for f in sample:
        cv2.imdecode(np.fromfile(f, dtype=np.uint8), cv2.IMREAD_COLOR)
    decode = (time.perf_counter() - t0) / len(sample)
    bad = sum(p is not None for p in problems)
    print(f"{len(files)} files, {bad} with a problem")
    print(f"structural check: {check / len(files) * 1e6:.1f} µs/frame")
    print(f"full decode (cv2, {len(sample)} files): {decode * 1e6:.0f} µs/frame")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/fixtures/airbot_real")
