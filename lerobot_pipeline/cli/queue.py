"""Queue commands: publish finished episodes, monitor streaming conversion, the streaming demo."""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from lerobot_pipeline.cli.convert import parse_set
from lerobot_pipeline.cli.progress import Progress
from lerobot_pipeline.errors import DatasetError
from lerobot_pipeline.ids import STRATEGIES


def _stream(config_path: str | None):
    from lerobot_pipeline.streaming.settings import load_redis_settings
    from lerobot_pipeline.streaming.stream import EpisodeStream

    settings = load_redis_settings(config_path)
    return settings, EpisodeStream.from_settings(settings)


def cmd_publish(args) -> int:
    from lerobot_pipeline.streaming.publisher import publish_episode
    from lerobot_pipeline.streaming.settings import load_redis_settings

    settings = load_redis_settings(args.config)
    stream_id = publish_episode(args.episode, source=args.source, strategy=args.strategy,
                                config_overrides=parse_set(args.set) or None, settings=settings,
                                check_raw=not args.no_check_raw)
    print(f"published {args.episode} (source {args.source or os.environ.get('ROBOT_ID')}) as stream entry {stream_id} "
          f"on {settings.redacted_url()}")
    return 0


def cmd_monitor(args) -> int:
    import dagster as dg

    from lerobot_pipeline import monitor
    from lerobot_pipeline.cli.orchestrate import prepare_environment

    prepare_environment(args.work_dir)
    settings, stream = _stream(args.config)
    instance = dg.DagsterInstance.get()
    def refresh() -> list:
        views = monitor.collect(stream, instance, args.stall_seconds)
        if args.retry_failed:
            for key in monitor.retry_failed(stream, instance, views):
                print(f"relaunched {key}")
            views = monitor.collect(stream, instance, args.stall_seconds)
        if args.clear_failed:
            print(f"acknowledged {monitor.clear_failed(stream, views)} failed conversion(s)")
            views = monitor.collect(stream, instance, args.stall_seconds)
        return views

    def view(views: list) -> str:
        return monitor.format_views(views, stream.dead_letters(100), verbose=args.verbose,
                                    dead_letter_total=stream.dead_letter_count())

    try:
        if args.watch:
            from lerobot_pipeline.cli.watch import watch

            watch(lambda: view(refresh()), lambda: f"{time.strftime('%H:%M:%S')}  {settings.redacted_url()}",
                  args.interval, args.iterations)
            return 0
        views = refresh()
        print(view(views))
        return 1 if any(v.counts["failed"] or v.counts["stalled"] for v in views) else 0
    finally:
        stream.close()


def write_demo_redis_config(path: Path, sources: dict[str, Path], embedded_dir: Path, strategy: str) -> None:
    """A redis.yaml for the demo: the embedded server unless REDIS_URL names one."""
    data = {
        "redis": {"url": None, "host": None, "key_prefix": "lerobot_pipeline_demo"},
        "sources": {name: {"raw_root": str(root)} for name, root in sources.items()},
        "default_strategy": strategy,
        "sensor": {"interval_seconds": 2, "max_messages_per_tick": 100},
        "embedded": {"enabled": "auto", "port": 0, "dir": str(embedded_dir)},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def run_stream_demo(base: Path, episodes: int, seconds: float, strategy: str, timeout: float, keep: bool,
                    out=print) -> dict:
    """Sample data from two rigs → publish → daemon + sensor convert → dataset. Returns latencies."""
    import dagster as dg

    from lerobot_pipeline import monitor
    from lerobot_pipeline.cli.orchestrate import _pipeline, prepare_environment
    from lerobot_pipeline.core.dataset import read_provenance
    from lerobot_pipeline.daemon import DaemonProcess
    from lerobot_pipeline.sample_data import generate_dataset
    from lerobot_pipeline.streaming.publisher import publish_episode
    from lerobot_pipeline.streaming.settings import load_redis_settings

    base = base.resolve()
    work, home = prepare_environment(str(base / "work"), str(base / "dagster_home"))
    raw = base / "raw"
    sources = {"robot_1": raw / "robot_1", "robot_2": raw / "robot_2"}
    if not (raw / "robot_1").is_dir():
        out(f"writing {episodes} synthetic episode(s) per rig under {raw}")
        generate_dataset(raw, episodes=episodes, seconds=seconds, sources=list(sources), seed=7)
    redis_yaml = base / "redis.yaml"
    write_demo_redis_config(redis_yaml, sources, base / "redis", strategy)
    os.environ["LEROBOT_PIPELINE_REDIS_CONFIG"] = str(redis_yaml)
    os.environ.setdefault("LEROBOT_PIPELINE_STREAM_INTERVAL_SECONDS", "2")
    os.environ.setdefault("LEROBOT_PIPELINE_REFRESH_SECONDS", "2")
    settings = load_redis_settings(redis_yaml)
    instance = dg.DagsterInstance.get()  # storage already created by prepare_environment
    daemon = DaemonProcess(os.environ.copy(), base / "daemon.log").start()
    out(f"dagster-daemon started (log {base / 'daemon.log'}); Redis: {settings.redacted_url()}")
    published: dict[str, float] = {}
    arrived: dict[str, float] = {}
    try:
        for source in sources:
            for i in range(episodes):
                ep = f"episode_{i:04d}"
                publish_episode(ep, source=source, strategy=strategy, settings=settings)
                published[f"{source}.{ep}"] = time.time()
                out(f"published {source}/{ep} [{strategy}]")
        dataset = _pipeline(work).dataset_dir(strategy)
        _, stream = _stream(str(redis_yaml))
        deadline = time.monotonic() + timeout
        bar = Progress(len(published), "in the dataset")
        views = []
        while time.monotonic() < deadline:
            now = time.time()
            for row in read_provenance(dataset):
                if row["episode_key"] not in arrived:
                    arrived[row["episode_key"]] = now
                    bar.step(f"{row['episode_key']} after {now - published.get(row['episode_key'], now):.1f} s")
            views = monitor.collect(stream, instance)
            failed = sum(v.counts["failed"] for v in views)
            if len(arrived) + failed >= len(published) and all(
                    v.counts["pending"] + v.counts["running"] + v.counts["stalled"] == 0 for v in views):
                break
            if not daemon.alive():
                raise DatasetError(f"dagster-daemon exited; see {base / 'daemon.log'}")
            time.sleep(0.5)
        bar.close()
        out(monitor.format_views(views, stream.dead_letters(10)))
        stream.close()
    finally:
        if keep:
            out(f"daemon left running (pid {daemon.proc.pid})")
        else:
            daemon.stop()
            if settings.uses_embedded:
                from lerobot_pipeline.streaming.embedded import find_embedded

                handle = find_embedded(settings.embedded_dir())
                if handle is not None:
                    handle.stop()
    latencies = sorted(arrived[k] - published[k] for k in published if k in arrived)
    return {"published": len(published), "arrived": len(arrived), "latencies": latencies, "dataset": dataset,
            "home": home, "work": work, "redis_yaml": redis_yaml}


def cmd_stream_demo(args) -> int:
    res = run_stream_demo(Path(args.dir), args.episodes, args.seconds, args.strategy, args.timeout, args.keep_running)
    lat = res["latencies"]
    print(f"\n{res['arrived']}/{res['published']} published episodes are in the dataset {res['dataset']}")
    if lat:
        print(f"publish → in dataset: median {lat[len(lat) // 2]:.1f} s, max {lat[-1]:.1f} s")
    print(f"monitor: DAGSTER_HOME={res['home']} LEROBOT_PIPELINE_REDIS_CONFIG={res['redis_yaml']} "
          f"lerobot-pipeline monitor -v --watch --work-dir {res['work']}")
    return 0 if res["arrived"] == res["published"] else 1


def register(sub) -> None:
    p = sub.add_parser("publish", help="publish a finished episode to the Redis stream (recording rigs call this)",
                       description="Validates the message and checks that the episode's raw files are all there "
                       "before publishing. Python: from lerobot_pipeline import publish_episode.")
    p.add_argument("--episode", required=True, metavar="ID", help="episode id, e.g. episode_0007")
    p.add_argument("--source", help="rig name (default: $ROBOT_ID)")
    p.add_argument("--strategy", choices=STRATEGIES, help="default: the queue config's default_strategy")
    p.add_argument("--config", help="redis.yaml (default $LEROBOT_PIPELINE_REDIS_CONFIG, else built-in defaults)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="per-episode config override, e.g. sync.tolerance_ms=25")
    p.add_argument("--no-check-raw", action="store_true",
                   help="publish without checking the raw files (not recommended)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("monitor", help="per source: published, pending, running, completed, failed, last update",
                       description="Joins the Redis stream's records with the Dagster instance's run records, so "
                       "states are the runs' real states; a running conversion waiting on a pool slot or without "
                       "a new event "
                       "for --stall-seconds is shown as stalled. Exit code 1 if any conversion failed (and is not "
                       "cleared) or is stalled.")
    p.add_argument("-v", "--verbose", action="store_true", help="list failures with their errors and rejected messages")
    p.add_argument("--retry-failed", action="store_true", help="relaunch failed conversions through the run queue")
    p.add_argument("--clear-failed", action="store_true", help="acknowledge failed conversions (hide them)")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch (default 2)")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="with --watch: stop after N refreshes (default: until Ctrl-C)")
    p.add_argument("--stall-seconds", type=float, default=None, metavar="S",
                   help="flag a running conversion blocked or without progress for S seconds "
                        "(default $LEROBOT_PIPELINE_STALL_SECONDS, else 300)")
    p.add_argument("--config", help="redis.yaml (default $LEROBOT_PIPELINE_REDIS_CONFIG)")
    p.add_argument("--work-dir", help="as for register (DAGSTER_HOME defaults inside it)")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("stream-demo", help="the streaming path end to end: two rigs publish, the daemon converts",
                       description="Writes sample episodes for rigs robot_1 and robot_2, starts a dagster-daemon and "
                       "(if no Redis is configured) an embedded Redis, publishes every episode and shows the monitor "
                       "until all are in the dataset; prints publish-to-dataset latency.")
    p.add_argument("--dir", default=".demo_stream")
    p.add_argument("--episodes", type=int, default=3, help="episodes per rig")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--strategy", choices=STRATEGIES, default="chunking")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--keep-running", action="store_true", help="leave the daemon running afterwards")
    p.set_defaults(func=cmd_stream_demo)
