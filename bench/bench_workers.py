"""Celery worker pool benchmark: a backfill of N sample episodes on 1 vs 2 local workers. Prints a table.

    .venv/bin/python bench/bench_workers.py                 # 20 episodes, 5 s, 224x224, 1 and 2 workers
    .venv/bin/python bench/bench_workers.py --smoke         # 2 tiny episodes on 2 workers: ~1 min, checks the set-up

Each configuration gets fresh throwaway services (redis-server, PostgreSQL on 127.0.0.1), a real
dagster-daemon and N ``lerobot-pipeline worker start`` processes (concurrency 1 each). Wall time runs
from the backfill launch to every conversion run finished; the dataset assembly is timed apart.
Episodes/hour per worker = episodes / wall hours / workers. On a shared machine, run it twice.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_once(base: Path, workers: int, args) -> dict:
    import dagster as dg

    from lerobot_pipeline.cli.orchestrate import launch_backfill, register_episodes, wait_for_backfill
    from lerobot_pipeline.core.dataset import read_provenance
    from lerobot_pipeline.daemon import DaemonProcess
    from lerobot_pipeline.defs.resources import PipelineResource
    from lerobot_pipeline.localcluster import WorkerProcess, deployment_env, postgres_cluster, write_instance_yaml
    from lerobot_pipeline.streaming.embedded import start_embedded

    home, work = base / "home", base / "work"
    work.mkdir(parents=True)
    with start_embedded(db=0) as redis_server, postgres_cluster() as pg_env:
        env = {**os.environ, **deployment_env(redis_server.url, pg_env, base / "redis.yaml"),
               "DAGSTER_HOME": str(home), "LEROBOT_PIPELINE_WORK_DIR": str(work),
               "LEROBOT_PIPELINE_REFRESH_SECONDS": "2",
               "LEROBOT_PIPELINE_BACKFILL_BATCH": "1"}  # one episode per run: runs spread over the workers
        os.environ.update(env)
        write_instance_yaml(home, max_runs=2 * workers + 1, video_slots=workers)
        instance = dg.DagsterInstance.get()
        keys, _ = register_episodes(instance, work, args.raw, "bench")
        pool = [WorkerProcess(f"bench{i}", env, base / f"worker{i}.log") for i in range(workers)]
        daemon = DaemonProcess(env, base / "daemon.log")
        try:
            for w in pool:
                w.start()
            deadline = time.monotonic() + 90
            while not all(w.ready() for w in pool):
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers not ready, see {base}/worker*.log")
                time.sleep(0.5)
            daemon.start()
            tag = uuid.uuid4().hex[:12]
            t0 = time.monotonic()
            n_runs = launch_backfill(instance, work, args.strategy, keys, tag)
            res = wait_for_backfill(instance, tag, n_runs, args.timeout)
            t_runs = time.monotonic() - t0
            dataset = PipelineResource(work_dir=str(work)).dataset_dir(args.strategy)
            while (time.monotonic() - t0 < args.timeout
                   and len({r["episode_key"] for r in read_provenance(dataset)}) < len(keys)):
                time.sleep(0.5)
            t_dataset = time.monotonic() - t0
        finally:
            daemon.stop()
            for w in pool:
                w.stop()
            instance.dispose()
    return {"workers": workers, "ok": res.get("succeeded"), "runs_s": t_runs, "dataset_s": t_dataset}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--size", default="224x224")
    p.add_argument("--strategy", default="nearest")
    p.add_argument("--workers", help="comma-separated pool sizes to compare (default 1,2; --smoke: 2)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (raw data, logs)")
    p.add_argument("--smoke", action="store_true",
                   help="2 episodes of 1 s at 64x48 on 2 workers: a check of the set-up")
    args = p.parse_args()
    if args.smoke:
        args.episodes, args.seconds, args.size = 2, 1.0, "64x48"
    args.workers = args.workers or ("2" if args.smoke else "1,2")

    from lerobot_pipeline.sample_data import generate_dataset

    root = Path(tempfile.mkdtemp(prefix="bench_workers_"))
    args.raw = root / "raw"
    w, h = (int(v) for v in args.size.split("x"))
    generate_dataset(args.raw, episodes=args.episodes, seconds=args.seconds, size=(w, h), seed=11)
    rows, saved = [], dict(os.environ)
    try:
        for n in (int(v) for v in args.workers.split(",")):
            rows.append(run_once(root / f"pool{n}", n, args))
            os.environ.clear()
            os.environ.update(saved)  # the next pool gets its own services (DAGSTER_PG_HOST would reuse these)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nbackfill of {args.episodes} episodes × {args.strategy} ({args.seconds:g} s, 3 cameras {args.size}), "
          f"{os.cpu_count()} CPU(s), Celery workers of concurrency 1" + (f"; kept {root}" if args.keep else ""))
    print(f"{'workers':>7}  {'succeeded':>9}  {'runs done s':>11}  {'dataset s':>9}  {'speed-up':>8}  "
          f"{'ep/h/worker':>11}")
    base = rows[0]["runs_s"]
    for r in rows:
        per_worker = args.episodes / (r["runs_s"] / 3600) / r["workers"]
        print(f"{r['workers']:>7}  {r['ok']!s:>9}  {r['runs_s']:>11.1f}  {r['dataset_s']:>9.1f}  "
              f"{base / r['runs_s']:>7.2f}x  {per_worker:>11.0f}")


if __name__ == "__main__":
    main()
