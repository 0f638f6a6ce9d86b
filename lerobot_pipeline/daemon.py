"""Run a Dagster daemon as a child process group (streaming demo, latency benchmark, daemon tests).

``dagster-daemon`` started from a non-interactive shell ignores SIGINT and maps SIGTERM onto it, so it
is started in its own session with default signal handling and stopped by signalling the group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lerobot_pipeline.shipped import workspace_file

_RESET_SIGINT = ("import os,signal,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                 "os.execv(sys.argv[1], sys.argv[1:])")


class DaemonProcess:
    def __init__(self, env: dict[str, str], log_path: Path, workspace: Path | None = None):
        self.env, self.log_path, self.workspace = env, Path(log_path), workspace or workspace_file()
        self.proc: subprocess.Popen | None = None

    def start(self) -> DaemonProcess:
        exe = str(Path(sys.executable).with_name("dagster-daemon"))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RESET_SIGINT, exe, "run", "-w", str(self.workspace)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.proc.poll() is None:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                break
        try:  # children (run workers) of the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None

    def kill(self) -> None:
        """Abrupt death (SIGKILL to the whole group), as a crash would be."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
