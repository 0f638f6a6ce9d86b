"""Commands that need no Dagster: convert, validate, sample-data."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from lerobot_pipeline.cli.progress import Progress
from lerobot_pipeline.config import PipelineConfig, load_config
from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.camera_videos import prestart_video_pool, usable_cpus
from lerobot_pipeline.core.convert import PendingEpisode, start_episode
from lerobot_pipeline.core.dataset import DatasetSummary, assemble_dataset
from lerobot_pipeline.core.fsutil import remove_dead_staging, scratch_writes
from lerobot_pipeline.core.raw import discover_episodes
from lerobot_pipeline.errors import ConfigError, DatasetError, EpisodeRejected, RawDataError, WorkerCrashed
from lerobot_pipeline.ids import validate_episode_id

# named flags -> dotted config keys (anything else: --set KEY=VALUE)
FLAG_KEYS = {
    "strategy": "alignment.strategy", "chunk_size": "alignment.chunk_size", "window_ms": "alignment.window_ms",
    "tolerance_ms": "alignment.tolerance_ms", "codec": "video.codec", "crf": "video.crf", "gop": "video.gop",
    "task": "output.task", "output": "output.base_path", "input": "input.raw_root", "source": "input.source",
    "gap_policy": "sync.gap_policy", "format": "output.format",
}


def parse_set(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "--set expects KEY=VALUE, e.g. --set alignment.window_ms=30")
        out[key.strip()] = value
    return out


def config_from_args(args) -> PipelineConfig:
    overrides = parse_set(getattr(args, "set", None))
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value if not isinstance(value, str) else json.dumps(value)
    return load_config(args.config, overrides)


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="YAML config (configs/dual_arm_*.yaml); built-in defaults if omitted")
    p.add_argument("--strategy", choices=["nearest", "chunking", "window"], help="alignment strategy")
    p.add_argument("--chunk-size", type=int, help="chunking: master samples per action chunk")
    p.add_argument("--window-ms", type=float, help="window: half width of the averaging window (ms)")
    p.add_argument("--tolerance-ms", type=float, help="nearest: max distance to the nearest joint sample (ms)")
    p.add_argument("--gap-policy", choices=["fill", "split", "reject"],
                   help="frames without a valid partner inside an episode")
    p.add_argument("--codec", help="video encoder: h264 (default), libsvtav1, hevc, mpeg4, ... (any PyAV encoder)")
    p.add_argument("--crf", type=int, help="video quality (lower = better, larger)")
    p.add_argument("--gop", type=int, help="keyframe interval; small = fast random access in training (default 2)")
    p.add_argument("--task", help="task text stored with every frame (default: raw task directory name)")
    p.add_argument("--format", choices=["v2.1", "v3.0"],
                   help="LeRobot dataset format: v2.1 (default; one file per episode) or v3.0 (LeRobot >= 0.4)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set sync.tolerance_ms=25 (repeatable)")


@dataclass
class ConvertOutcome:
    converted: list[str] = field(default_factory=list)
    filtered: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    summary: DatasetSummary | None = None
    seconds: float = 0.0


def convert_dataset(
    raw_root: Path, output: Path, config: PipelineConfig, *, source: str = "local", episode_id: str | None = None,
    progress_stream=None, jobs: int | None = None,
) -> ConvertOutcome:
    """Convert the episodes under ``raw_root`` into one dataset at ``output`` (replaced atomically).

    ``jobs`` worker processes encode videos (default: one per usable core); episodes are
    pipelined, so the workers stay busy across episode boundaries.
    """
    t0 = time.monotonic()
    output = Path(output).resolve()
    if output.exists() and any(output.iterdir()) and not (output / F.PROVENANCE_PATH).is_file():
        raise DatasetError(f"refusing to replace {output}: it exists and is not a dataset written by lerobot_pipeline")
    if episode_id is not None:
        validate_episode_id(episode_id)
    workers = jobs or usable_cpus()
    if workers < 1:
        raise ConfigError("--jobs", f"expected at least 1 worker, got {workers}")
    pool = prestart_video_pool(workers)  # its processes start while the episodes are found and the first is read
    refs, skipped = discover_episodes(raw_root, config, source)
    if episode_id is not None:
        refs = [r for r in refs if r.episode_id == episode_id]
        if not refs:
            raise RawDataError(episode_id, f"no complete episode with this id under {raw_root}")
    outcome = ConvertOutcome(filtered=list(skipped))
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(output)  # left by a convert that was killed
    store = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-{os.getpid()}-", dir=output.parent))
    try:
        parts: list = []
        bar = Progress(len(refs), "convert", progress_stream)
        pending: deque[PendingEpisode] = deque()

        def finish_oldest() -> None:
            ep = pending.popleft()
            try:
                with scratch_writes():
                    staged = ep.finish()
            except (RawDataError, WorkerCrashed) as e:
                outcome.failed.append((ep.ref.key, str(e)))
                bar.step(f"{ep.ref.key}: FAILED")
                return
            parts.extend(staged)
            outcome.converted.append(ep.ref.key)
            bar.step(f"{ep.ref.key}: {sum(p.length for p in staged)} frames")

        # read + align + parquet run here while earlier episodes' videos encode on the pool; keeping one
        # episode more in flight than there are workers keeps every worker busy between episodes.
        # The staging store is deleted afterwards: its writes stay atomic but skip fsync (what the
        # dataset keeps of it is synced when it is placed there).
        for ref in refs:
            try:
                with scratch_writes():
                    pending.append(start_episode(ref, config, store, pool))
            except EpisodeRejected as e:
                outcome.filtered.append((ref.key, e.reason))
                bar.step(f"{ref.key}: filtered ({e.reason})")
            except RawDataError as e:
                outcome.failed.append((ref.key, str(e)))
                bar.step(f"{ref.key}: FAILED")
            while len(pending) > workers:
                finish_oldest()
        while pending:
            finish_oldest()
        if parts:
            outcome.summary = assemble_for_format(config)(parts, output, config, sync_sources=True)
    finally:
        for ep in pending:
            ep.videos.cancel()
        shutil.rmtree(store, ignore_errors=True)
    outcome.seconds = time.monotonic() - t0
    return outcome


def assemble_for_format(config: PipelineConfig):
    """The dataset assembler of ``output.format`` (same signature and summary for both)."""
    if config.output.format == "v3.0":
        from lerobot_pipeline.core.v30.writer import assemble_dataset_v30

        return assemble_dataset_v30
    return assemble_dataset  # both accept sync_sources: fsync what they link from a staging store


def print_outcome(o: ConvertOutcome, out=None) -> None:
    out = out or sys.stdout
    s = o.summary
    print("", file=out)
    if s:
        util = sum(r["utilisation"] for r in s.provenance) / max(len(s.provenance), 1)
        print(f"dataset:    {s.root}", file=out)
        print(f"converted:  {len(o.converted)} recording(s) -> {s.episodes} episode(s), {s.frames} frames "
              f"in {o.seconds:.1f} s ({s.frames / max(o.seconds, 1e-9):.0f} frames/s)", file=out)
        print(f"utilisation: {util:.1%} of joint samples on average", file=out)
    for key, reason in o.filtered:
        print(f"filtered:   {key}: {reason}", file=out)
    for key, reason in o.failed:
        print(f"FAILED:     {key}: {reason}", file=out)


def cmd_convert(args) -> int:
    config = config_from_args(args)
    raw_root = config.input.raw_root
    if not raw_root:
        raise ConfigError("input.raw_root", "no raw data given: pass --input RAW_ROOT")
    outcome = convert_dataset(Path(raw_root), Path(config.output.base_path), config,
                              source=config.input.source, episode_id=args.episode_id, jobs=args.jobs)
    print_outcome(outcome)
    if outcome.summary:
        print(f"validate:   passed the {config.output.format} conformance check before it was swapped in")
    if outcome.failed:
        return 1
    if not outcome.summary:
        print("error: no episode was converted", file=sys.stderr)
        return 1
    return 0


def cmd_validate(args) -> int:
    from lerobot_pipeline.core.validate import validate_dataset

    report = validate_dataset(args.dataset, decode_videos=args.decode)
    print(report.format())
    return 0 if report.ok else 1


def cmd_sample_data(args) -> int:
    from lerobot_pipeline.sample_data import generate_dataset

    try:
        w, h = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError("--size", f"expected WIDTHxHEIGHT such as 224x224, got {args.size!r}") from None
    sources = [s for s in args.sources.split(",") if s] if args.sources else None
    total = args.episodes * (len(sources) if sources else 1)
    bar = Progress(total, "sample-data")
    dirs = generate_dataset(Path(args.out), episodes=args.episodes, seconds=args.seconds, size=(w, h),
                            sources=sources, seed=args.seed, task=args.task,
                            progress=lambda i, n: bar.step(f"episode {i}/{n}"))
    print(f"wrote {len(dirs)} raw episode(s) under {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert raw recordings into one LeRobot dataset, v2.1 or --format v3.0 (no Dagster needed)",
        description="Convert all (or one) raw episodes under RAW_ROOT into one LeRobot v2.1 (or v3.0) dataset "
        "at --output. "
        "The output directory is built aside and swapped in whole; episodes a policy refuses are listed as "
        "'filtered' with the reason, unreadable ones as FAILED (exit code 1).",
        epilog="example: lerobot-pipeline convert --config configs/dual_arm_window.yaml --input /data/raw "
        "--output /data/ds_window --window-ms 15",
    )
    add_config_flags(p)
    p.add_argument("--input", metavar="RAW_ROOT", help="raw root containing joints/ and images/")
    p.add_argument("--output", metavar="DIR", help="dataset directory to (re)create")
    p.add_argument("--source", help="source (rig) name recorded in provenance (default 'local')")
    p.add_argument("--episode-id", metavar="ID", help="convert only this episode")
    p.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="worker processes encoding videos (default: one per core this process may use); "
                   "episodes are pipelined so every worker stays busy")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "validate", help="check a LeRobot v2.1 or v3.0 dataset (including what the loader leaves unchecked)",
        description="Check meta/ totals, episode lengths vs parquet rows vs video frame counts, timestamps = "
        "frame_index/fps, contiguous indices, stats shapes, and video headers. Exit code 1 if anything is wrong.",
    )
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--decode", action="store_true", help="also decode every video frame and check its timestamp")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "sample-data", help="write realistic synthetic raw episodes (for the demo, tests and benchmarks)",
        description="Cameras at 25/25/30 Hz with jitter and drops, four arms on independent ~250 Hz clocks, "
        "NaNs in the master arms, moving image content; in the exact raw layout.",
    )
    p.add_argument("out", metavar="OUT")
    p.add_argument("--episodes", type=int, default=3, help="episodes per source (default 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each episode (default 5)")
    p.add_argument("--size", default="224x224", help="image size WIDTHxHEIGHT (default 224x224)")
    p.add_argument("--sources", help="comma-separated rig names: one raw root per source under OUT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="pick_place", help="task directory name (default pick_place)")
    p.set_defaults(func=cmd_sample_data)
