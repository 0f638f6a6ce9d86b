"""Throwaway local services for the multi-worker test and benchmark: PostgreSQL (optionally behind PgBouncer) and
Celery worker processes.

Everything binds 127.0.0.1 (PostgreSQL also its own socket dir), lives in a temporary directory and is
stopped by the context managers, by pid. Redis comes from ``streaming.embedded.start_embedded``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} not found (install postgresql)")
    return found[-1]


@contextmanager
def postgres_cluster(user: str = "dagster", db: str = "dagster") -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL database; yields the DAGSTER_PG_* variables that reach it.

    When DAGSTER_PG_HOST is configured, a fresh database on that server (dropped afterwards); otherwise a
    new cluster on 127.0.0.1:<free port> with trust auth in a temporary directory. initdb refuses to run as
    root: as root the cluster belongs to the ``postgres`` system user.
    """
    if os.environ.get("DAGSTER_PG_HOST"):
        with _fresh_database({k: os.environ.get(k, "") for k in PG_ENV}) as env:
            yield env
        return
    as_user = []
    tmp = Path(tempfile.mkdtemp(prefix="lerobot_pg_"))
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(tmp)
            raise RuntimeError("running as root, and initdb needs a non-root owner: create the 'postgres' "
                               "user or configure a server with DAGSTER_PG_HOST/PORT/USER/PASSWORD") from None
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = tmp / "data", free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    started = False
    try:
        run(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync", "-E", "UTF8")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off -c max_connections=200"
        run(_pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "pg.log"), "-w", "-t", "60", "start")
        started = True
        run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db)
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": user,
               "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": db}
    finally:
        if started:
            subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def pgbouncer_front(pg_env: dict[str, str], pool_size: int = 20) -> Iterator[dict[str, str]]:
    """PgBouncer in front of the PostgreSQL server ``pg_env`` reaches; yields the DAGSTER_PG_* variables that reach it
    through the pooler (127.0.0.1:<free port>).

    Dagster's PostgreSQL storage opens a connection per query (SQLAlchemy ``NullPool``), and PostgreSQL forks a
    backend for each: in a Celery backfill that was ~60 connections a second and a sixth of the machine's CPU
    (bench/bench_workers.py). The pooler keeps ``pool_size`` server connections open and hands them to the
    short-lived client connections (session pooling: a client keeps its server connection until it disconnects,
    so nothing Dagster does inside one connection can see another client's state). Trust auth, for the local
    cluster only; a deployment points it at its server with its own auth (docs/deployment.md).
    """
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(exe):
        raise FileNotFoundError("pgbouncer not found (install the pgbouncer package)")
    as_user = []
    tmp = Path(tempfile.mkdtemp(prefix="lerobot_pgbouncer_"))
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    user = pg_env["DAGSTER_PG_USER"]
    (tmp / "users.txt").write_text(f'"{user}" ""\n')
    (tmp / "pgbouncer.ini").write_text(f"""[databases]
{pg_env["DAGSTER_PG_DB"]} = host={pg_env["DAGSTER_PG_HOST"]} port={pg_env["DAGSTER_PG_PORT"]}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp / "users.txt"}
pool_mode = session
default_pool_size = {pool_size}
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits,options
logfile = {tmp / "pgbouncer.log"}
""")
    if as_user:
        for f in tmp.iterdir():
            os.chown(f, pw.pw_uid, pw.pw_gid)
    proc = subprocess.Popen([*as_user, exe, str(tmp / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (tmp / "pgbouncer.log").read_text() if (tmp / "pgbouncer.log").exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {log[-2000:]}") from None
                time.sleep(0.1)
        yield {**pg_env, "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port)}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def write_instance_yaml(home: Path, max_runs: int, video_slots: int, warm_launcher: bool = False) -> Path:
    """configs/dagster_postgres.yaml into ``home``, runs in flight and the video pool sized for the pool;
    ``warm_launcher``: with configs/dagster.yaml's ``run_launcher`` block (WarmRunLauncher) copied over."""
    text = (REPO_ROOT / "configs" / "dagster_postgres.yaml").read_text()
    text = text.replace("max_concurrent_runs: 8", f"max_concurrent_runs: {max_runs}")
    text = text.replace("default_limit: 4", f"default_limit: {video_slots}")
    if warm_launcher:
        import re

        one_host = (REPO_ROOT / "configs" / "dagster.yaml").read_text()
        text += re.search(r"^run_launcher:.*\n(^  .*\n)+", one_host, flags=re.M).group(0)
    Path(home).mkdir(parents=True, exist_ok=True)
    (Path(home) / "dagster.yaml").write_text(text)
    return Path(home) / "dagster.yaml"


def deployment_env(redis_url: str, pg_env: dict[str, str], redis_yaml: Path) -> dict[str, str]:
    """What every process of a local Celery deployment shares (besides DAGSTER_HOME and the work dir)."""
    Path(redis_yaml).write_text(f"redis: {{url: '{redis_url.rsplit('/', 1)[0]}/1'}}\n")  # stream: db 1
    return {**pg_env, "LEROBOT_PIPELINE_EXECUTOR": "celery", "LEROBOT_PIPELINE_CELERY_BROKER": redis_url,
            "LEROBOT_PIPELINE_REDIS_CONFIG": str(redis_yaml)}


@contextmanager
def _fresh_database(env: dict[str, str]) -> Iterator[dict[str, str]]:
    import uuid

    import psycopg2

    name = f"lerobot_test_{uuid.uuid4().hex[:10]}"
    connect = dict(host=env["DAGSTER_PG_HOST"], port=int(env.get("DAGSTER_PG_PORT") or 5432),
                   user=env["DAGSTER_PG_USER"], password=env.get("DAGSTER_PG_PASSWORD", ""),
                   dbname=env.get("DAGSTER_PG_DB") or "postgres")

    def admin(sql: str) -> None:
        conn = psycopg2.connect(**connect)
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield {**env, "DAGSTER_PG_DB": name}
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class WorkerProcess:
    """``lerobot-pipeline worker start`` in its own process group (wrapper, celery main, pool children)."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, concurrency: int = 1,
                 cpus: set[int] | None = None):
        """``cpus``: pin the worker (and every process it starts) to these cores, as if it had a machine of that
        size to itself."""
        self.name, self.env, self.log_path, self.concurrency = name, env, Path(log_path), concurrency
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None

    @property
    def hostname(self) -> str:
        """The Celery node name the worker reports (dagster-celery appends '@<host>')."""
        return f"{self.name}@{socket.gethostname()}"

    def start(self) -> WorkerProcess:
        exe = str(Path(sys.executable).with_name("lerobot-pipeline"))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [exe, "worker", "start", "-n", self.name, "-c", str(self.concurrency)], env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None)
        return self

    def ready(self) -> bool:
        return f"{self.hostname} ready" in self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: int) -> bool:
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def _group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._signal(0):
                return True
            self.proc.poll()
            time.sleep(0.2)
        return False

    def kill(self) -> None:
        """Abrupt death of the whole worker (as a host crash): SIGKILL to its process group."""
        if self.proc is not None:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self._group_gone(10)

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever of the group is left."""
        if self.proc is None:
            return
        if self._signal(signal.SIGTERM) and not self._group_gone(timeout):
            self._signal(signal.SIGKILL)
            self._group_gone(10)
        self.proc.poll()
        self.proc = None
