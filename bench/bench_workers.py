"""Celery worker pool benchmark: a backfill of N sample episodes on 1 vs 2 local workers. Prints a table.

    .venv/bin/python bench/bench_workers.py                 # 24 episodes, 20 s, 224x224, 1 and 2 workers
    .venv/bin/python bench/bench_workers.py --smoke         # 2 tiny episodes on 2 workers: ~1 min, checks the set-up

Each configuration gets fresh throwaway services (redis-server, PostgreSQL on 127.0.0.1), a real
dagster-daemon and N ``lerobot-pipeline worker start`` processes (concurrency 1 each). Wall time runs
from the backfill launch to every conversion run finished (each run assembles the dataset as it ends).

A worker stands for one machine: worker i is pinned to ``--cores-per-worker`` cores of its own (default
1, so 2 workers use this 2-core machine's two cores, as ``convert --jobs 2`` does; a step encodes in the
worker's prefork child, one core per slot). The daemon, the run processes and the services are not pinned. The
backfill is cut as ``lerobot-pipeline backfill`` cuts it: even runs, at least one per ``video`` slot (one
slot per worker). Episodes/hour per worker = episodes / wall hours / workers; worker CPU s is what the
workers' processes used in that time, busy = worker CPU / (wall × workers).
"""

from __future__ import annotations

import argparse
import contextlib
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
    from lerobot_pipeline.ids import STRATEGIES
    from lerobot_pipeline.localcluster import (
        WorkerProcess,
        deployment_env,
        pgbouncer_front,
        postgres_cluster,
        write_instance_yaml,
    )
    from lerobot_pipeline.streaming.embedded import start_embedded

    home, work = base / "home", base / "work"
    work.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(start_embedded(db=0))
        pg_env = stack.enter_context(postgres_cluster())
        client_env = stack.enter_context(pgbouncer_front(pg_env)) if args.pgbouncer else pg_env
        env = {**os.environ, **deployment_env(redis_server.url, client_env, base / "redis.yaml"),
               "DAGSTER_HOME": str(home), "LEROBOT_PIPELINE_WORK_DIR": str(work)}
        os.environ.update(env)
        write_instance_yaml(home, max_runs=2 * workers + 1, video_slots=workers, warm_launcher=args.launcher == "warm")
        instance = dg.DagsterInstance.get()
        keys, _ = register_episodes(instance, work, args.raw, "bench")
        pool = [WorkerProcess(f"bench{i}", env, base / f"worker{i}.log", cpus=_cores(i, args.cores_per_worker))
                for i in range(workers)]
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
            if args.warm_up:
                # a cluster that has run before: the daemon's code server, the launcher and its spares, each worker's
                # first task (imports, forkserver) are ready. The warm-up converts with another strategy.
                other = next(s for s in STRATEGIES if s != args.strategy)
                warm = uuid.uuid4().hex[:12]
                wait_for_backfill(instance, warm, launch_backfill(instance, work, other, keys[:workers], warm),
                                  args.timeout)
                time.sleep(args.warm_up)
            tag = uuid.uuid4().hex[:12]
            usage0 = _usage(pool, daemon, pg_env)
            t0, wall0 = time.monotonic(), time.time()
            n_runs = launch_backfill(instance, work, args.strategy, keys, tag)
            res = wait_for_backfill(instance, tag, n_runs, args.timeout)
            t_runs = time.monotonic() - t0
            usage = {k: v - usage0[k] for k, v in _usage(pool, daemon, pg_env).items()}
            dataset = PipelineResource(work_dir=str(work)).dataset_dir(args.strategy)
            while (time.monotonic() - t0 < args.timeout
                   and len({r["episode_key"] for r in read_provenance(dataset)}) < len(keys)):
                time.sleep(0.5)
            t_dataset = time.monotonic() - t0
            if args.breakdown:
                from bench_backfill import print_breakdown

                print(f"{workers} worker(s): where the time went")
                print_breakdown(instance, tag, wall0, t_dataset)
        finally:
            daemon.stop()
            for w in pool:
                w.stop()
            instance.dispose()
    return {"workers": workers, "ok": res.get("succeeded"), "runs": n_runs, "runs_s": t_runs, "dataset_s": t_dataset,
            **usage}


def _usage(pool, daemon, pg_env) -> dict:
    """Counters read before and after the timed window: CPU seconds of the workers, of PostgreSQL, of the
    daemon's tree (daemon, code server, run processes), of this process (the benchmark's own launch and polls) and
    of the whole machine; PostgreSQL sessions opened."""
    pg_cpu, pg_sessions = _pg_usage(pg_env)
    return {"worker_cpu_s": _tree_cpu([w.proc.pid for w in pool]), "pg_cpu_s": pg_cpu, "pg_sessions": pg_sessions,
            "daemon_cpu_s": _tree_cpu([daemon.proc.pid]), "self_cpu_s": sum(os.times()[:2]),
            "machine_cpu_s": _machine_busy_s()}


def _tree_cpu(pids) -> float:
    """CPU seconds (user + sys) used so far by the process trees rooted at ``pids``: every live process's own time
    plus what it has reaped of its exited children (their time lands in its children's times), so a run process
    that came and went still counts."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def _pg_usage(pg_env: dict[str, str]) -> tuple[float, int]:
    """(CPU seconds, sessions opened) of the PostgreSQL server so far. CPU is the postmaster's own, its live
    backends' and the exited ones' it has reaped (their time lands in its children's times), plus any PgBouncer's
    on this machine; sessions counts the connections PostgreSQL itself has accepted to the database
    (``pg_stat_database.sessions``; behind PgBouncer, its server connections). (0.0, 0) when the server is not a
    local one this process can see."""
    import psutil
    import psycopg2

    port = pg_env["DAGSTER_PG_PORT"]
    postmaster = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-p" in cmd and cmd[cmd.index("-p") + 1:][:1] == [port]:
            postmaster.append(proc.pid)
    cpu = _tree_cpu(postmaster) + _tree_cpu([p.pid for p in psutil.process_iter(["name"])
                                             if p.info["name"] == "pgbouncer"])
    try:
        with psycopg2.connect(host=pg_env["DAGSTER_PG_HOST"], port=port, user=pg_env["DAGSTER_PG_USER"],
                              password=pg_env["DAGSTER_PG_PASSWORD"], dbname=pg_env["DAGSTER_PG_DB"]) as conn:
            with conn.cursor() as cur:
                cur.execute("select sessions from pg_stat_database where datname = current_database()")
                sessions = int(cur.fetchone()[0])
        conn.close()
    except psycopg2.Error:
        sessions = 0
    return cpu, sessions


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting for I/O), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _cores(i: int, per_worker: int) -> set[int] | None:
    """Worker i's cores: the i-th group of ``per_worker`` (wrapping round); None (unpinned) for 0."""
    if per_worker <= 0:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return {cpus[(i * per_worker + k) % len(cpus)] for k in range(per_worker)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--size", default="224x224")
    p.add_argument("--strategy", default="nearest")
    p.add_argument("--workers", help="comma-separated pool sizes to compare (default 1,2; --smoke: 2)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--cores-per-worker", type=int, default=1,
                   help="cores each worker is pinned to (default 1: a one-core machine per worker; 0: unpinned)")
    p.add_argument("--launcher", choices=("warm", "default"), default="warm",
                   help="run launcher: the shipped WarmRunLauncher (configs/dagster.yaml's block) or Dagster's own")
    p.add_argument("--warm-up", type=float, default=5.0, metavar="S",
                   help="before timing, convert one episode per worker with another strategy and wait S s "
                   "(a cluster that has run before); 0: time a cold start")
    p.add_argument("--pgbouncer", action="store_true",
                   help="put PgBouncer (session pooling) between every Dagster process and PostgreSQL, as "
                   "docs/deployment.md advises; its CPU is counted with PostgreSQL's")
    p.add_argument("--breakdown", action="store_true", help="print each run's milestones (queued, started, "
                   "step start, first/last episode committed, assembled)")
    p.add_argument("--target", type=float, default=1.8, help="speed-up of the largest pool over the first to pass")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (raw data, logs)")
    p.add_argument("--smoke", action="store_true",
                   help="2 episodes of 1 s at 64x48 on 2 workers: a check of the set-up")
    args = p.parse_args()
    if args.smoke:
        args.episodes, args.seconds, args.size, args.warm_up = 2, 1.0, "64x48", 0.0
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
    pinned = (f"each pinned to {args.cores_per_worker} core(s)" if args.cores_per_worker > 0 else "unpinned")
    print(f"\nbackfill of {args.episodes} episodes × {args.strategy} ({args.seconds:g} s, 3 cameras {args.size}), "
          f"{os.cpu_count()} CPU(s), Celery workers of concurrency 1 {pinned}"
          + (f"; kept {root}" if args.keep else ""))
    print(f"{'workers':>7}  {'runs':>4}  {'succeeded':>9}  {'runs done s':>11}  {'dataset s':>9}  {'speed-up':>8}  "
          f"{'ep/h/worker':>11}  {'worker CPU s':>12}  {'busy':>5}")
    base = rows[0]["runs_s"]
    for r in rows:
        per_worker = args.episodes / (r["runs_s"] / 3600) / r["workers"]
        print(f"{r['workers']:>7}  {r['runs']:>4}  {r['ok']!s:>9}  {r['runs_s']:>11.1f}  {r['dataset_s']:>9.1f}  "
              f"{base / r['runs_s']:>7.2f}x  {per_worker:>11.0f}  {r['worker_cpu_s']:>12.1f}  "
              f"{r['worker_cpu_s'] / (r['runs_s'] * r['workers']):>5.0%}")
    print("\nwhere the machine's CPU went in that window (CPU s; control plane = all but the workers, in cores)")
    print(f"{'workers':>7}  {'machine':>7}  {'workers':>7}  {'PostgreSQL':>10}  {'PG sessions':>11}  "
          f"{'daemon tree':>11}  {'benchmark':>9}  {'rest':>5}  {'control plane':>13}")
    for r in rows:
        rest = r["machine_cpu_s"] - r["worker_cpu_s"] - r["pg_cpu_s"] - r["daemon_cpu_s"] - r["self_cpu_s"]
        control = (r["machine_cpu_s"] - r["worker_cpu_s"]) / r["runs_s"]
        print(f"{r['workers']:>7}  {r['machine_cpu_s']:>7.1f}  {r['worker_cpu_s']:>7.1f}  {r['pg_cpu_s']:>10.1f}  "
              f"{r['pg_sessions']:>11}  {r['daemon_cpu_s']:>11.1f}  {r['self_cpu_s']:>9.1f}  {rest:>5.1f}  "
              f"{control:>8.2f} cores")
    if len(rows) > 1:
        speed_up = base / rows[-1]["runs_s"]
        verdict = "PASS" if speed_up >= args.target else "FAIL"
        print(f"{rows[-1]['workers']} workers vs {rows[0]['workers']}: {speed_up:.2f}x (target >= {args.target:g}x): "
              f"{verdict}")


if __name__ == "__main__":
    main()
