"""Benchmarks of the conversion core. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_convert.py                 # all sections on synthetic data
    .venv/bin/python bench/bench_convert.py --raw ../shared/fixtures/airbot_real   # + real recordings

Sections (each measured side by side in one run, so the ratios are meaningful on a noisy machine):
  convert   episodes, frames, seconds, frames/s, peak RSS per strategy on the given raw root
  memory    peak RSS of converting a short vs a long episode, each in a fresh process
  align     vectorised searchsorted alignment vs the old per-frame argmin loop
  codecs    encode time and size per codec for one episode
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lerobot_pipeline.config import load_config  # noqa: E402
from lerobot_pipeline.core.align import align_arm  # noqa: E402
from lerobot_pipeline.core.raw import ArmSamples  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def convert_once(raw: str, strategy: str, codec: str = "h264") -> dict:
    """Convert every episode under ``raw`` into a temporary dataset in this process."""
    from lerobot_pipeline.cli.convert import convert_dataset

    cfg = load_config(None, {"alignment.strategy": strategy, "video.codec": codec})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = convert_dataset(Path(raw), Path(tmp) / "ds", cfg, progress_stream=open("/dev/null", "w"))
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (Path(tmp) / "ds").rglob("*.mp4"))
    s = out.summary
    return {"strategy": strategy, "codec": codec, "recordings": len(out.converted), "episodes": s.episodes,
            "frames": s.frames, "seconds": round(dt, 2), "frames_per_s": round(s.frames / dt, 1),
            "video_mb": round(size / 1e6, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def in_fresh_process(raw: str, strategy: str, codec: str = "h264") -> dict:
    code = (f"import json,sys; sys.path.insert(0,{str(Path(__file__).parent)!r}); import bench_convert as b; "
            f"print(json.dumps(b.convert_once({raw!r}, {strategy!r}, {codec!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_convert(raw: str) -> None:
    print(f"\n== convert: {raw}")
    for strategy in ("nearest", "chunking", "window"):
        print("  ", in_fresh_process(raw, strategy))


def section_memory(tmp: Path) -> None:
    from lerobot_pipeline.core.sample_data import generate_dataset

    print("\n== memory: peak RSS, short vs long episodes (fresh process each, 224x224, chunking)")
    rows = []
    for seconds in (10, 120, 360):
        root = tmp / f"mem_{seconds}"
        generate_dataset(root, episodes=1, seconds=seconds, seed=1)
        r = in_fresh_process(str(root), "chunking")
        rows.append(r)
        print(f"   {seconds:>4} s episode: {r['frames']} frames, {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB")
    for a, b in ((0, 1), (1, 2)):
        print(f"   {rows[b]['frames']} vs {rows[a]['frames']} frames: frames ×{rows[b]['frames'] / rows[a]['frames']:.1f}, "
              f"peak RSS ×{rows[b]['peak_rss_mb'] / rows[a]['peak_rss_mb']:.2f}")


def section_align() -> None:
    print("\n== align: 20 min of one arm at 250 Hz onto 25 fps (nearest)")
    rng = np.random.default_rng(0)
    n = 20 * 60 * 250
    t = np.cumsum(rng.normal(4_000_000, 200_000, n)).astype(np.int64)
    arm = ArmSamples("a", "slave", t, rng.normal(size=(n, 7)), 0, 0, False)
    frames = np.arange(t[0], t[-1], 40_000_000, dtype=np.int64)
    cfg = load_config(None, {"alignment.strategy": "nearest"}).alignment
    t0 = time.perf_counter()
    align_arm(arm, frames, cfg)
    vec = time.perf_counter() - t0
    sub = frames[:300]  # the old per-frame loop is too slow for all frames; time 300 and scale
    t0 = time.perf_counter()
    for q in sub:
        int(np.argmin(np.abs(t - q)))
    loop = (time.perf_counter() - t0) / len(sub) * len(frames)
    print(f"   {len(frames)} frames × {n} samples: vectorised {vec * 1e3:.1f} ms, per-frame argmin ≈ {loop:.1f} s "
          f"(extrapolated from 300 frames) → ×{loop / vec:.0f}")


def section_codecs(tmp: Path) -> None:
    from lerobot_pipeline.core.sample_data import generate_dataset

    root = tmp / "codecs"
    generate_dataset(root, episodes=1, seconds=10, size=(640, 480), seed=3)
    print("\n== codecs: one 10 s episode, 3 cameras 640x480, chunking (fresh process each)")
    for codec in ("h264", "libsvtav1", "hevc", "mpeg4"):
        r = in_fresh_process(str(root), "chunking", codec)
        print(f"   {codec:<10} {r['seconds']:>6} s  {r['frames_per_s']:>6} frames/s  {r['video_mb']:>6} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", help="a raw root to convert (e.g. ../shared/fixtures/airbot_real)")
    p.add_argument("--sections", default="convert,memory,align,codecs")
    args = p.parse_args()
    sections = args.sections.split(",")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if "convert" in sections:
            if args.raw:
                section_convert(args.raw)
            else:
                from lerobot_pipeline.core.sample_data import generate_dataset

                generate_dataset(tmp / "sample", episodes=5, seconds=10, seed=0)
                section_convert(str(tmp / "sample"))
        if "memory" in sections:
            section_memory(tmp)
        if "align" in sections:
            section_align()
        if "codecs" in sections:
            section_codecs(tmp)


if __name__ == "__main__":
    main()
