"""``lerobot-pipeline worker start``: a Celery worker that executes conversion steps (docs/deployment.md).

It checks the storage contract first (the raw roots, the work dir and the Dagster instance every step
needs), writes the worker's Celery config from the same settings the executor uses
(``lerobot_pipeline.defs.executors``), and then *becomes* ``dagster-celery worker start`` (exec), with
the venv's ``bin`` on PATH (dagster-celery runs ``celery`` as a subprocess) and DAGSTER_HOME exported.
Stop it with Ctrl-C or SIGTERM to its process group (celery's warm shutdown: the running step finishes).
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path

import yaml

from lerobot_pipeline.errors import PipelineError


class StorageContractError(PipelineError):
    """A worker that cannot see what every step needs: named, so the operator knows what to mount."""


def _readable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.R_OK | os.X_OK)


def check_storage_contract(work_dir: Path, raw_roots: dict[str, str], instance) -> list[str]:
    """What this host cannot see, one line each (empty: the contract holds). Nothing is created."""
    problems = []
    if not _readable_dir(work_dir):
        problems.append(f"work dir {work_dir} (LEROBOT_PIPELINE_WORK_DIR) is not a readable directory on this "
                        "host: mount the shared work dir at the same path as on the daemon host")
    else:
        probe = work_dir / f".worker_probe_{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        try:
            probe.write_text("probe\n")
            probe.unlink()
        except OSError as e:
            problems.append(f"work dir {work_dir} is not writable from this host: {e.strerror}")
    for source, root in sorted(raw_roots.items()):
        if not _readable_dir(Path(root)):
            problems.append(f"raw root of source '{source}' ({root}) is not a readable directory on this host: "
                            "mount the rigs' raw storage at the same path")
    try:
        instance.get_run_records(limit=1)
    except Exception as e:  # noqa: BLE001 - any storage error means the same thing to the operator
        problems.append(f"Dagster instance storage of DAGSTER_HOME={instance.root_directory} is unreachable: "
                        f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
    return problems


def _instance_is_sqlite(instance) -> bool:
    return "sqlite" in type(instance.run_storage).__name__.lower()


def write_worker_config(home: Path, settings, name: str) -> Path:
    """The ``execution.config`` YAML ``dagster-celery worker start -y`` reads (broker, backend, app config)."""
    path = home / "celery" / f"worker_{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"execution": {"config": settings.celery_config()}}, sort_keys=True))
    os.replace(tmp, path)
    return path


def worker_command(config_yaml: Path, name: str, queues: list[str], concurrency: int, loglevel: str) -> list[str]:
    exe = str(Path(sys.executable).with_name("dagster-celery"))
    cmd = [exe, "worker", "start", "-A", "dagster_celery.app", "-y", str(config_yaml), "-n", name, "-l", loglevel]
    # one comma-separated -q: dagster-celery passes one -Q per queue and celery 5 keeps only the last
    return cmd + ["-q", ",".join(queues), "--", f"--concurrency={concurrency}"]


def cmd_worker_start(args) -> int:
    import dagster as dg

    from lerobot_pipeline.cli.orchestrate import DEFAULT_WORK_DIR
    from lerobot_pipeline.definitions import pipeline_resource_from_env
    from lerobot_pipeline.defs.executors import EXECUTOR_ENV, executor_settings

    if args.work_dir:
        os.environ["LEROBOT_PIPELINE_WORK_DIR"] = str(Path(args.work_dir).resolve())
    os.environ.setdefault("LEROBOT_PIPELINE_WORK_DIR", str(Path(DEFAULT_WORK_DIR).resolve()))
    if args.dagster_home:
        os.environ["DAGSTER_HOME"] = str(Path(args.dagster_home).resolve())
    home = os.environ.get("DAGSTER_HOME")
    if not home or not (Path(home) / "dagster.yaml").is_file():
        raise StorageContractError(
            f"DAGSTER_HOME={home or '(unset)'} holds no dagster.yaml on this host: point it (or --dagster-home) "
            "at the deployment's instance config (configs/dagster_postgres.yaml when several hosts run Dagster)")
    settings = executor_settings({**os.environ, EXECUTOR_ENV: "celery"})
    pipeline = pipeline_resource_from_env()
    instance = dg.DagsterInstance.get()
    try:
        problems = check_storage_contract(Path(pipeline.work_dir), pipeline.sources().all(), instance)
        sqlite = _instance_is_sqlite(instance)
    finally:
        instance.dispose()
    if problems:
        raise StorageContractError("this worker cannot see the shared storage:\n  - " + "\n  - ".join(problems))
    queues = args.queue or list(settings.queues)
    name = args.name or f"lerobot-{socket.gethostname()}-{os.getpid()}"
    config_yaml = write_worker_config(Path(home), settings, name)
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # the celery pool imports the job by module name (lerobot_pipeline.definitions): the same code as here
    code_root = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p)
    print(f"worker {name}: queues {', '.join(queues)}, concurrency {args.concurrency}, broker "
          f"{_redacted(settings.broker)}, DAGSTER_HOME {home}, work dir {pipeline.work_dir}"
          + (" (SQLite instance: one host only; use PostgreSQL for several)" if sqlite else ""), flush=True)
    cmd = worker_command(config_yaml, name, queues, args.concurrency, args.loglevel)
    os.execv(cmd[0], cmd)
    return 0  # not reached


def _redacted(url: str | None) -> str:
    from lerobot_pipeline.streaming.settings import redact_url

    return redact_url(url) or "?"


def register(sub) -> None:
    p = sub.add_parser("worker", help="run a Celery worker that executes conversion steps (distributed executor)",
                       description="Celery workers for LEROBOT_PIPELINE_EXECUTOR=celery; see docs/deployment.md.")
    wsub = p.add_subparsers(dest="worker_command", metavar="ACTION", required=True)
    s = wsub.add_parser("start", help="check the shared storage, then start a dagster-celery worker (foreground)",
                        description="Checks that this host sees the raw roots, the work dir and the Dagster instance, "
                        "then execs `dagster-celery worker start` with the deployment's broker/backend "
                        "(LEROBOT_PIPELINE_CELERY_BROKER/_BACKEND, default the sensor's Redis).")
    s.add_argument("--queue", "-q", action="append", metavar="Q",
                   help="queue to consume (repeatable; default: 'dagster' and the video queue)")
    s.add_argument("--concurrency", "-c", type=int, default=1, help="steps at a time (default 1)")
    s.add_argument("--name", "-n", help="worker name (default lerobot-<host>-<pid>); '@<host>' is appended")
    s.add_argument("--loglevel", "-l", default="INFO")
    s.add_argument("--work-dir", help="the shared work dir (default $LEROBOT_PIPELINE_WORK_DIR)")
    s.add_argument("--dagster-home", help="the instance config dir (default $DAGSTER_HOME)")
    s.set_defaults(func=cmd_worker_start)



