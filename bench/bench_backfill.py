"""Orchestration cost: a Dagster backfill through a real daemon vs `convert` of the same recordings, side by side.

    .venv/bin/python bench/bench_backfill.py                                   # 6 sample episodes, chunking
    .venv/bin/python bench/bench_backfill.py --raw ../shared/fixtures/airbot_real --strategy nearest
    .venv/bin/python bench/bench_backfill.py --episodes 20 --seconds 5         # issue 9's sizing run
    .venv/bin/python bench/bench_backfill.py --smoke
    .venv/bin/python bench/bench_backfill.py --setups warm:direct --rounds 1   # the shipped setup, one backfill
    .venv/bin/python bench/bench_backfill.py --setups warm:direct --storage postgres   # PostgreSQL storage
    .venv/bin/python bench/bench_backfill.py --setups warm:direct --episodes 12 --seconds 20 --strategy nearest \
        --video-workers 1,2                      # issue 7 target 3 on one machine: 2 video workers vs 1

Each setup (run launcher: Dagster's DefaultRunLauncher or the shipped WarmRunLauncher; runs queued by
backfill_sensor or directly by the CLI, the shipped way) gets its own instance and daemon, which runs --rounds
backfills of the recordings --pause s apart. Round 1 is the
daemon's first run (cold for both launchers); later rounds show the steady state. A breakdown per run is
printed from the event log (request written -> run created -> RUN_STARTING -> worker up -> step -> episodes
-> assembly -> dataset holds every episode).

Backfill time runs from `lerobot-pipeline backfill` (the request) until the dataset holds every episode; the
daemon is started (and its code location loaded) before the clock starts, as in a lab where `dagster dev`
runs. `convert` of the same recordings is timed right before each round (the daemon idle), and each ratio is
of that pair. Target (issue 7): backfill <= 1.25x convert.

``--video-workers 1,2`` repeats every setup with the step's video pool (LEROBOT_PIPELINE_VIDEO_WORKERS, the
one-machine deployment's workers) at each size, `convert --jobs N` beside it, and judges the backfill's speed-up
of the largest pool over the first (target 3: 2 workers >= 1.8x 1, as `convert --jobs`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from common import Report, cli, count_frames, sample_data, timed


def instance_yaml(launcher: str, storage: str = "sqlite") -> str:
    """The shipped instance template, with Dagster's DefaultRunLauncher instead of WarmRunLauncher if asked, and
    with the PostgreSQL storage block of configs/dagster_postgres.yaml if asked (DAGSTER_PG_* from the env)."""
    from lerobot_pipeline.shipped import dagster_template

    text = dagster_template().read_text()
    if launcher == "default":
        text = re.sub(r"^run_launcher:.*\n(^  .*\n)*", "", text, flags=re.M)
    if storage == "postgres":
        pg = (Path(__file__).resolve().parents[1] / "configs" / "dagster_postgres.yaml").read_text()
        text = re.search(r"^storage:\n(^ .*\n)+", pg, flags=re.M).group(0) + text
    return text


def backfill_rounds(raw: Path, strategy: str, base: Path, timeout: float, launcher: str, submit: str, rounds: int,
                    pause: float, storage: str = "sqlite", jobs: int | None = None) -> list[dict]:
    """``rounds`` backfills of the same recordings through one daemon, ``pause`` s apart (a lab's daemon idles
    between backfills). Round 1 is the daemon's first run; later rounds convert the episodes again. Right before
    each round, while the daemon idles, `convert` of the same recordings is timed: each ratio is of a pair."""
    import dagster as dg

    from lerobot_pipeline.cli.orchestrate import (
        _pipeline,
        launch_backfill,
        prepare_environment,
        register_episodes,
        wait_for_backfill,
    )
    from lerobot_pipeline.core.dataset import read_provenance
    from lerobot_pipeline.daemon import DaemonProcess

    (base / "home").mkdir(parents=True, exist_ok=True)
    (base / "home" / "dagster.yaml").write_text(instance_yaml(launcher, storage))
    work, home = prepare_environment(str(base / "work"), str(base / "home"))
    instance = dg.DagsterInstance.get()
    keys, _ = register_episodes(instance, work, raw, "bench")
    dataset = _pipeline(work).dataset_dir(strategy)
    out = []
    with DaemonProcess(os.environ.copy(), base / "daemon.log") as daemon:
        ready = time.monotonic() + 120
        while time.monotonic() < ready and not instance.get_daemon_heartbeats():
            time.sleep(0.5)
        time.sleep(3)  # code location loaded, sensors evaluated once
        for n in range(rounds):
            if n:
                time.sleep(pause)
            conv = timed(cli("convert", "--input", str(raw), "--output", str(base / "ds"), "--strategy", strategy,
                             *(["--jobs", str(jobs)] if jobs else [])))
            shutil.rmtree(base / "ds", ignore_errors=True)
            time.sleep(1)
            tag = uuid.uuid4().hex[:12]
            t0, wall0 = time.monotonic(), time.time()
            n_runs = launch_backfill(instance, work, strategy, keys, tag, direct=submit == "direct")
            res = wait_for_backfill(instance, tag, n_runs, timeout)
            def held() -> int:
                return len({r["episode_key"] for r in read_provenance(dataset)})

            while time.monotonic() - t0 < timeout and held() < len(keys):
                time.sleep(0.2)
            wall = time.monotonic() - t0
            held = len({r["episode_key"] for r in read_provenance(dataset)})
            print(f"\n  -- {launcher} launcher, {submit} submission, round {n + 1}")
            print_breakdown(instance, tag, wall0, wall)
            out.append({"wall_s": round(wall, 2), "convert_s": conv.wall_s, "runs": n_runs,
                        "succeeded": res.get("succeeded"), "held": held,
                        "episodes": len(keys)})
        del daemon
    return out


def run_milestones(instance, run_id: str) -> list[tuple[str, float]]:
    """(milestone, wall-clock time) of one run, from its record and its event log, in order."""
    import dagster as dg

    rec = instance.get_run_records(dg.RunsFilter(run_ids=[run_id]))[0]
    marks = [("run created", rec.create_timestamp.timestamp())]
    names = {dg.DagsterEventType.RUN_ENQUEUED: "queued", dg.DagsterEventType.RUN_DEQUEUED: "dequeued",
             dg.DagsterEventType.RUN_STARTING: "RUN_STARTING (launcher called)",
             dg.DagsterEventType.RUN_START: "RUN_START (worker running the job)",
             dg.DagsterEventType.STEP_START: "step start", dg.DagsterEventType.STEP_SUCCESS: "step end",
             dg.DagsterEventType.STEP_FAILURE: "step failed", dg.DagsterEventType.RUN_SUCCESS: "run success",
             dg.DagsterEventType.RUN_FAILURE: "run failure"}
    first_episode = None
    for e in instance.all_logs(run_id):
        ev = e.dagster_event
        if ev is None:
            continue
        if ev.event_type in names:
            marks.append((names[ev.event_type], e.timestamp))
        elif ev.event_type == dg.DagsterEventType.ENGINE_EVENT and (e.message or e.user_message or "").startswith(
                "Started process for run"):
            marks.append(("worker process up", e.timestamp))
        elif ev.event_type == dg.DagsterEventType.ENGINE_EVENT and "Run handed to" in (e.message or ""):
            marks.append(("run handed to worker (" + e.message.split("; ", 1)[-1].rstrip(").") + ")", e.timestamp))
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            key = ev.asset_key.to_user_string() if ev.asset_key else ""
            if key == "episode_metadata":
                if first_episode is None:
                    first_episode = e.timestamp
                    marks.append(("first episode committed", e.timestamp))
                else:
                    marks = [m for m in marks if m[0] != "last episode committed"]
                    marks.append(("last episode committed", e.timestamp))
            elif key.startswith("lerobot_dataset"):
                marks.append((f"{key} assembled", e.timestamp))
    return sorted(marks, key=lambda m: m[1])


def print_breakdown(instance, tag: str, wall0: float, wall: float) -> None:
    """Where a backfill's time went: each run's milestones, seconds after the request and since the previous."""
    import dagster as dg

    from lerobot_pipeline.defs.backfill_sensor import BACKFILL_TAG

    runs = sorted(instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: tag})), key=lambda r: r.create_timestamp)
    for rec in runs:
        print(f"  run {rec.dagster_run.run_id[:8]} ({rec.dagster_run.status.value}):")
        prev = wall0
        for name, t in [("request written", wall0), *run_milestones(instance, rec.dagster_run.run_id)]:
            print(f"    {t - wall0:7.2f} s  (+{t - prev:5.2f})  {name}")
            prev = t
    print(f"    {wall:7.2f} s  (+{wall0 + wall - prev:5.2f})  dataset holds every episode (bench saw it)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, help="raw root (default: generated sample data)")
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--strategy", default="chunking")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--setups", default="default:sensor,warm:direct", help="LAUNCHER:SUBMIT pairs to compare, "
                   "comma-separated. LAUNCHER: default (Dagster's DefaultRunLauncher) or warm (WarmRunLauncher, the "
                   "shipped template's); SUBMIT: sensor (backfill_sensor launches the runs) or direct (the CLI "
                   "queues them, the shipped behaviour). Default: before/after, default:sensor,warm:direct")
    p.add_argument("--rounds", type=int, default=2, help="backfills per daemon, one after the other (default 2)")
    p.add_argument("--pause", type=float, default=10, help="idle seconds between rounds (default 10)")
    p.add_argument("--storage", choices=["sqlite", "postgres"], default="sqlite",
                   help="instance storage: the shipped SQLite, or PostgreSQL (configs/dagster_postgres.yaml; a "
                   "throwaway cluster, or the server DAGSTER_PG_HOST names)")
    p.add_argument("--video-workers", default="", metavar="N,M",
                   help="repeat each setup with the step's video pool at each size (LEROBOT_PIPELINE_VIDEO_WORKERS; "
                   "`convert --jobs N` beside it) and judge the last size's speed-up over the first (target >= 1.8x)")
    args = p.parse_args()
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="bench_backfill_") as tmpdir:
        tmp = Path(tmpdir)
        if args.smoke:  # keeps the script alive in CI: the shipped set-up, one round, no idle pause
            raw = sample_data(tmp / "raw", 2, 1.5, "64x48")
            args.setups, args.rounds, args.pause = "warm:direct", 1, 0.0
        else:
            raw = args.raw or sample_data(tmp / "raw", args.episodes, args.seconds, "224x224", seed=11)
        frames = count_frames(raw)
        print(f"\n== backfill vs convert: {raw} ({frames} frames), {args.strategy}, {args.storage} storage")
        results = {}
        pools = [int(n) for n in args.video_workers.split(",") if n] or [None]
        for setup in args.setups.split(","):
            launcher, submit = setup.split(":")
            for workers in pools:
                base = tmp / (setup.replace(":", "_") + ("" if workers is None else f"_{workers}w"))
                saved = dict(os.environ)
                with ExitStack() as stack:
                    if args.storage == "postgres":
                        from lerobot_pipeline.localcluster import postgres_cluster

                        os.environ.update(stack.enter_context(postgres_cluster()))
                    os.environ["DAGSTER_HOME"] = str(base / "home")
                    os.environ["LEROBOT_PIPELINE_WORK_DIR"] = str(base / "work")
                    if workers is not None:
                        from lerobot_pipeline.defs.resources import VIDEO_WORKERS_ENV

                        os.environ[VIDEO_WORKERS_ENV] = str(workers)
                    results[setup, workers] = backfill_rounds(raw, args.strategy, base, args.timeout, launcher, submit,
                                                    args.rounds, args.pause, args.storage, jobs=workers)
                os.environ.clear()
                os.environ.update(saved)
        print()
        for (setup, workers), rounds in results.items():
            name = setup if workers is None else f"{setup}, {workers} video worker(s)"
            for n, bf in enumerate(rounds):
                ratio = bf["wall_s"] / bf["convert_s"]
                rep.add("backfill", f"{name}, {args.storage}, round {n + 1}: {bf['episodes']} ep, {bf['runs']} run(s)",
                        target="<= 1.25x convert", passed=ratio <= 1.25 and bf["held"] == bf["episodes"],
                        backfill_s=bf["wall_s"], convert_s=bf["convert_s"], ratio=round(ratio, 2),
                        in_dataset=f"{bf['held']}/{bf['episodes']}")
        if len(pools) > 1:
            for setup in args.setups.split(","):
                first, last = results[setup, pools[0]], results[setup, pools[-1]]
                for n, (a, b) in enumerate(zip(first, last)):  # round n of each pool: like for like (cold, warm)
                    rep.add("workers", f"{setup}, round {n + 1}: {pools[-1]} vs {pools[0]} video workers",
                            target=">= 1.8x", passed=a["wall_s"] / b["wall_s"] >= 1.8,
                            backfill_speed_up=round(a["wall_s"] / b["wall_s"], 2),
                            convert_speed_up=round(a["convert_s"] / b["convert_s"], 2),
                            backfill_s=f"{a['wall_s']}/{b['wall_s']}", convert_s=f"{a['convert_s']}/{b['convert_s']}")
    rep.summary()


if __name__ == "__main__":
    main()
