"""Orchestration at scale (issue 7, target 6): the per-tick and per-episode costs that grow with a lab's backlog.

    .venv/bin/python bench/bench_scale.py                # 2,000 registered episodes, a 1,000-episode dataset
    .venv/bin/python bench/bench_scale.py --smoke        # 40 / 20: seconds, for CI

Sections (store entries and raw episodes are synthesised by hard-linking one small converted episode):
  register   `register_episodes` of N raw episodes (discover + add partitions).        target < 30 s at 2,000
  stream     one stream-sensor tick reading 50 new messages with N registered.       target < 2 s
  refresh    one dataset_refresh_sensor tick with N registered × 3 strategies.        target < 2 s
  append     adding one episode to an M-episode v2.1 dataset (re-assembly).          target < 5 s at 1,000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import Report  # (importing common puts the checkout on sys.path)


def clone_raw(one: Path, out: Path, n: int) -> None:
    """``n`` raw episodes under ``out`` that are hard links of the one episode under ``one``."""
    (src_j,) = (one / "joints").glob("*/*")
    (src_i,) = (one / "images").glob("*/*")
    task = src_j.parent.name
    for k in range(n):
        ep = f"episode_{k:05d}"
        for src, kind in ((src_j, "joints"), (src_i, "images")):
            dst = out / kind / task / ep
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
            meta = dst / "metadata.json"
            data = json.loads(meta.read_text())
            data["episode_id"] = ep
            meta.unlink()  # a link: write our own copy
            meta.write_text(json.dumps(data))


def clone_store(store: Path, strategy: str, template_key: str, keys: list[str]) -> None:
    """Committed store entries for ``keys``: hard links of the template's files, own report and manifest."""
    src = store / strategy / template_key
    for key in keys:
        dst = store / strategy / key
        subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
        for report in dst.glob("versions/*/part-*/report.json"):
            data = json.loads(report.read_text())
            data["episode_key"] = key
            data["episode_id"] = key.split(".", 1)[1]
            report.unlink()
            report.write_text(json.dumps(data))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registered", type=int, default=2000)
    p.add_argument("--dataset", type=int, default=1000)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.registered, args.dataset = 40, 20
    import dagster as dg

    from lerobot_pipeline.cli.orchestrate import register_episodes
    from lerobot_pipeline.config import load_config
    from lerobot_pipeline.core.convert import convert_episode
    from lerobot_pipeline.core.raw import discover_episodes
    from lerobot_pipeline.definitions import build_definitions
    from lerobot_pipeline.defs.dataset_build import build_dataset
    from lerobot_pipeline.defs.resources import PipelineResource, RedisStreamResource
    from lerobot_pipeline.defs.sensors import dataset_refresh_sensor
    from lerobot_pipeline.defs.stream_sensor import stream_tick
    from lerobot_pipeline.sample_data import generate_dataset
    from lerobot_pipeline.streaming.messages import EpisodeMessage
    from lerobot_pipeline.streaming.settings import load_redis_settings
    from lerobot_pipeline.streaming.stream import EpisodeStream

    rep = Report()
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmpdir:
        tmp = Path(tmpdir)
        generate_dataset(tmp / "one", episodes=1, seconds=1.0, size=(64, 48), seed=2)
        clone_raw(tmp / "one", tmp / "raw", args.registered)
        redis_yaml = tmp / "redis.yaml"
        prefix = f"bench_scale_{os.getpid()}"
        redis_yaml.write_text(json.dumps({"redis": {"url": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                                                    "key_prefix": prefix},
                                          "sources": {"lab": {"raw_root": str(tmp / "raw")}},
                                          "embedded": {"enabled": False}}))
        pipeline = PipelineResource(work_dir=str(tmp / "work"), redis_config=str(redis_yaml))
        redis_stream = RedisStreamResource(config_path=str(redis_yaml))
        defs = build_definitions(pipeline, redis_stream)
        (tmp / "home").mkdir()
        with dg.instance_for_test(temp_dir=str(tmp / "home")) as instance:
            print(f"\n== scale: {args.registered} registered episodes, a {args.dataset}-episode dataset")
            t0 = time.perf_counter()
            keys, _ = register_episodes(instance, tmp / "work", tmp / "raw", "lab")
            dt = time.perf_counter() - t0
            rep.add("scale", f"register {len(keys)} episodes", target="< 30 s",
                    passed=dt < 30 and len(keys) == args.registered,
                    seconds=round(dt, 2))

            settings = load_redis_settings(str(redis_yaml))
            stream = EpisodeStream.from_settings(settings)
            try:
                ids = [stream.publish(EpisodeMessage.new(f"episode_{k:05d}", "lab", "chunking", None))
                       for k in range(50)]
                ctx = dg.build_sensor_context(instance=instance, cursor=None, definitions=defs)
                t0 = time.perf_counter()
                result = stream_tick(ctx, redis_stream, pipeline)
                dt = time.perf_counter() - t0
                rep.add("scale", "stream tick, 50 new messages", target="< 2 s",
                        passed=dt < 2 and len(result.run_requests) == 50 and result.cursor == ids[-1],
                        seconds=round(dt, 3))
            finally:
                for key in stream.client.scan_iter(f"{prefix}*"):
                    stream.client.delete(key)
                stream.close()

            cfg = load_config(None, {"alignment.strategy": "nearest"})
            (ref,), _ = discover_episodes(tmp / "one", cfg, "lab")
            for strategy in ("nearest", "chunking", "window"):  # every strategy has committed episodes
                scfg = load_config(None, {"alignment.strategy": strategy})
                convert_episode(ref, scfg, pipeline.store, jobs=1)
                clone_store(pipeline.store, strategy, ref.key, keys[:args.dataset])

            with dg.build_sensor_context(instance=instance, definitions=defs,
                                         resources={"pipeline": pipeline}) as ctx:
                t0 = time.perf_counter()
                dataset_refresh_sensor(ctx)
                dt = time.perf_counter() - t0
            rep.add("scale", f"refresh tick, {len(keys)} × 3 strategies", target="< 2 s", passed=dt < 2,
                    seconds=round(dt, 3))

            # the dataset asset's path: a dataset of M episodes, then one more committed: re-check + re-assembly
            for k in keys[args.dataset + 1:]:
                instance.delete_dynamic_partition("episode", k)
            t0 = time.perf_counter()
            first = build_dataset(instance, pipeline, "nearest")
            print(f"  (first assembly of {first['episodes']} episodes: {time.perf_counter() - t0:.1f} s)")
            clone_store(pipeline.store, "nearest", ref.key, [keys[args.dataset]])
            t0 = time.perf_counter()
            meta = build_dataset(instance, pipeline, "nearest")
            dt = time.perf_counter() - t0
            rep.add("scale", f"append 1 to a {args.dataset}-episode dataset", target="< 5 s",
                    passed=dt < 5 and meta["episodes"] == args.dataset + 1, seconds=round(dt, 2),
                    rewritten=meta["rewritten"], reused=meta["reused_unchanged"])
    rep.summary()


if __name__ == "__main__":
    main()
