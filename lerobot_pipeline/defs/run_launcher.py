"""A run launcher that hands each run to a worker process which has already imported Dagster and the code
location (``run_launcher`` in configs/dagster.yaml).

Dagster's DefaultRunLauncher asks the code server to start each run in a freshly *spawned* Python process,
which imports dagster and the code location again before the first step: ~2 s per run, longer than the
conversion of a short recording. ``WarmRunLauncher`` keeps one spare worker (defs/run_worker.py) that has
done that already; ``launch_run`` gives it the run id; when a run's worker exits, the next spare is started.
Each worker executes one run, exactly as ``dagster api execute_run`` does, and exits.

Nothing is lost or run twice: a run belongs to a worker only once the worker answered ``ack`` for it. A spare
found dead, or dying before its ack, is replaced by a fresh (cold) worker; one that does not answer in
``ack_timeout_seconds`` is killed (and waited for) before the fresh one gets the run. Before the hand-off the run
is tagged with the worker's pid and host, after the ack an engine event names the pid, which is what orphaned_run_sensor
(defs/sensors.py) and this launcher's ``check_run_worker_health`` (Dagster's run monitoring) judge.
``terminate`` sends SIGTERM to the worker, which Dagster's interrupt handling turns into a cancelled run.
The first run after the daemon starts is cold (Dagster builds the launcher lazily, at the first launch), and
so is a run launched while every spare is taken (``spares``, default 2: the run queue's concurrency).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from dagster import Field, IntSource, StringSource, _check as check
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from lerobot_pipeline.defs.run_worker import CONTROL_FD_ENV, INSTANCE_REF_ENV, WARM_MODULE_ENV

WORKER_MODULE = "lerobot_pipeline.defs.run_worker"
PID_TAG = "lerobot_pipeline/run_worker_pid"
HOST_TAG = "lerobot_pipeline/run_host"  # also on in-process runs; orphaned_run_sensor reads both (defs/sensors.py)


class _Worker:
    def __init__(self, instance_ref: str, module: str, executable: str, on_exit=None):
        read_fd, write_fd = os.pipe()
        env = os.environ | {CONTROL_FD_ENV: str(write_fd), INSTANCE_REF_ENV: instance_ref, WARM_MODULE_ENV: module}
        self.executable = executable
        self.started = time.time()
        try:
            self.proc = subprocess.Popen([executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE, env=env,
                                         pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        self.control = read_fd
        self.owns_run = False
        self._on_exit = on_exit
        threading.Thread(target=self._reap, daemon=True, name=f"reap-{self.proc.pid}").start()

    def _reap(self) -> None:
        self.proc.wait()
        if self.owns_run and self._on_exit is not None:
            self._on_exit(self.executable)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def hand(self, run_id: str, timeout: float) -> bool:
        """Give the worker ``run_id``; True once it acknowledged it. False: the run is certainly not its
        (it died, or it was killed here after ``timeout``). ``self.was_ready``: it had finished importing."""
        self.was_ready = select.select([self.control], [], [], 0)[0] != []
        try:
            check.not_none(self.proc.stdin).write(f"{run_id}\n".encode())
            self.proc.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError, ValueError):
            self.discard()
            return False
        deadline, answer = time.monotonic() + timeout, b""
        while not answer.endswith(b"\n") or answer.endswith(b"ready\n"):  # "ready" first if it was importing
            if time.monotonic() >= deadline:
                break
            ready, _, _ = select.select([self.control], [], [], 0.2)
            if ready:
                chunk = os.read(self.control, 256)
                if not chunk:  # the worker closed it or died without answering
                    break
                answer += chunk
        self._close_control()
        if f"ack {run_id}\n".encode() in answer:
            self.owns_run = True
            return True
        self.discard()
        return False

    def discard(self) -> None:
        """Make sure the worker is gone: it never owned a run, so nothing is interrupted."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self._close_control()

    def _close_control(self) -> None:
        if self.control >= 0:
            os.close(self.control)
            self.control = -1


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches every run in a pre-started worker process of this host (see the module docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, module: str = "lerobot_pipeline.definitions",
                 ack_timeout_seconds: int = 180, spares: int = 2):
        self._inst_data = inst_data
        self.module, self.ack_timeout, self.spares = module, ack_timeout_seconds, max(0, spares)
        self._lock = threading.Lock()
        self._spare: list[_Worker] = []
        self._disposed = False
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {
            "module": Field(StringSource, is_required=False, default_value="lerobot_pipeline.definitions",
                            description="code location module the spare worker imports before it has a run"),
            "ack_timeout_seconds": Field(IntSource, is_required=False, default_value=180),
            "spares": Field(IntSource, is_required=False, default_value=2,
                            description="pre-started workers kept (0: every run starts cold)"),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> WarmRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    # ------------------------------------------------------------------ launching

    def _new_worker(self, executable: str) -> _Worker:
        return _Worker(serialize_value(self._instance.get_ref()), self.module, executable, self._refill)

    def _refill(self, executable: str) -> None:
        """A run worker exited: pre-start spares now, while this host has the CPU to spare (a spare started
        beside a running conversion would slow it by as much as it saves). Only a run's end refills, so a
        worker that cannot even import the code location is not restarted in a loop."""
        with self._lock:
            if self._disposed:
                return
            while len(self._spare) < self.spares:
                self._spare.append(self._new_worker(executable))

    def _take_spare(self, executable: str) -> _Worker | None:
        while self._spare:
            worker = self._spare.pop(0)
            if worker.alive() and worker.executable == executable:
                return worker
            worker.discard()
        return None

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = check.not_none(run.job_code_origin, "a run without a code origin cannot be launched")
        executable = origin.executable_path or sys.executable
        with self._lock:
            worker = self._take_spare(executable)
            warm = "pre-started" if worker is not None else "newly started"
            if worker is not None and self._hand(worker, run.run_id):
                warm += ", ready" if worker.was_ready else ", still importing"
            else:
                warm = "newly started"
                worker = self._new_worker(executable)
                if not self._hand(worker, run.run_id):
                    raise DagsterLaunchFailedError(f"run worker for {run.run_id} exited before taking the run "
                                                   f"(exit code {worker.proc.returncode}); see the daemon log")
        self._instance.report_engine_event(
            f"Run handed to run worker (pid: {worker.pid}; {warm}).",
            run, EngineEventData(metadata={"pid": str(worker.pid)}), cls=self.__class__)

    def _hand(self, worker: _Worker, run_id: str) -> bool:
        """Tag the run with ``worker``'s pid, then hand it over. The tag comes first: once acknowledged, the
        worker starts the run at once, and run monitoring judges a STARTED run by this tag. A run retry
        inherits its failed parent's tags, dead worker's pid included, so a tag written after the hand-off
        could let monitoring see a live run with a dead pid, fail it and retry it while it goes on to succeed
        (two conversions of one episode)."""
        self._instance.add_run_tags(run_id, {PID_TAG: str(worker.pid), HOST_TAG: socket.gethostname()})
        return worker.hand(run_id, self.ack_timeout)

    # ------------------------------------------------------------------ the worker of a run

    def _worker_pid(self, run) -> int | None:
        """The run's worker pid if it is of this host (None: not launched here, or not yet handed)."""
        pid = run.tags.get(PID_TAG)
        if pid is None or run.tags.get(HOST_TAG) != socket.gethostname():
            return None
        return int(pid)

    @staticmethod
    def _is_worker(pid: int) -> bool:
        import psutil

        try:
            proc = psutil.Process(pid)
            return proc.status() != psutil.STATUS_ZOMBIE and WORKER_MODULE in " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        pid = self._worker_pid(run)
        if pid is None or not self._is_worker(pid):
            self._instance.report_engine_event("No live run worker of this run on this host to terminate.",
                                               run, cls=self.__class__)
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        pid = self._worker_pid(run)
        if pid is None:  # another host's or another launcher's run: not ours to judge
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not launched by this host's WarmRunLauncher")
        if self._is_worker(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        latest = self._instance.get_run_by_id(run.run_id)
        if latest is not None and latest.is_finished:
            return CheckRunHealthResult(WorkerStatus.SUCCESS, run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker (pid {pid} on {socket.gethostname()}) is gone",
                                    run_worker_id=str(pid))

    def dispose(self) -> None:
        with self._lock:
            self._disposed = True
            for worker in self._spare:
                worker.discard()
            self._spare = []
