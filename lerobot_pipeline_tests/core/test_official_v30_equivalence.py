"""Issue 11: for the same recordings, our native v3.0 dataset and our v2.1 dataset converted by LeRobot's own
official converter (lerobot 0.4.4 ``convert_dataset_v21_to_v30``) hold identical parquet values, episode
metadata, stats and decoded frames.

LeRobot is not a dependency of this project (it pulls torch): the comparison runs
``bench/compare_official_v30.py`` under the interpreter of a lerobot 0.4.4 venv, found at
``$LEROBOT_V30_PYTHON`` or ``~/.cache/lerobot_check_v30_venv/bin/python`` (what
``lerobot_check_v30/setup.sh`` builds); without one the test skips and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lerobot_pipeline.sample_data import generate_dataset

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
LEROBOT_PYTHON = Path(os.environ.get("LEROBOT_V30_PYTHON", CACHE / "lerobot_check_v30_venv" / "bin" / "python"))
# PyPI's torchvision needs a small import shim beside a CPU-only torch; the lerobot_check tool ships one
SHIM_DIR = os.environ.get("LEROBOT_CHECK_SHIM_DIR", str(REPO.parent / "shared" / "tools" / "lerobot_check"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LEROBOT_PYTHON.is_file(), reason=f"no lerobot 0.4.4 interpreter at {LEROBOT_PYTHON} "
                       "(set LEROBOT_V30_PYTHON, or build it with lerobot_check_v30/setup.sh)"),
    # that venv's torchvision does not import without the shim (a clone without ../shared beside it)
    pytest.mark.skipif(not (Path(SHIM_DIR) / "tv_cpu_shim.py").is_file(),
                       reason=f"no tv_cpu_shim.py in {SHIM_DIR} (set LEROBOT_CHECK_SHIM_DIR: the lerobot_check tool)"),
]


def _convert(raw: Path, out: Path, strategy: str, *extra: str) -> None:
    cmd = [sys.executable, "-m", "lerobot_pipeline", "convert", "--input", str(raw), "--output", str(out),
           "--strategy", strategy, "--jobs", "1", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("strategy", ["chunking"])
def test_native_v30_equals_lerobots_conversion_of_our_v21(tmp_path, strategy):
    raw = tmp_path / "raw"
    generate_dataset(raw, episodes=3, seconds=1.5, size=(48, 32), seed=11)
    _convert(raw, tmp_path / "v21", strategy)
    _convert(raw, tmp_path / "v30", strategy, "--format", "v3.0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LEROBOT_HOME"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               HF_LEROBOT_HOME=str(tmp_path / "hf" / "lerobot"), PYTHONPATH=SHIM_DIR)
    proc = subprocess.run([str(LEROBOT_PYTHON), str(REPO / "bench" / "compare_official_v30.py"),
                           str(tmp_path / "v21"), str(tmp_path / "v30")],
                          capture_output=True, text=True, timeout=600, env=env)
    out = proc.stdout  # one line per check, the verdict last (the converter's progress bars go to stderr)
    assert proc.returncode == 0 and out.rstrip().endswith("COMPARE OK"), out[-3000:] + proc.stderr[-3000:]
    assert out.count("identical decoded frames") == 3 and "meta/stats.json: identical" in out, out
