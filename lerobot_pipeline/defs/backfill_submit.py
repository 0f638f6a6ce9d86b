"""The CLI's fast path for a backfill: create and queue its runs itself, instead of waiting for backfill_sensor.

Dagster's sensor daemon evaluates sensors in a loop that wakes every 5 s (not configurable), so a request
file waits 0-5 s, and the run's creation takes another tick's share on top. The CLI already holds the
instance and can load the code location in-process (the module it imports anyway), so it creates each batch's
run the way the sensor daemon does (same job, execution plan, partition tags, ``dagster/sensor_name`` and
``dagster/run_key`` tags, an origin named after the workspace's code location) and submits it to the run queue;
the daemon's run queue launches it within a second.

The request file stays the safety net: it is written first, marked ``direct``, and backfill_sensor leaves a
direct request alone for ``DIRECT_GRACE_SECONDS``; after that it requests every batch again and Dagster's
run-key check skips the batches whose runs exist. So a CLI killed halfway loses nothing and doubles nothing
(the sensor only acts once the CLI's window is over, and the CLI stops submitting before it is).
"""

from __future__ import annotations

import sys
import time

import dagster as dg

from lerobot_pipeline.defs.backfill_sensor import DIRECT_GRACE_SECONDS

LOCATION_NAME = "lerobot_pipeline"  # configs/workspace.yaml: the daemon finds the run's code location by name
MODULE = "lerobot_pipeline.definitions"


def can_submit(instance: dg.DagsterInstance) -> bool:
    """Runs go through the run queue (the daemon launches them): a CLI can queue them without a workspace."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    return isinstance(instance.run_coordinator, QueuedRunCoordinator)


def submit_backfill_runs(instance: dg.DagsterInstance, requests: list[dg.RunRequest], created: float) -> int:
    """Create and queue one run per request (run keys already present are skipped); returns how many it queued.
    Stops early, leaving the rest to backfill_sensor, if the grace period is half gone."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    from lerobot_pipeline.defs.jobs import convert_episode_job

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=MODULE), location_name=LOCATION_NAME)
    queued = 0
    with origin.create_location(instance) as location:
        (repo,) = location.get_repositories().values()
        remote_job = repo.get_full_job(convert_episode_job.name)
        job_def = location.get_reconstructable_job(repo.name, convert_episode_job.name).get_definition()
        plan = location.get_execution_plan(remote_job, {}, step_keys_to_execute=None, known_state=None,
                                           instance=instance).execution_plan_snapshot
        for request in requests:
            if time.time() > created + DIRECT_GRACE_SECONDS / 2:
                break
            if instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}), limit=1):
                continue
            if request.partition_key is not None:
                request = request.with_resolved_tags_and_config(job_def, [], instance)
            run = instance.create_run(
                job_name=remote_job.name, run_id=None, run_config=request.run_config,
                resolved_op_selection=remote_job.resolved_op_selection, step_keys_to_execute=None,
                status=dg.DagsterRunStatus.NOT_STARTED, op_selection=None, root_run_id=None, parent_run_id=None,
                tags={**(remote_job.run_tags or {}), **request.tags, SENSOR_NAME_TAG: "backfill_sensor",
                      RUN_KEY_TAG: request.run_key},
                job_snapshot=remote_job.job_snapshot, execution_plan_snapshot=plan,
                parent_job_snapshot=remote_job.parent_job_snapshot, remote_job_origin=remote_job.get_remote_origin(),
                job_code_origin=remote_job.get_python_origin(), asset_selection=None, asset_check_selection=None,
                asset_graph=repo.asset_graph)
            instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # the queue needs none
            queued += 1
    return queued
