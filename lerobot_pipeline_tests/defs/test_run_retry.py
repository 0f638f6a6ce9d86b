"""A failed run Dagster marked will-retry but never retried is retried once by the orphan sensor's sweep
(defs/run_retry.py). Real instance with the run queue (retries are queued, nothing executes), run records
made the way the daemon leaves them: created for the job with its code origin, then failed by run monitoring
with ``dagster/will_retry=true``; Dagster's own ``retry_run`` is what the sweep calls."""

from __future__ import annotations

import dagster as dg
import pytest

from lerobot_pipeline.defs import run_retry, sensors
from lerobot_pipeline.defs.jobs import convert_episode_job, dataset_job
from lerobot_pipeline.defs.partitions import multi_key

from .test_sensors import _job_origin

KEY = multi_key("robot_1.episode_0000", "nearest")
QUEUED_COORDINATOR = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}


@pytest.fixture
def instance(isolated_env):
    with dg.instance_for_test(temp_dir=str(isolated_env["home"]),
                              overrides={"run_coordinator": QUEUED_COORDINATOR}) as inst:
        yield inst


@pytest.fixture
def job_defs():
    from lerobot_pipeline.definitions import defs

    return {name: defs.resolve_job_def(name) for name in (convert_episode_job.name, dataset_job.name)}


def _failed(instance, job_defs, job=convert_episode_job.name, will_retry="true", partition=KEY) -> dg.DagsterRun:
    """A run that never started, failed by run monitoring's start timeout (as after a daemon kill)."""
    run = instance.create_run_for_job(
        job_def=job_defs[job], status=dg.DagsterRunStatus.STARTING, remote_job_origin=_job_origin(job),
        tags={"dagster/partition": partition, "dagster/max_retries": "1", "lerobot_pipeline/source": "robot_1"})
    instance.report_run_failed(run, message="run worker never started (start timeout)")
    instance.add_run_tags(run.run_id, {"dagster/will_retry": will_retry})
    return instance.get_run_by_id(run.run_id)


def _children(instance, run) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.parent_run_id == run.run_id]


def test_a_missed_retry_is_made_once_as_dagster_would_make_it(instance, job_defs):
    failed = _failed(instance, job_defs)

    (run, new_id), = run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0)
    assert run.run_id == failed.run_id
    (child,) = _children(instance, failed)
    assert child.run_id == new_id
    assert child.status == dg.DagsterRunStatus.QUEUED  # submitted to the run queue, which launches it
    assert child.tags["dagster/partition"] == KEY and child.tags["lerobot_pipeline/source"] == "robot_1"
    assert child.tags["dagster/retry_number"] == "1" and child.root_run_id == failed.run_id
    assert instance.get_run_by_id(failed.run_id).tags["dagster/auto_retry_run_id"] == child.run_id
    messages = [e.message for e in instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    assert any("orphaned_run_sensor retries it" in m for m in messages), messages

    assert run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0) == []  # once
    assert len(_children(instance, failed)) == 1


def test_the_retry_keeps_the_retry_budget(instance, job_defs):
    """Its own failure is not retried again: dagster/max_retries 1 is spent by the first retry."""
    failed = _failed(instance, job_defs)
    run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0)
    (child,) = _children(instance, failed)
    instance.report_run_failed(child)
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

    assert not should_retry(instance.get_run_by_id(child.run_id), instance)


def test_runs_inside_the_grace_period_or_not_marked_will_retry_are_left_alone(instance, job_defs):
    _failed(instance, job_defs)  # Dagster's daemon may still retry it: its consumer looks every 5 s
    _failed(instance, job_defs, will_retry="false", partition=multi_key("robot_1.episode_0001", "nearest"))
    assert run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=3600) == []
    assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.FAILURE] * 2
    only_will_retry = run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0)
    assert [r.tags["dagster/partition"] for r, _ in only_will_retry] == [KEY]


def test_a_run_dagster_already_retried_is_not_retried_again(instance, job_defs):
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import retry_run

    failed = _failed(instance, job_defs)
    with run_retry._workspace(instance, failed) as workspace:
        retry_run(failed, workspace)  # what Dagster's daemon does when it sees the failure in time
    fresh = _failed(instance, job_defs, partition=multi_key("robot_1.episode_0002", "nearest"))
    assert [r.run_id for r in run_retry.missed_retries(instance, sensors.WATCHED_JOBS, grace=0)] == [fresh.run_id]
    assert run_retry.missed_retries(instance, ["some_other_job"], grace=0) == []
    assert len(_children(instance, failed)) == 1


def test_a_retry_created_but_never_submitted_is_submitted_not_created_again(instance, job_defs, monkeypatch):
    """The sweep killed between creating the retry and submitting it: the next sweep submits that run."""
    failed = _failed(instance, job_defs)

    def killed(*_a, **_k):
        raise KeyboardInterrupt("killed before submit")

    monkeypatch.setattr(type(instance), "submit_run", killed)
    with pytest.raises(KeyboardInterrupt):
        run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0)
    monkeypatch.undo()
    (child,) = _children(instance, failed)
    assert child.status == dg.DagsterRunStatus.NOT_STARTED

    (_, new_id), = run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0)
    assert new_id == child.run_id
    (child,) = _children(instance, failed)
    assert child.status == dg.DagsterRunStatus.QUEUED


def test_the_orphan_sensor_runs_the_sweep(instance, job_defs, monkeypatch):
    failed = _failed(instance, job_defs)
    monkeypatch.setattr(sensors, "retry_missed_runs",
                        lambda inst, jobs: run_retry.retry_missed_runs(inst, jobs, grace=0))
    result = sensors.orphaned_run_sensor(dg.build_sensor_context(instance=instance))
    assert "retried 1 run(s) Dagster's run-retry daemon missed" in result.skip_message
    assert len(_children(instance, failed)) == 1


def test_a_run_dagster_declines_to_retry_is_tagged_and_left_alone(instance, job_defs):
    """Dagster's retry_run gives up on a run whose repository is gone (an engine event says so): the sweep
    tags it will_retry=false, as Dagster's daemon does, instead of trying again every tick for a day."""
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

    good = _job_origin(convert_episode_job.name)
    gone = RemoteJobOrigin(repository_origin=RemoteRepositoryOrigin(
        code_location_origin=good.repository_origin.code_location_origin, repository_name="renamed_away"),
        job_name=convert_episode_job.name)
    run = instance.create_run_for_job(job_def=job_defs[convert_episode_job.name],
                                      status=dg.DagsterRunStatus.STARTING, remote_job_origin=gone,
                                      tags={"dagster/partition": KEY, "dagster/max_retries": "1"})
    instance.report_run_failed(run)
    instance.add_run_tags(run.run_id, {"dagster/will_retry": "true"})

    ((swept, new_id),) = run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0)
    assert swept.run_id == run.run_id and new_id is None
    assert instance.get_run_by_id(run.run_id).tags["dagster/will_retry"] == "false"
    messages = [e.message for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    assert any("Could not find repository" in m for m in messages), messages
    assert run_retry.retry_missed_runs(instance, sensors.WATCHED_JOBS, grace=0) == []
    assert _children(instance, run) == []
