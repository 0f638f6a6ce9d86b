"""Benchmark: add one episode to a large LeRobot v3.0 dataset. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_v30_append.py              # 1,000 episodes of 2 s at 224x224 (~2 min)
    .venv/bin/python bench/bench_v30_append.py --smoke      # 20 tiny episodes, seconds (CI)
    .venv/bin/python bench/bench_v30_append.py --episodes 500 --seconds 4 --video-mb 50

One recording is really converted (sample-data generator -> convert_episode); the store entries of
the other episodes are synthesised from it (its files hard-linked under new episode keys), so the
dataset's videos and parquet files have real content and real sizes. Then: the initial v3.0 build,
and adding one more episode with and without the pre-swap validation; per step the seconds, the
bytes written and how many data/video files were rewritten vs hard-linked unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lerobot_pipeline.config import load_config  # noqa: E402
from lerobot_pipeline.core.convert import convert_episode  # noqa: E402
from lerobot_pipeline.core.episode_writer import StagedPart  # noqa: E402
from lerobot_pipeline.core.raw import find_episode  # noqa: E402
from lerobot_pipeline.core.v30.writer import assemble_dataset_v30  # noqa: E402
from lerobot_pipeline.sample_data import generate_episode  # noqa: E402


def clone(part: StagedPart, store: Path, i: int) -> StagedPart:
    """A store entry for synthetic episode ``i``: the real part's files hard-linked under a new key."""
    d = store / f"bench.{i:05d}" / "part-000"
    (d / "videos").mkdir(parents=True)
    for rel in ("data.parquet", "stats.json", *(f"videos/{v.name}" for v in (part.dir / "videos").iterdir())):
        os.link(part.dir / rel, d / rel)
    report = dataclasses.replace(part.report, episode_key=f"bench.{i:05d}", episode_id=f"episode_{i:05d}")
    return StagedPart(d, report.uid, part.version, part.length, part.task, report)


def step(label: str, fn) -> dict:
    t0 = time.perf_counter()
    s = fn()
    return {"step": label, "seconds": time.perf_counter() - t0, "episodes": s.episodes,
            "bytes_written": s.bytes_written, "files_written": s.files_written, "files_linked": s.files_linked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each episode")
    ap.add_argument("--size", default="224x224", help="image size WIDTHxHEIGHT")
    ap.add_argument("--video-mb", type=int, default=None, help="output.video_files_size_in_mb (default: config's 200)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: 20 episodes of 1 s at 64x48")
    a = ap.parse_args()
    if a.smoke:
        a.episodes, a.seconds, a.size = 20, 1.0, "64x48"
    w, h = (int(x) for x in a.size.split("x"))
    overrides = {"alignment.strategy": "nearest", "output.format": "v3.0"}
    if a.video_mb:
        overrides["output.video_files_size_in_mb"] = a.video_mb
    cfg = load_config(overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="bench_v30_") as tmp:
        tmp = Path(tmp)
        generate_episode(tmp / "raw", "episode_0000", seconds=a.seconds, size=(w, h), seed=1)
        (real,) = convert_episode(find_episode(tmp / "raw", "episode_0000", cfg), cfg, tmp / "store")
        parts = [clone(real, tmp / "synth", i) for i in range(a.episodes + 1)]
        out = tmp / "ds"
        rows = [step(f"build {a.episodes} episodes", lambda: assemble_dataset_v30(parts[:-1], out, cfg))]
        rows.append(step("add 1 episode (validated)", lambda: assemble_dataset_v30(parts, out, cfg)))
        rows.append(step("re-add it, no change (validated)", lambda: assemble_dataset_v30(parts, out, cfg)))
        more = parts + [clone(real, tmp / "synth", a.episodes + 1)]
        rows.append(step("add 1 more (no validation)", lambda: assemble_dataset_v30(more, out, cfg, verify=False)))
        total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"\nv3.0 append benchmark: {a.episodes} episodes x {real.length} frames ({a.seconds} s, {w}x{h}, "
          f"3 cameras), dataset {total / 1e6:.1f} MB, video file bound {cfg.output.video_files_size_in_mb} MB\n")
    print(f"{'step':36s} {'seconds':>8s} {'MB written':>11s} {'files written':>14s} {'files linked':>13s}")
    for r in rows:
        print(f"{r['step']:36s} {r['seconds']:8.2f} {r['bytes_written'] / 1e6:11.2f} {r['files_written']:14d} "
              f"{r['files_linked']:13d}")


if __name__ == "__main__":
    main()
