"""The forkserver the video workers fork from, startable before anything heavy is imported, and the number of
cores they may use.

Its server process preloads :mod:`lerobot_pipeline.core.camera_videos` (PyAV, OpenCV, numpy, pyarrow: ~0.35 s
of CPU), so each worker it forks starts ready to encode. This module imports nothing beyond the standard
library: a CLI can start the server first thing, and the server's imports then run on another core while the
CLI does its own (~0.5 s) instead of after them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

PRELOAD = "lerobot_pipeline.core.camera_videos"


def usable_cpus() -> int:
    """Cores this process may run on: its CPU affinity (taskset, a container's cpuset), else all of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def forkserver_context() -> Any:  # multiprocessing's context classes are not public types
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    return ctx


def start_forkserver() -> None:
    """Start the server now (no-op if it runs): later pools fork their workers from it at once."""
    from multiprocessing import forkserver

    forkserver_context()
    forkserver.ensure_running()
