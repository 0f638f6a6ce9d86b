"""Where a backfill run's conversion step spends more than `convert`: the step and `convert_dataset` of the same
episodes, side by side in one warm process (no daemon, no process start), with the step's event writes timed.

    .venv/bin/python bench/bench_step_cost.py                 # 6 x 10-s 224x224 episodes, 3 rounds
    .venv/bin/python bench/bench_step_cost.py --smoke         # 2 tiny episodes, 1 round (CI)

Per round: the batched conversion run (one run over every partition, as a backfill batch runs it, in-process
executor), the same run with the UI's joint plot stubbed out, and `convert_dataset` (--jobs 2). The time inside
``instance.handle_new_event`` is summed over the step's events. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="2 tiny episodes, 1 round: seconds, for CI")
    args = p.parse_args()
    size = (224, 224)
    if args.smoke:
        args.episodes, args.seconds, args.rounds, size = 2, 1.5, 1, (64, 48)

    tmp = Path(tempfile.mkdtemp(prefix="bench_step_cost_"))
    os.environ["DAGSTER_HOME"] = str(tmp / "home")
    os.environ["LEROBOT_PIPELINE_WORK_DIR"] = str(tmp / "work")
    (tmp / "home").mkdir()
    (tmp / "home" / "dagster.yaml").write_text("telemetry: {enabled: false}\n")

    import dagster as dg

    from lerobot_pipeline.cli.convert import convert_dataset
    from lerobot_pipeline.cli.orchestrate import QUIET_RUN_CONFIG, _pipeline, prepare_environment, register_episodes
    from lerobot_pipeline.config import load_config
    from lerobot_pipeline.definitions import build_definitions
    from lerobot_pipeline.defs import ui_metadata
    from lerobot_pipeline.defs.backfill_sensor import RANGE_END, RANGE_START
    from lerobot_pipeline.defs.partitions import multi_key
    from lerobot_pipeline.sample_data import generate_dataset

    raw = tmp / "raw"
    generate_dataset(raw, episodes=args.episodes, seconds=args.seconds, size=size, seed=11)
    work, _ = prepare_environment(None)
    instance = dg.DagsterInstance.get()
    keys, _ = register_episodes(instance, work, raw, "local")
    job = build_definitions(_pipeline(work)).resolve_job_def("convert_episode_job")
    tags = {RANGE_START: str(multi_key(keys[0], "chunking")), RANGE_END: str(multi_key(keys[-1], "chunking"))}
    config = load_config(overrides={"alignment.strategy": "chunking"})

    events = {"s": 0.0, "n": 0}
    handle = instance.handle_new_event

    def timed_handle(*a, **kw):
        t0 = time.perf_counter()
        try:
            return handle(*a, **kw)
        finally:
            events["s"] += time.perf_counter() - t0
            events["n"] += 1

    instance.handle_new_event = timed_handle

    def step() -> float:
        t0 = time.perf_counter()
        assert job.execute_in_process(instance=instance, tags=tags, run_config=QUIET_RUN_CONFIG).success
        return time.perf_counter() - t0

    def convert() -> float:
        t0 = time.perf_counter()
        out = convert_dataset(raw, tmp / "ds", config, jobs=2, progress_stream=io.StringIO())
        assert not out.failed, out.failed
        return time.perf_counter() - t0

    real_plot = ui_metadata.joint_plot
    try:
        step(), convert()  # warm: imports, the encoder pool
        print(f"\n== conversion step vs convert: {args.episodes} x {args.seconds:g}-s {size[0]}x{size[1]} "
              "episodes, chunking, one warm process")
        for n in range(args.rounds):
            events.update(s=0.0, n=0)
            with_plot = step()
            ev_s, ev_n = events["s"], events["n"]
            ui_metadata.joint_plot = lambda *a, **kw: ""
            try:
                no_plot = step()
            finally:
                ui_metadata.joint_plot = real_plot
            conv = convert()
            print(f"  round {n + 1}: step {with_plot:5.2f} s (event writes {ev_s:4.2f} s in {ev_n}, "
                  f"{ev_s / max(ev_n, 1) * 1e3:4.1f} ms each)  step without joint plot {no_plot:5.2f} s  "
                  f"convert {conv:5.2f} s  step/convert {with_plot / conv:4.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # the encoder pool's forkserver re-imports this module
    main()
