"""SIGKILL `lerobot-pipeline convert`, `lerobot-pipeline materialize` and a dataset assembly at random
points (fixed seed), then re-run (issue 8): the output is content-identical to a clean run and no
leftover is readable as a dataset (the output path holds a complete dataset or nothing; staging and
build directories of the killed processes are removed by the next run). Two materialisations of one
partition racing never interleave: the committed version is wholly one run's.

Real subprocesses, real files (tiny 2 s, 64x48 episodes); content = parquet values, decoded video
frames (PyAV) and meta/ JSON (minus provenance ``version``, a random version-directory name).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.config import load_config
from lerobot_pipeline.core.convert import convert_episode
from lerobot_pipeline.core.dataset import assemble_dataset
from lerobot_pipeline.core.episode_writer import episode_store_dir, read_manifest
from lerobot_pipeline.core.raw import discover_episodes
from lerobot_pipeline.defs.partitions import multi_key
from lerobot_pipeline.sample_data import generate_dataset

from .conftest import UNREACHABLE_REDIS_YAML

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "lerobot_pipeline"]
SEED = 8


# ----------------------------------------------------------------------------- helpers


def content(root: Path) -> dict:
    """What a loader reads from a dataset, minus random version-dir names."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            out[rel] = pq.read_table(p).to_pydict()
        elif p.suffix == ".mp4":
            with av.open(str(p)) as c:
                frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            out[rel] = (len(frames), hashlib.sha256(np.stack(frames).tobytes()).hexdigest())
        elif p.suffix == ".jsonl":
            rows = [json.loads(line) for line in p.read_text().splitlines()]
            out[rel] = [{k: v for k, v in r.items() if k != "version"} for r in rows]
        else:
            out[rel] = json.loads(p.read_text()) if p.suffix == ".json" else p.read_bytes()
    return out


def leftovers(output: Path) -> list[str]:
    """Entries beside ``output`` that killed runs could leave (the lock file and the Dagster path's
    state file, both written atomically, are no dataset)."""
    keep = {f".{output.name}.lock", f".{output.name}.state.json"}
    return sorted(p.name for p in output.parent.glob(f".{output.name}.*") if p.name not in keep)


def kill_delays(duration: float, n: int) -> list[float]:
    rng = random.Random(SEED)
    return sorted(rng.uniform(0.05 * duration, 0.85 * duration) for _ in range(n))  # most land mid-run


def run_killed(cmd: list[str], delay: float, env: dict, cwd: Path) -> bool:
    """Start ``cmd``, SIGKILL it after ``delay`` s; True if it was still running (really killed)."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def run_ok(cmd: list[str], env: dict, cwd: Path) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return time.monotonic() - t0


def assert_complete_or_absent(output: Path, clean: dict) -> None:
    if output.exists():
        assert content(output) == clean, "a killed run left a dataset that differs from a clean one"


def kill_and_rerun(cmd: list[str], delays: list[float], env: dict, cwd: Path, output: Path, clean: dict) -> int:
    """Kill ``cmd`` after each delay, check what is left, re-run it to completion and compare with the
    clean run's ``clean`` content; returns how many kills landed mid-run."""
    killed = 0
    for delay in delays:
        killed += run_killed(cmd, delay, env, cwd)
        assert_complete_or_absent(output, clean)
        run_ok(cmd, env, cwd)
        assert content(output) == clean
        assert leftovers(output) == [], leftovers(output)
    return killed


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_raw")
    generate_dataset(root, episodes=3, seconds=2.0, size=(64, 48), seed=SEED)
    return root


def _env(tmp: Path) -> dict:
    redis_yaml = tmp / "redis.yaml"
    redis_yaml.write_text(UNREACHABLE_REDIS_YAML)
    dropped = ("REDIS_URL", "REDIS_PASSWORD", "LEROBOT_PIPELINE_CONFIG_DIR")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(LEROBOT_PIPELINE_REDIS_CONFIG=str(redis_yaml), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return env


# ----------------------------------------------------------------------------- convert


def test_convert_killed_at_random_points_then_rerun(raw, tmp_path):
    env = _env(tmp_path)
    clean_out = tmp_path / "clean" / "ds"
    duration = run_ok([*CLI, "convert", "--input", str(raw), "--output", str(clean_out)], env, tmp_path)
    clean = content(clean_out)
    output = tmp_path / "killed" / "ds"
    cmd = [*CLI, "convert", "--input", str(raw), "--output", str(output)]
    killed = kill_and_rerun(cmd, kill_delays(duration, 8), env, tmp_path, output, clean)
    print(f"\n[kill] convert: clean run {duration:.1f} s, {killed}/8 kills landed mid-run")
    assert killed >= 5


# ----------------------------------------------------------------------------- dataset assembly


ASSEMBLE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lerobot_pipeline.config import load_config
    from lerobot_pipeline.core.dataset import assemble_dataset
    from lerobot_pipeline.core.episode_writer import load_staged
    store, output = Path(sys.argv[1]), Path(sys.argv[2])
    parts = [p for d in sorted(store.glob("*/*")) for p in load_staged(d)]
    assemble_dataset(parts, output, load_config())
""")


def test_dataset_assembly_killed_at_random_points_then_rerun(raw, tmp_path):
    config = load_config()
    store = tmp_path / "store"
    refs, _ = discover_episodes(raw, config, "local")
    for ref in refs:
        convert_episode(ref, config, store)
    env = _env(tmp_path)
    clean_out = tmp_path / "clean" / "ds"
    duration = run_ok([sys.executable, "-c", ASSEMBLE, str(store), str(clean_out)], env, tmp_path)
    clean = content(clean_out)
    output = tmp_path / "killed" / "ds"
    cmd = [sys.executable, "-c", ASSEMBLE, str(store), str(output)]
    killed = 0
    for i, delay in enumerate(kill_delays(duration, 8)):
        killed += run_killed(cmd, delay, env, tmp_path)
        assert_complete_or_absent(output, clean)
        if i % 2:  # half the re-runs in a new process, half in this one
            run_ok(cmd, env, tmp_path)
        else:
            from lerobot_pipeline.core.episode_writer import load_staged

            assemble_dataset([p for d in sorted(store.glob("*/*")) for p in load_staged(d)], output, config)
        assert content(output) == clean
        assert leftovers(output) == [], leftovers(output)
    print(f"\n[kill] assembly: clean run {duration:.1f} s, {killed}/8 kills landed mid-run")
    assert killed >= 5


# ----------------------------------------------------------------------------- materialize (Dagster)


def _dagster_env(tmp: Path, name: str) -> dict:
    env = _env(tmp)
    work = tmp / name
    env.update(LEROBOT_PIPELINE_WORK_DIR=str(work), DAGSTER_HOME=str(work / "dagster_home"))
    return env


def test_materialize_killed_at_random_points_then_rerun(raw, tmp_path):
    clean_env = _dagster_env(tmp_path, "clean")
    run_ok([*CLI, "register", "--raw-root", str(raw)], clean_env, tmp_path)
    duration = run_ok([*CLI, "materialize", "--strategy", "nearest"], clean_env, tmp_path)
    clean = content(Path(clean_env["LEROBOT_PIPELINE_WORK_DIR"]) / "datasets" / "airbot_play_dual_arm_nearest")

    env = _dagster_env(tmp_path, "killed")
    output = Path(env["LEROBOT_PIPELINE_WORK_DIR"]) / "datasets" / "airbot_play_dual_arm_nearest"
    run_ok([*CLI, "register", "--raw-root", str(raw)], env, tmp_path)
    cmd = [*CLI, "materialize", "--strategy", "nearest"]
    killed = kill_and_rerun(cmd, kill_delays(duration, 3), env, tmp_path, output, clean)
    print(f"\n[kill] materialize: clean run {duration:.1f} s, {killed}/3 kills landed mid-run")
    assert killed >= 2


def test_materialize_killed_while_its_video_step_holds_the_slot_reruns_without_help(raw, tmp_path, monkeypatch):
    """The kill that random points may miss: SIGKILL ``materialize`` while its video step holds the
    ``video`` pool slot (found in the instance's concurrency table). No daemon watches in-process runs, so
    the re-run itself must fail the dead run and free its slot; before, its video step waited for ever."""
    import dagster as dg

    clean_env = _dagster_env(tmp_path, "clean")
    run_ok([*CLI, "register", "--raw-root", str(raw)], clean_env, tmp_path)
    run_ok([*CLI, "materialize", "--strategy", "nearest"], clean_env, tmp_path)
    clean = content(Path(clean_env["LEROBOT_PIPELINE_WORK_DIR"]) / "datasets" / "airbot_play_dual_arm_nearest")

    env = _dagster_env(tmp_path, "held")
    output = Path(env["LEROBOT_PIPELINE_WORK_DIR"]) / "datasets" / "airbot_play_dual_arm_nearest"
    run_ok([*CLI, "register", "--raw-root", str(raw)], env, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    proc = subprocess.Popen([*CLI, "materialize", "--strategy", "nearest"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    holder = None
    with dg.DagsterInstance.get() as instance:
        deadline = time.monotonic() + 120
        while holder is None and proc.poll() is None and time.monotonic() < deadline:
            storage = instance.event_log_storage
            if "video" in storage.get_concurrency_keys():
                slots = storage.get_concurrency_info("video").claimed_slots
                holder = slots[0].run_id if slots else None
            time.sleep(0.05)
        assert holder is not None, "materialize ended before its video step claimed the slot"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED  # what the kill leaves

        rerun = subprocess.run([*CLI, "materialize", "--strategy", "nearest"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=180)
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
        assert f"run {holder[:8]}" in rerun.stdout and "is gone" in rerun.stdout, rerun.stdout
        assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("video").claimed_slots == []
    assert content(output) == clean
    assert leftovers(output) == [], leftovers(output)


# ----------------------------------------------------------------------------- racing materialisations


MATERIALIZE_ONE = textwrap.dedent("""
    import json, sys
    import dagster as dg
    from lerobot_pipeline.definitions import build_definitions, pipeline_resource_from_env
    from lerobot_pipeline.defs.resources import OVERRIDES_TAG
    job = build_definitions(pipeline_resource_from_env()).resolve_job_def("convert_episode_job")
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), partition_key=sys.argv[1], raise_on_error=False,
                                    tags={OVERRIDES_TAG: json.dumps({"alignment.window_ms": int(sys.argv[2])})})
    sys.exit(0 if result.success else 1)
""")


def test_two_materialisations_of_one_partition_never_interleave(raw, tmp_path):
    """Two processes materialise one partition at the same moment with different window sizes (different
    parquet values), the video pool opened to 2 so that both really run at once. Each builds a version
    directory of its own and commits it atomically: the committed version is wholly one run's, equal to
    what that run's config gives alone, never a mix."""
    env = _dagster_env(tmp_path, "race")
    work, home = Path(env["LEROBOT_PIPELINE_WORK_DIR"]), Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\nconcurrency: {pools: {default_limit: 2}}\n")
    run_ok([*CLI, "register", "--raw-root", str(raw)], env, tmp_path)
    key = "local.episode_0000"
    partition = str(multi_key(key, "window"))
    episode_dir = episode_store_dir(work / "store", "window", key)

    def committed() -> tuple[str, dict]:
        manifest = read_manifest(episode_dir)
        version = episode_dir / "versions" / manifest["version"]
        assert all((version / "part-000" / "videos" / f"{c}.mp4").is_file()
                   for c in ("cam_left", "cam_right", "cam_head"))
        return manifest["config_digest"], pq.read_table(version / "part-000" / "data.parquet").to_pydict()

    alone = {}
    for window_ms in ("10", "30"):  # what each config gives on its own
        run_ok([sys.executable, "-c", MATERIALIZE_ONE, partition, window_ms], env, tmp_path)
        digest, table = committed()
        alone[digest] = table
    assert len(alone) == 2 and list(alone.values())[0] != list(alone.values())[1]

    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-c", MATERIALIZE_ONE, partition, ms], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for ms in ("10", "30")]
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err.decode()[-2000:]
        digest, table = committed()
        assert table == alone[digest]  # the committed parquet is the one its own config makes
