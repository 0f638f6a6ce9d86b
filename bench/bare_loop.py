"""The reference the converter is measured against: decode the same JPEGs and encode the same videos with the
same codec settings and the same number of worker processes — nothing else (no parquet, stats, metadata,
validation). Run as a fresh process, like the CLI.

    .venv/bin/python bench/bare_loop.py RAW_ROOT OUT_DIR --codec h264 --jobs 2 [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lerobot_pipeline.core.forkserver import start_forkserver  # noqa: E402

if __name__ == "__main__":  # as convert does: the workers' server imports while this process does
    start_forkserver()

from lerobot_pipeline.config import load_config  # noqa: E402
from lerobot_pipeline.core.camera_videos import CameraJob, camera_jobs, pool_for, read_bgr  # noqa: E402
from lerobot_pipeline.core.convert import align_episode  # noqa: E402
from lerobot_pipeline.core.raw import discover_episodes, read_episode  # noqa: E402
from lerobot_pipeline.core.video import VideoEncoder  # noqa: E402


def decode_and_encode(job: CameraJob) -> int:
    """Only the limit: read + decode each chosen JPEG, convert and encode it."""
    h, w = job.size
    job.out.parent.mkdir(parents=True, exist_ok=True)
    enc = VideoEncoder(job.out, job.fps, w, h, job.video)
    last, img = None, None
    for i in job.index.tolist():
        if i != last:
            img = read_bgr(job.frames.path(i), job.episode, job.camera)
            last = i
        enc.add_bgr(img)
    return enc.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw")
    p.add_argument("out")
    p.add_argument("--codec", default="h264")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    overrides = {"video.codec": args.codec} | dict(kv.split("=", 1) for kv in args.set)
    cfg = load_config(None, overrides)
    refs, _ = discover_episodes(Path(args.raw), cfg, "bench")
    jobs = []
    for k, ref in enumerate(refs):  # which JPEG each video frame shows (the same choice the converter makes)
        raw = read_episode(ref, cfg)
        parts = list(align_episode(raw, cfg).parts)
        for part_jobs in camera_jobs(Path(args.out) / f"ep{k}", cfg, parts, raw.cameras):
            jobs.extend(j for j in part_jobs if j.frames is not None)
    pool = pool_for(args.jobs)
    frames = sum(f.result() for f in [pool.submit(decode_and_encode, j) for j in jobs])
    print(f"frames={frames}")


if __name__ == "__main__":
    main()
