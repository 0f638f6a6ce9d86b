"""Distributed execution without starting workers: executor selection, the storage contract, host-aware pids."""

from __future__ import annotations

import socket
import subprocess
import sys

import dagster as dg
import pytest

from lerobot_pipeline.cli import main
from lerobot_pipeline.cli.worker import check_storage_contract, worker_command
from lerobot_pipeline.defs import sensors
from lerobot_pipeline.defs.executors import CONFIG_ENV, executor_settings, pipeline_executor, video_step_tags
from lerobot_pipeline.errors import ConfigError

BROKER = "redis://10.0.0.5:6379/2"


def _env(tmp_path, **kw) -> dict[str, str]:
    """An environment with a Redis config that configures no server (the embedded fallback)."""
    (tmp_path / "redis.yaml").write_text("redis: {host: null}\n")
    return {"LEROBOT_PIPELINE_REDIS_CONFIG": str(tmp_path / "redis.yaml"), **kw}


# ----------------------------------------------------------------------------- executor selection


def test_default_executor_is_in_process_and_multiprocess_is_one_setting(tmp_path):
    assert pipeline_executor(executor_settings(_env(tmp_path))) is dg.in_process_executor
    multi = executor_settings(_env(tmp_path, LEROBOT_PIPELINE_EXECUTOR="multiprocess"))
    assert pipeline_executor(multi) is dg.multiprocess_executor


def test_celery_executor_takes_broker_and_backend_from_the_environment(tmp_path):
    s = executor_settings(_env(tmp_path, LEROBOT_PIPELINE_EXECUTOR="celery", LEROBOT_PIPELINE_CELERY_BROKER=BROKER))
    assert (s.kind, s.broker, s.backend) == ("celery", BROKER, BROKER)  # backend defaults to the broker
    assert s.celery_config()["config_source"]["task_track_started"] is True
    assert pipeline_executor(s).name == "celery"
    s = executor_settings(_env(tmp_path, LEROBOT_PIPELINE_EXECUTOR="celery", LEROBOT_PIPELINE_CELERY_BROKER=BROKER,
                               LEROBOT_PIPELINE_CELERY_BACKEND="redis://10.0.0.5:6379/3"))
    assert s.backend.endswith("/3")


def test_celery_broker_defaults_to_the_sensors_redis(tmp_path):
    s = executor_settings(_env(tmp_path, LEROBOT_PIPELINE_EXECUTOR="celery", REDIS_URL="redis://rig-hub:6380/4"))
    assert s.broker == s.backend == "redis://rig-hub:6380/4"


def test_celery_refuses_the_embedded_redis_with_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="embedded Redis .* other hosts"):
        executor_settings(_env(tmp_path, LEROBOT_PIPELINE_EXECUTOR="celery"))


def test_executor_config_file_and_environment_precedence(tmp_path):
    cfg = tmp_path / "executor.yaml"
    cfg.write_text(f"executor: celery\nbroker: {BROKER}\nvideo_queue: gpu_video\n")
    s = executor_settings(_env(tmp_path, **{CONFIG_ENV: str(cfg)}))
    assert (s.kind, s.broker, s.video_queue) == ("celery", BROKER, "gpu_video")
    assert video_step_tags(s) == {"dagster-celery/queue": "gpu_video"}
    assert executor_settings(_env(tmp_path, **{CONFIG_ENV: str(cfg), "LEROBOT_PIPELINE_EXECUTOR": "in_process"})).kind \
        == "in_process"
    cfg.write_text("executor: celery\nbrokr: x\n")
    with pytest.raises(ConfigError, match="'brokr'"):
        executor_settings(_env(tmp_path, **{CONFIG_ENV: str(cfg)}))
    with pytest.raises(ConfigError, match="LEROBOT_PIPELINE_EXECUTOR.*got 'kubernetes'"):
        executor_settings(_env(tmp_path, LEROBOT_PIPELINE_EXECUTOR="kubernetes"))
    with pytest.raises(ConfigError, match="redis://"):
        executor_settings(_env(tmp_path, LEROBOT_PIPELINE_EXECUTOR="celery", LEROBOT_PIPELINE_CELERY_BROKER="amqp://x"))


def test_the_conversion_step_carries_the_video_celery_queue():
    from lerobot_pipeline.defs.episode_assets import convert_episodes

    assert convert_episodes.op.tags.get("dagster-celery/queue") == "video"


def test_worker_command_listens_on_all_queues_in_one_argument(tmp_path):
    cmd = worker_command(tmp_path / "w.yaml", "w1", ["dagster", "video"], 3, "INFO")
    assert cmd[0].endswith("dagster-celery") and cmd[cmd.index("-q") + 1] == "dagster,video"
    assert cmd[-2:] == ["--", "--concurrency=3"] and cmd[cmd.index("-n") + 1] == "w1"


# ----------------------------------------------------------------------------- storage contract


def test_storage_contract_names_what_the_worker_cannot_see(tmp_path):
    work, raw = tmp_path / "work", tmp_path / "raw_robot_1"
    work.mkdir()
    raw.mkdir()
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert check_storage_contract(work, {"robot_1": str(raw)}, instance) == []
        problems = check_storage_contract(tmp_path / "not_mounted", {"robot_1": str(raw), "robot_2": "/nfs/robot_2"},
                                          instance)
    assert len(problems) == 2
    assert "work dir" in problems[0] and "not_mounted" in problems[0]
    assert "'robot_2'" in problems[1] and "/nfs/robot_2" in problems[1]
    assert list(work.iterdir()) == []  # the write probe leaves nothing behind


def test_worker_start_refuses_a_host_without_the_shared_storage(tmp_path, monkeypatch, capsys):
    home, work = tmp_path / "home", tmp_path / "work"
    (tmp_path / "redis.yaml").write_text("redis: {url: 'redis://127.0.0.1:1/0'}\n"
                                         "sources: {robot_1: {raw_root: /nfs/raw/robot_1}}\n")
    monkeypatch.setenv("LEROBOT_PIPELINE_REDIS_CONFIG", str(tmp_path / "redis.yaml"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["worker", "start", "--work-dir", str(work)]) == 2
    assert "DAGSTER_HOME=(unset) holds no dagster.yaml" in capsys.readouterr().err
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    work.mkdir()
    assert main(["worker", "start", "--work-dir", str(work), "--dagster-home", str(home)]) == 2
    err = capsys.readouterr().err
    assert "cannot see the shared storage" in err and "'robot_1' (/nfs/raw/robot_1)" in err


# ----------------------------------------------------------------------------- host-aware orphan check


def _started_run_with_dead_pid(w, tags: dict[str, str]) -> tuple[object, int]:
    """A STARTED run whose launcher reported a pid that is gone (as the default run launcher records it)."""
    from dagster._core.events import EngineEventData

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = w.instance.create_run_for_job(job_def=w.job("convert_episode_job"), status=dg.DagsterRunStatus.STARTED,
                                        tags=tags)
    w.instance.report_engine_event(f"Started process for run (pid: {gone.pid}).", run,
                                   EngineEventData(metadata={"pid": dg.MetadataValue.int(gone.pid)}))
    return w.instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))[0], gone.pid


def test_a_dead_pid_counts_only_on_the_runs_own_host(pipeline_world):
    rec, pid = _started_run_with_dead_pid(pipeline_world, {})
    reason = sensors.run_worker_dead(pipeline_world.instance, rec)
    assert reason and f"pid {pid} on {socket.gethostname()}" in reason
    rec, _ = _started_run_with_dead_pid(pipeline_world, {sensors.HOST_TAG: socket.gethostname()})
    assert sensors.run_worker_dead(pipeline_world.instance, rec)
    rec, _ = _started_run_with_dead_pid(pipeline_world, {sensors.HOST_TAG: "rig-hub-2"})
    assert sensors.run_worker_dead(pipeline_world.instance, rec) is None  # another host's pid: not judged here


# ----------------------------------------------------------------------------- a worker's share of its host

_VIDEO_WORKERS = ("from lerobot_pipeline.defs.resources import PipelineResource; "
                  "print(PipelineResource(work_dir='/nonexistent').video_workers)")


def _video_workers(env: dict[str, str], cpus: set[int] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", _VIDEO_WORKERS], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "LEROBOT_PIPELINE_VIDEO_WORKERS"} | env,
                          preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)


def test_a_steps_video_pool_follows_the_cores_its_process_may_use():
    import os

    first = min(os.sched_getaffinity(0))
    assert _video_workers({}, {first}).stdout.strip() == "1"  # a worker pinned to one core (taskset, a cpuset)
    assert _video_workers({}).stdout.strip() == str(len(os.sched_getaffinity(0)))
    assert _video_workers({"LEROBOT_PIPELINE_VIDEO_WORKERS": "3"}, {first}).stdout.strip() == "3"  # the setting wins
    bad = _video_workers({"LEROBOT_PIPELINE_VIDEO_WORKERS": "two"})
    assert bad.returncode != 0 and "LEROBOT_PIPELINE_VIDEO_WORKERS" in bad.stderr and "'two'" in bad.stderr


_WARM = ("import sys, multiprocessing.forkserver as fs, lerobot_pipeline.definitions as d; d.warm_run_worker(); "
         "print('matplotlib' in sys.modules, 'pandas' in sys.modules, fs._forkserver._forkserver_pid is not None)")


def test_a_spare_run_worker_warms_the_step_only_when_the_step_runs_in_it(tmp_path):
    """In-process steps: the spare imports what the first episode needs and starts the video forkserver, and
    never pandas (nothing needs it: core/arrow.py). With Celery the run process only orchestrates: warming would
    take CPU from the workers for nothing."""
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("LEROBOT_PIPELINE_")}
    run = lambda env: subprocess.run([sys.executable, "-c", _WARM], capture_output=True, text=True,  # noqa: E731
                                     timeout=120, env=base | _env(tmp_path, **env)).stdout.split()
    assert run({"LEROBOT_PIPELINE_EXECUTOR": "in_process"}) == ["True", "False", "True"]
    assert run({"LEROBOT_PIPELINE_EXECUTOR": "celery", "LEROBOT_PIPELINE_CELERY_BROKER": BROKER}) == \
        ["False", "False", "False"]
