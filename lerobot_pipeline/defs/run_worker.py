"""A run worker that starts before it has a run (``python -m lerobot_pipeline.defs.run_worker``).

Started by ``WarmRunLauncher`` (defs/run_launcher.py): it imports Dagster and the code location, opens the
instance, says ``ready`` on its control pipe, then waits on stdin for one line, the id of the run it is to
execute. It answers ``ack`` on its control pipe (the launcher's proof that the run is now this process's),
executes the run exactly as ``dagster api execute_run`` does (same function, same interrupt handling:
SIGTERM → SIGINT → Dagster's run termination, repeated while the run stays CANCELING) and exits: one run
per process. If the code location's source files changed on disk since it imported them, it first
re-executes itself (same pid) to run on fresh imports. End of stdin without a run (the launcher went away or let
the spare go) ends it without touching anything.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time

CONTROL_FD_ENV = "LEROBOT_PIPELINE_WORKER_CONTROL_FD"
INSTANCE_REF_ENV = "LEROBOT_PIPELINE_WORKER_INSTANCE_REF"
WARM_MODULE_ENV = "LEROBOT_PIPELINE_WORKER_WARM_MODULE"


def _warm(module: str) -> dict[str, float]:
    """Import the code location and build its repository once, as the run will (cached in this process), then
    call the module's ``warm_run_worker()`` if it has one (what its runs would otherwise do first, at their
    cost). Returns the modification times of the code location package's source files it imported."""
    import dagster as dg

    mod = importlib.import_module(module)
    for value in vars(mod).values():
        if isinstance(value, dg.Definitions):
            value.get_repository_def()
    hook = getattr(mod, "warm_run_worker", None)
    if callable(hook):
        hook()
    return _sources(module)


def _sources(module: str) -> dict[str, float]:
    package = sys.modules[module.split(".")[0]]
    root = os.path.dirname(getattr(package, "__file__", None) or "") + os.sep
    found = {}
    for m in list(sys.modules.values()):
        path = getattr(m, "__file__", None)
        if path and path.startswith(root):
            try:
                found[path] = os.stat(path).st_mtime
            except OSError:
                found[path] = -1.0
    return found


# How often a running run reads its own status. Each read is a run-storage query (two connections on PostgreSQL,
# whose storage opens one per query), so a quarter second cost 8 connections a second per running run: the
# largest single source of them in a Celery backfill (bench/bench_workers.py's PG sessions column).
CANCEL_POLL_SECONDS = 1.0


def _interrupt_while_canceling(instance, run_id: str, done: threading.Event, resend_after: float = 0.5,
                               poll: float = CANCEL_POLL_SECONDS) -> None:
    """Interrupt while the run is CANCELING: again after ``resend_after`` if the first one was lost (an interrupt
    that lands in a garbage-collector callback is swallowed by Python, "Exception ignored in ...", and the run would
    then go on to the end), and at all when the cancel came from a host that could not signal this process."""
    import dagster as dg

    since = None
    while not done.wait(poll):
        run = instance.get_run_by_id(run_id)
        if run is None or run.status != dg.DagsterRunStatus.CANCELING:
            since = None
            continue
        since = since or time.monotonic()
        if time.monotonic() - since >= resend_after:
            os.kill(os.getpid(), signal.SIGINT)
            since = time.monotonic()


def _execute(run_id: str, instance) -> int:
    from dagster._cli.api import _execute_run_command_body
    from dagster._utils.interrupts import capture_interrupts

    done = threading.Event()
    threading.Thread(target=_interrupt_while_canceling, args=(instance, run_id, done), daemon=True,
                     name="interrupt-while-canceling").start()
    try:
        with capture_interrupts(), instance:
            return _execute_run_command_body(run_id, instance, lambda event: None, set_exit_code_on_failure=False)
    finally:
        done.set()


def main() -> int:
    from dagster._utils.interrupts import setup_interrupt_handlers

    setup_interrupt_handlers()  # as `dagster api execute_run`: SIGTERM is SIGINT
    from dagster._core.instance import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import deserialize_value

    if len(sys.argv) > 1:  # re-executed with its run (below): already acknowledged
        return _execute(sys.argv[1], DagsterInstance.from_ref(deserialize_value(os.environ[INSTANCE_REF_ENV],
                                                                                InstanceRef)))
    control = int(os.environ.pop(CONTROL_FD_ENV))
    try:
        module = os.environ.get(WARM_MODULE_ENV)
        sources = _warm(module) if module else {}
        ref = deserialize_value(os.environ[INSTANCE_REF_ENV], InstanceRef)
        instance = DagsterInstance.from_ref(ref)
        os.write(control, b"ready\n")
        run_id = sys.stdin.readline().strip()
    except KeyboardInterrupt:  # let go while idle (SIGTERM): no run was ours
        return 0
    if not run_id:
        return 0
    os.write(control, f"ack {run_id}\n".encode())
    os.close(control)
    if module and _sources(module) != sources:
        # the code location changed on disk since this spare imported it: run it on fresh imports, in this
        # same process (same pid, which the launcher has tagged the run with)
        os.execv(sys.executable, [sys.executable, "-m", __spec__.name, run_id])
    return _execute(run_id, instance)


if __name__ == "__main__":
    sys.exit(main())
