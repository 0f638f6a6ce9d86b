"""Dagster-facing commands: register episodes, materialise in-process, launch backfills, the demo."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from lerobot_pipeline.cli.progress import Progress
from lerobot_pipeline.core.fsutil import write_json_atomic
from lerobot_pipeline.errors import DatasetError
from lerobot_pipeline.ids import STRATEGIES, validate_source
from lerobot_pipeline.shipped import dagster_template, workspace_file

DEFAULT_WORK_DIR = ".lerobot_pipeline"
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# ----------------------------------------------------------------------------- environment


def prepare_environment(work_dir: str | None, dagster_home: str | None = None) -> tuple[Path, Path]:
    """Resolve the work dir and DAGSTER_HOME (created from the template if new) and export both."""
    work = Path(work_dir or os.environ.get("LEROBOT_PIPELINE_WORK_DIR") or DEFAULT_WORK_DIR).resolve()
    home = Path(dagster_home or os.environ.get("DAGSTER_HOME") or (work / "dagster_home")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(dagster_template(), home / "dagster.yaml")
    os.environ["LEROBOT_PIPELINE_WORK_DIR"] = str(work)
    os.environ["DAGSTER_HOME"] = str(home)
    # create the SQLite storage now, in one process: a daemon or webserver creating it at the same
    # moment as this CLI corrupts the schema bookkeeping ("alembic_version has more than one head")
    _instance().get_run_records(limit=1)
    return work, home


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get()


def _pipeline(work: Path):
    from lerobot_pipeline.definitions import pipeline_resource_from_env

    os.environ["LEROBOT_PIPELINE_WORK_DIR"] = str(work)
    return pipeline_resource_from_env()


def registered_keys(instance, source: str | None = None) -> list[str]:
    from lerobot_pipeline.defs.partitions import EPISODE_DIM

    keys = instance.get_dynamic_partitions(EPISODE_DIM)
    return [k for k in keys if source is None or k.split(".", 1)[0] == source]


# ----------------------------------------------------------------------------- operations (used by tests too)


def register_episodes(instance, work: Path, raw_root: Path, source: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Record ``raw_root`` as the source's root and add its complete episodes as partitions."""
    from lerobot_pipeline.config import load_config
    from lerobot_pipeline.core.raw import discover_episodes
    from lerobot_pipeline.defs.partitions import EPISODE_DIM
    from lerobot_pipeline.sources import SourceRegistry

    validate_source(source)
    refs, skipped = discover_episodes(raw_root, load_config(), source)
    SourceRegistry(work).register(source, raw_root)
    existing = set(instance.get_dynamic_partitions(EPISODE_DIM))
    new = [r.key for r in refs if r.key not in existing]
    if new:
        instance.add_dynamic_partitions(EPISODE_DIM, new)
    return [r.key for r in refs], skipped


def materialize_in_process(instance, work: Path, strategy: str, keys: list[str], progress=None) -> dict:
    """Run convert_episode_job for each key, then dataset_job, in this process (no daemon needed)."""
    from lerobot_pipeline.definitions import build_definitions
    from lerobot_pipeline.defs.partitions import multi_key
    from lerobot_pipeline.defs.sensors import fail_orphaned_runs

    # runs of an earlier CLI killed mid-step (no daemon watches in-process runs): failed, their pool slots
    # freed, or this run's video step would wait for the dead run's slot for ever
    for run, reason, freed in fail_orphaned_runs(instance):
        print(f"run {run.run_id[:8]} ({run.tags.get('dagster/partition', run.job_name)}): {reason}"
              + (f"; freed {freed} pool slot(s)" if freed else ""))
    # one dataset assembly at the end, not one per converted episode
    defs = build_definitions(_pipeline(work).replace(assemble_after_convert=False))
    convert = defs.resolve_job_def("convert_episode_job")
    failed = {}
    for key in keys:
        result = convert.execute_in_process(instance=instance, partition_key=str(multi_key(key, strategy)),
                                            raise_on_error=False, run_config=QUIET_RUN_CONFIG,
                                            tags=_host_tags())
        if not result.success:
            failed[key] = _failure_message(result)
        if progress:
            progress(key, result.success)
    dataset = defs.resolve_job_def("dataset_job").execute_in_process(
        instance=instance, partition_key=strategy, raise_on_error=False, run_config=QUIET_RUN_CONFIG,
        tags=_host_tags())
    return {"failed": failed, "dataset_ok": dataset.success,
            "dataset_error": None if dataset.success else _failure_message(dataset)}


def _host_tags() -> dict[str, str]:
    """In-process runs live in this CLI's process: the orphan sensor judges their pid only on this host."""
    import socket

    from lerobot_pipeline.defs.run_launcher import HOST_TAG

    return {HOST_TAG: socket.gethostname()}


def _failure_message(result) -> str:
    from lerobot_pipeline.defs.jobs import step_failure_text

    for event in result.all_events:
        if event.is_step_failure:
            return step_failure_text(event) or "step failed"
    return "run failed"


def launch_backfill(instance, work: Path, strategy: str, keys: list[str], tag: str, direct: bool = True) -> int:
    """Request a backfill: one run per batch of partitions. Writes the request for backfill_sensor (run by
    the daemon), then, if ``direct``, queues the runs itself at once (defs/backfill_submit.py; the sensor
    fills in any it could not). Returns the number of runs it will launch."""
    from lerobot_pipeline.defs.backfill_sensor import batch_run_request, parallel_steps, plan_batches
    from lerobot_pipeline.defs.episode_assets import backfill_batch
    from lerobot_pipeline.defs.partitions import EPISODE_DIM

    if not keys:
        raise DatasetError("no registered episodes to backfill: run `lerobot-pipeline register` first")
    batches = plan_batches(instance.get_dynamic_partitions(EPISODE_DIM), keys, backfill_batch(),
                           parallel_steps(instance))
    if direct:
        from lerobot_pipeline.defs.backfill_submit import can_submit, submit_backfill_runs

        direct = can_submit(instance)
    path = _pipeline(work).backfill_dir / f"{tag}.json"
    request = {"strategy": strategy, "batches": batches, "episodes": len(keys), "created": time.time(),
               "direct": direct}
    write_json_atomic(path, request)
    if direct:
        try:
            submit_backfill_runs(instance, [batch_run_request(tag, n, strategy, first, last)
                                            for n, (first, last, _) in enumerate(batches)], request["created"])
        except Exception as e:  # noqa: BLE001 - whatever broke, the daemon's sensor can still do it
            write_json_atomic(path, request | {"direct": False})
            print(f"warning: could not queue the runs directly ({type(e).__name__}: {e}); "
                  "backfill_sensor will launch them")
    return len(batches)


def wait_for_backfill(instance, tag: str, expected_runs: int, timeout: float, progress=None) -> dict:
    """Poll the backfill's runs until each batch's newest attempt has ended (a run retry is a new run with the
    same tags). ``progress(finished, expected)``."""
    import dagster as dg

    from lerobot_pipeline.defs.backfill_sensor import BACKFILL_TAG

    done_states = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout
    while True:
        runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: tag}))
        latest = {}
        for r in sorted(runs, key=lambda r: int(r.tags.get("dagster/retry_number", "0"))):
            latest[r.tags.get("dagster/run_key") or r.tags.get("dagster/partition") or r.run_id] = r
        finished = [r for r in latest.values() if r.status in done_states]
        if progress:
            progress(len(finished), expected_runs)
        if len(latest) >= expected_runs and len(finished) == len(latest):
            ok = sum(r.status == dg.DagsterRunStatus.SUCCESS for r in latest.values())
            return {"runs": len(runs), "succeeded": ok, "failed": len(latest) - ok}
        if time.monotonic() > deadline:
            return {"runs": len(runs), "succeeded": None, "failed": None, "timeout": True}
        time.sleep(0.25)


# ----------------------------------------------------------------------------- commands


def cmd_register(args) -> int:
    work, _ = prepare_environment(args.work_dir)
    keys, skipped = register_episodes(_instance(), work, Path(args.raw_root), args.source)
    print(f"registered {len(keys)} episode partition(s) of source '{args.source}' from {args.raw_root}")
    for name, reason in skipped:
        print(f"  skipped {name}: {reason}")
    return 0


def cmd_materialize(args) -> int:
    work, home = prepare_environment(args.work_dir)
    instance = _instance()
    keys = [args.episode] if args.episode else registered_keys(instance, args.source)
    if not keys:
        raise DatasetError("no registered episodes: run `lerobot-pipeline register` first")
    bar = Progress(len(keys), f"materialize {args.strategy}")
    out = materialize_in_process(instance, work, args.strategy, keys,
                                 progress=lambda k, ok: bar.step(f"{k}: {'ok' if ok else 'FAILED'}"))
    return _report_materialize(out, _pipeline(work).dataset_dir(args.strategy))


def _report_materialize(out: dict, dataset_dir: Path) -> int:
    for key, msg in out["failed"].items():
        print(f"FAILED: {key}: {msg}")
    if out["dataset_ok"]:
        print(f"dataset: {dataset_dir}")
    else:
        print(f"dataset NOT updated: {out['dataset_error']}")
    return 0 if out["dataset_ok"] and not out["failed"] else 1


def cmd_backfill(args) -> int:
    work, home = prepare_environment(args.work_dir)
    instance = _instance()
    keys = registered_keys(instance, args.source)
    tag = uuid.uuid4().hex[:12]
    t0 = time.monotonic()
    n_runs = launch_backfill(instance, work, args.strategy, keys, tag)
    print(f"backfill {tag}: {len(keys)} episode(s) × {args.strategy} in {n_runs} run(s); the "
          "daemon of `dagster dev` runs them (queued now; backfill_sensor fills in any not queued) and each run "
          "updates the dataset when it ends. "
          f"Runs tagged lerobot_pipeline/backfill={tag} in the UI")
    if not args.wait:
        return 0
    bar = Progress(n_runs, "backfill")
    last = [0]

    def show(done, total):
        while last[0] < done:
            last[0] += 1
            bar.step(f"{done}/{total} runs finished")

    res = wait_for_backfill(instance, tag, n_runs, args.timeout, show)
    print(f"runs launched: {res['runs']}, succeeded: {res['succeeded']}, failed: {res['failed']}, "
          f"wall time {time.monotonic() - t0:.1f} s" + (" (TIMED OUT)" if res.get("timeout") else ""))
    return 0 if res.get("failed") == 0 else 1


def cmd_demo(args) -> int:
    from lerobot_pipeline.core.validate import validate_dataset
    from lerobot_pipeline.sample_data import generate_dataset

    base = Path(args.dir).resolve()
    work, home = prepare_environment(str(base / "work"), str(base / "dagster_home"))
    raw = base / "raw"
    if not (raw / "joints").is_dir():
        print(f"[1/4] writing {args.episodes} synthetic raw episodes to {raw}")
        generate_dataset(raw, episodes=args.episodes, seconds=args.seconds, seed=args.seed)
    else:
        print(f"[1/4] reusing raw episodes in {raw}")
    instance = _instance()
    keys, _ = register_episodes(instance, work, raw, args.source)
    print(f"[2/4] registered {len(keys)} episode partitions in the Dagster instance at {home}")
    bar = Progress(len(keys), f"[3/4] materialising ({args.strategy})")
    out = materialize_in_process(instance, work, args.strategy, keys,
                                 progress=lambda k, ok: bar.step(f"{k}: {'ok' if ok else 'FAILED'}"))
    dataset = _pipeline(work).dataset_dir(args.strategy)
    rc = _report_materialize(out, dataset)
    if out["dataset_ok"]:
        report = validate_dataset(dataset)
        print(f"[4/4] validate: {report.format().splitlines()[-1]}")
        rc = rc or (0 if report.ok else 1)
    print(
        "\nOpen the Dagster UI on this instance:\n"
        f"  DAGSTER_HOME={home} LEROBOT_PIPELINE_WORK_DIR={work} dagster dev -w {workspace_file()}\n"
        "  then http://127.0.0.1:3000 → Assets (lineage, partitions, quality metadata), Runs, Backfills"
    )
    return rc


def register(sub) -> None:
    def common(p):
        p.add_argument("--work-dir", help="episode store, datasets and source registry "
                       "(default $LEROBOT_PIPELINE_WORK_DIR or ./.lerobot_pipeline); DAGSTER_HOME defaults inside it")

    p = sub.add_parser("register", help="add the episodes found under a raw root as Dagster partitions",
                       description="Scan RAW_ROOT for complete episodes and add them as dynamic partitions "
                       "'<source>.<episode_id>'; the source's raw root is remembered for the assets.")
    p.add_argument("--raw-root", required=True, metavar="DIR")
    p.add_argument("--source", default="local", help="rig name (default 'local')")
    common(p)
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("materialize", help="convert registered episodes through Dagster in this process (no daemon)",
                       description="Runs convert_episode_job for every registered episode (or one) with STRATEGY, "
                       "then assembles the dataset, in-process against $DAGSTER_HOME; the runs appear in the UI.")
    p.add_argument("--strategy", choices=STRATEGIES, default="chunking")
    p.add_argument("--source", help="only this source's episodes")
    p.add_argument("--episode", metavar="KEY", help="only this partition key, e.g. local.episode_0003")
    common(p)
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser("backfill", help="launch a real Dagster backfill of all registered episodes × one strategy",
                       description="Submits a job backfill of convert_episode_job (executed by the daemon of a "
                       "running `dagster dev`); dataset_refresh_sensor then assembles the dataset. --wait polls the "
                       "runs and reports.")
    p.add_argument("--strategy", choices=STRATEGIES, required=True)
    p.add_argument("--source", help="only this source's episodes")
    p.add_argument("--wait", action="store_true", help="wait for every run to finish and report")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most (default 3600)")
    common(p)
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("demo", help="the main job on embedded defaults: sample data → Dagster → validated dataset",
                       description="Writes synthetic raw episodes, registers them, materialises every episode "
                       "and the dataset through Dagster in-process (SQLite instance in DIR), validates it and "
                       "prints how to open the UI.")
    p.add_argument("--dir", default=".demo", help="where raw data, work dir and DAGSTER_HOME go (default ./.demo)")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--strategy", choices=STRATEGIES, default="chunking")
    p.add_argument("--source", default="local")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
