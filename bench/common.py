"""Helpers shared by the benchmarks: timed fresh processes, sample data, table printing, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


@dataclass
class Timing:
    wall_s: float
    cpu_s: float  # user + sys of the process and its children
    peak_rss_mb: float  # largest resident set of any one process of the tree (workers included)
    stdout: str = ""


def timed(cmd: list[str], env: dict | None = None, poll_s: float = 0.05) -> Timing:
    """Run ``cmd`` as a fresh process; wall time, CPU time and peak RSS of its whole process tree.

    Worker processes (forkserver children) are not reaped by the command itself, so rusage of children
    misses them; the tree is sampled instead (CPU: last seen total per process; RSS: the largest process).
    """
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    root = psutil.Process(proc.pid)
    cpu: dict[int, float] = {}
    peak = 0
    out_chunks: list[str] = []
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for pr in procs:
            try:
                with pr.oneshot():
                    t = pr.cpu_times()
                    cpu[pr.pid] = t.user + t.system
                    peak = max(peak, pr.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(poll_s)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    out_chunks.append(stdout)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed ({proc.returncode}): {' '.join(cmd)}\n"
                         f"{stdout[-2000:]}\n{stderr[-4000:]}")
    return Timing(round(wall, 2), round(sum(cpu.values()), 2), round(peak / 2**20, 1), "".join(out_chunks))


def cli(*args: str) -> list[str]:
    return [str(BIN / "lerobot-pipeline"), *args]


def sample_data(out: Path, episodes: int, seconds: float, size: str = "224x224", seed: int = 0) -> Path:
    if not out.exists():
        subprocess.run(cli("sample-data", str(out), "--episodes", str(episodes), "--seconds", str(seconds),
                           "--size", size, "--seed", str(seed)), check=True, capture_output=True)
    return out


def count_frames(raw: Path) -> int:
    """Base-camera JPEGs under a raw root (an upper bound of the frames converted)."""
    return sum(1 for _ in raw.glob("images/*/*/cam_left/*.jpg"))


@dataclass
class Row:
    section: str
    case: str
    figures: dict = field(default_factory=dict)
    target: str = ""
    passed: bool | None = None


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, section: str, case: str, target: str = "", passed: bool | None = None, **figures) -> Row:
        row = Row(section, case, figures, target, passed)
        self.rows.append(row)
        verdict = "" if passed is None else ("PASS" if passed else "FAIL")
        figs = "  ".join(f"{k}={v}" for k, v in figures.items())
        print(f"  {case:<38} {figs}  {target} {verdict}".rstrip(), flush=True)
        return row

    def summary(self) -> None:
        judged = [r for r in self.rows if r.passed is not None]
        print("\n== targets")
        for r in judged:
            print(f"  {'PASS' if r.passed else 'FAIL'}  {r.section}: {r.case}  ({r.target})")
        print(f"  {sum(r.passed for r in judged)} of {len(judged)} targets met")

    def write_json(self, path: str | None) -> None:
        if path:
            Path(path).write_text(json.dumps([asdict(r) for r in self.rows], indent=2))


def env_with(**extra: str) -> dict:
    env = os.environ.copy()
    env.update(extra)
    return env
