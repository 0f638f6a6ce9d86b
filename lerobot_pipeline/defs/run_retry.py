"""Run retries Dagster's own daemon missed, made once (docs/reliability.md, "Run retries on SQLite storage").

Dagster retries a failed run tagged ``dagster/will_retry=true`` from its EventLogConsumerDaemon, which reads
RUN_FAILURE events after a storage-id cursor. With SQLite storage each run's events live in that run's own
database, so those ids are not ordered across runs: a run that fails with few events (run monitoring's start
timeout for a run whose worker never started) after another run has failed with many lies behind the cursor
and is never retried. Its episode would wait for a human.

``retry_missed_runs`` finds failed runs that Dagster marked ``will_retry`` but has not retried after a grace
period, and retries each with Dagster's own ``retry_run``: the same re-execution (parent and root run ids,
``dagster/retry_number``, the parent's tags, the retry budget of ``dagster/max_retries``) and the same checks
that make it happen once. A retry already made, by Dagster or by an earlier sweep, is found through the
parent's ``dagster/auto_retry_run_id`` tag or a child run with a retry number, and a retry created but never
submitted (the sweep killed in between) is submitted instead of created again.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from datetime import datetime, timezone

import dagster as dg

# Dagster's consumer looks every 5 s; a retry it is merely late with must not be made twice
GRACE_SECONDS = float(os.environ.get("LEROBOT_PIPELINE_RETRY_GRACE_SECONDS", "30"))
LOOKBACK_SECONDS = 24 * 3600  # failures older than this are left to a human (`monitor --retry-failed`)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def retry_owed(run: dg.DagsterRun) -> bool:
    """A failure Dagster marked will-retry whose retry it has not named yet: a conversion still to come (Dagster's
    retry daemon makes it, or else this module's sweep, which tags the run ``will_retry=false`` if it cannot)."""
    from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

    return (run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true"
            and AUTO_RETRY_RUN_ID_TAG not in run.tags)


def missed_retries(instance: dg.DagsterInstance, jobs: Iterable[str], grace: float = GRACE_SECONDS,
                   now: float | None = None) -> list[dg.DagsterRun]:
    """Runs of ``jobs`` that failed between ``LOOKBACK_SECONDS`` and ``grace`` ago, are marked will-retry, and
    either name no retry of theirs or name one that was created but never submitted (still NOT_STARTED)."""
    from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

    now = time.time() if now is None else now
    jobs = set(jobs)
    failed = [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.FAILURE], tags={WILL_RETRY_TAG: "true"},
        updated_after=_utc(now - LOOKBACK_SECONDS), updated_before=_utc(now - grace)), limit=1000)
        if r.dagster_run.job_name in jobs]
    named = {r.tags[AUTO_RETRY_RUN_ID_TAG]: r for r in failed if AUTO_RETRY_RUN_ID_TAG in r.tags}
    unsubmitted = {r.dagster_run.run_id for r in instance.get_run_records(dg.RunsFilter(
        run_ids=list(named), statuses=[dg.DagsterRunStatus.NOT_STARTED]))} if named else set()
    return [r for r in failed if retry_owed(r) or r.tags.get(AUTO_RETRY_RUN_ID_TAG) in unsubmitted]


def _workspace(instance: dg.DagsterInstance, run: dg.DagsterRun):
    """A workspace holding the run's code location, loaded in this process (the sensor runs in it already)
    under the run's own location name, so that ``retry_run`` finds its job there."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    from lerobot_pipeline.defs.backfill_submit import MODULE

    origin = run.remote_job_origin.repository_origin.code_location_origin
    target = getattr(origin, "loadable_target_origin", None) or LoadableTargetOrigin(
        executable_path=sys.executable, module_name=MODULE)
    location = InProcessCodeLocationOrigin(target, location_name=origin.location_name)
    return WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(location))


def retry_missed_runs(instance: dg.DagsterInstance, jobs: Iterable[str],
                      grace: float = GRACE_SECONDS) -> list[tuple[dg.DagsterRun, str | None]]:
    """Retry each of ``missed_retries``: ``(failed run, its retry's run id or None)``.

    None: no retry was made. Dagster's own checks declined (its backfill has ended, its job or repository is
    gone; an engine event on the run says why), or the attempt raised. Then, as Dagster's daemon does when a
    retry fails, the run is tagged ``dagster/will_retry=false``, so that later sweeps leave it alone."""
    from dagster._core.events import EngineEventData
    from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import retry_run, should_retry
    from dagster._utils.error import serializable_error_info_from_exc_info

    done = []
    with ExitStack() as stack:
        workspaces = {}  # location name -> workspace, loaded only when a run needs it
        for run in missed_retries(instance, jobs, grace):
            new_id = None
            try:
                if run.remote_job_origin is not None and should_retry(run, instance):
                    name = run.remote_job_origin.repository_origin.code_location_origin.location_name
                    if name not in workspaces:
                        workspaces[name] = stack.enter_context(_workspace(instance, run))
                    if AUTO_RETRY_RUN_ID_TAG not in run.tags:
                        instance.report_engine_event(
                            f"Not retried {grace:.0f} s after it failed (on SQLite storage its RUN_FAILURE event "
                            "can lie behind the run-retry daemon's cursor): orphaned_run_sensor retries it", run)
                    retry_run(run, workspaces[name])
                    after = instance.get_run_by_id(run.run_id)
                    new_id = after.tags.get(AUTO_RETRY_RUN_ID_TAG) if after else None
            except Exception:  # noqa: BLE001 - one run's failed retry must not stop the sweep or the sensor
                instance.report_engine_event("orphaned_run_sensor failed to retry the run", run,
                                             engine_event_data=EngineEventData(
                                                 error=serializable_error_info_from_exc_info(sys.exc_info())))
            if new_id is None:
                instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
            done.append((run, new_id))
    return done
