"""Publish → episode in the dataset, with a running daemon. Prints median and max over N episodes.

    .venv/bin/python bench/bench_stream_latency.py --episodes 10 --seconds 10

Episodes are published one at a time (each after the previous arrived), so every figure is the
latency of one episode, not of a queue. Uses $REDIS_URL if set, else the embedded Redis.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--strategy", default="chunking")
    p.add_argument("--sensor-interval", default="2", help="stream sensor and refresh sensor interval (s)")
    p.add_argument("--smoke", action="store_true", help="one short tiny episode: seconds, for CI")
    args = p.parse_args()
    if args.smoke:
        args.episodes, args.seconds = 1, 1.5

    import dagster as dg

    from lerobot_pipeline.cli.orchestrate import _pipeline, prepare_environment
    from lerobot_pipeline.cli.queue import write_demo_redis_config
    from lerobot_pipeline.core.dataset import read_provenance
    from lerobot_pipeline.daemon import DaemonProcess
    from lerobot_pipeline.sample_data import generate_dataset
    from lerobot_pipeline.streaming.embedded import find_embedded
    from lerobot_pipeline.streaming.publisher import publish_episode
    from lerobot_pipeline.streaming.settings import load_redis_settings

    base = Path(tempfile.mkdtemp(prefix="bench_latency_"))
    work, home = prepare_environment(str(base / "work"), str(base / "home"))
    size = (64, 48) if args.smoke else (224, 224)
    generate_dataset(base / "raw", episodes=args.episodes, seconds=args.seconds, sources=["rig"], seed=5, size=size)
    # the reference: converting one of these episodes with the CLI (a fresh process, like a run worker)
    t0 = time.monotonic()
    subprocess.run([str(Path(sys.executable).with_name("lerobot-pipeline")), "convert", "--input",
                    str(base / "raw" / "rig"), "--output", str(base / "ref_ds"), "--episode-id", "episode_0000",
                    "--strategy", args.strategy], check=True, capture_output=True)
    convert_s = time.monotonic() - t0
    redis_yaml = base / "redis.yaml"
    write_demo_redis_config(redis_yaml, {"rig": base / "raw" / "rig"}, base / "redis", args.strategy)
    os.environ["LEROBOT_PIPELINE_REDIS_CONFIG"] = str(redis_yaml)
    os.environ["LEROBOT_PIPELINE_STREAM_INTERVAL_SECONDS"] = args.sensor_interval
    os.environ["LEROBOT_PIPELINE_REFRESH_SECONDS"] = args.sensor_interval
    settings = load_redis_settings(redis_yaml)
    dg.DagsterInstance.get().get_run_records(limit=1)
    dataset = _pipeline(work).dataset_dir(args.strategy)
    latencies = []
    with DaemonProcess(os.environ.copy(), base / "daemon.log"):
        time.sleep(3)  # let the daemon load the code location once
        for i in range(args.episodes):
            key = f"rig.episode_{i:04d}"
            t0 = time.monotonic()
            publish_episode(f"episode_{i:04d}", source="rig", strategy=args.strategy, settings=settings)
            while key not in {r["episode_key"] for r in read_provenance(dataset)}:
                if time.monotonic() - t0 > 300:
                    raise SystemExit(f"{key} did not arrive within 300 s (see {base / 'daemon.log'})")
                time.sleep(0.2)
            latencies.append(time.monotonic() - t0)
            print(f"  {key}: {latencies[-1]:.1f} s")
    if settings.uses_embedded and (h := find_embedded(settings.embedded_dir())):
        h.stop()
    median = statistics.median(latencies)
    print(f"publish → in dataset over {len(latencies)} × {args.seconds:g}-s episodes (sensor interval "
          f"{args.sensor_interval} s): median {median:.1f} s, max {max(latencies):.1f} s, min {min(latencies):.1f} s; "
          f"convert of one episode {convert_s:.1f} s")
    verdict = "PASS" if median <= convert_s + 8 else "FAIL"
    print(f"  {verdict}  stream: median latency - conversion = {median - convert_s:.1f} s  (target <= 8 s)")


if __name__ == "__main__":
    main()
