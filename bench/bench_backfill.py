"""Backfill benchmark: N sample episodes × one strategy through a real dagster-daemon. Prints figures.

    .venv/bin/python bench/bench_backfill.py --episodes 20 --strategy chunking

Reports wall time from launch to the dataset holding every episode, runs launched, and how many
dataset assemblies the refresh sensor triggered (bounded, not one per episode).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--strategy", default="chunking")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args()

    import dagster as dg

    from lerobot_pipeline.cli.orchestrate import (
        _pipeline, launch_backfill, prepare_environment, register_episodes, wait_for_backfill,
    )
    from lerobot_pipeline.core.dataset import read_provenance
    from lerobot_pipeline.core.sample_data import generate_dataset
    from lerobot_pipeline.daemon import DaemonProcess

    base = Path(tempfile.mkdtemp(prefix="bench_backfill_"))
    work, home = prepare_environment(str(base / "work"), str(base / "home"))
    os.environ.setdefault("LEROBOT_PIPELINE_REFRESH_SECONDS", "5")
    generate_dataset(base / "raw", episodes=args.episodes, seconds=args.seconds, seed=11)
    instance = dg.DagsterInstance.get()
    keys, _ = register_episodes(instance, work, base / "raw", "bench")
    dataset = _pipeline(work).dataset_dir(args.strategy)
    with DaemonProcess(os.environ.copy(), base / "daemon.log"):
        tag = uuid.uuid4().hex[:12]
        t0 = time.monotonic()
        launch_backfill(args.strategy, keys, tag)
        res = wait_for_backfill(instance, tag, len(keys), args.timeout)
        t_runs = time.monotonic() - t0
        while time.monotonic() - t0 < args.timeout and len({r["episode_key"] for r in read_provenance(dataset)}) < len(keys):
            time.sleep(1)
        t_dataset = time.monotonic() - t0
    assemblies = instance.get_run_records(dg.RunsFilter(job_name="dataset_job"))
    in_ds = len({r["episode_key"] for r in read_provenance(dataset)})
    print(f"episodes: {len(keys)} × {args.strategy} ({args.seconds:g} s each, 3 cameras 224x224)")
    print(f"conversion runs launched: {res['runs']} (succeeded {res['succeeded']}, failed {res['failed']})")
    print(f"all runs finished after: {t_runs:.1f} s; dataset holds {in_ds}/{len(keys)} after {t_dataset:.1f} s")
    print(f"dataset assemblies triggered: {len(assemblies)} "
          f"({sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in assemblies)} succeeded)")
    print(f"(work dir {base})")


if __name__ == "__main__":
    main()
