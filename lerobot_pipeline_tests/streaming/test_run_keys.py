"""A failed conversion's run key must not block its retry (issue 8): publishing an episode again after
every run of its partition failed requests a new run; while one succeeded or is in flight it does not.
Real Redis, real instance (runs recorded with the tags the sensor and run retries give them)."""

from __future__ import annotations

import uuid

import dagster as dg

from lerobot_pipeline.defs.jobs import convert_episode_job

from .test_sensor import rig  # noqa: F401 - fixture

KEY = "robot_1.episode_0000|chunking"


def _run(rig, status: dg.DagsterRunStatus, **tags) -> dg.DagsterRun:
    return rig.instance.add_run(dg.DagsterRun(job_name=convert_episode_job.name, run_id=str(uuid.uuid4()),
                                              status=status, tags={"dagster/partition": KEY, **tags}))


def _keys(rig, cursor=None):
    _, result = rig.tick(cursor)
    return [r.run_key for r in result.run_requests], result.cursor


def test_republishing_after_every_attempt_failed_requests_a_new_run(rig):
    first = rig.publish("episode_0000")
    assert _keys(rig) == ([KEY], first)
    _run(rig, dg.DagsterRunStatus.FAILURE, **{"dagster/run_key": KEY})
    retry = _run(rig, dg.DagsterRunStatus.STARTED, **{"dagster/retry_number": "1"})

    again = rig.publish("episode_0000")
    assert _keys(rig, first) == ([KEY], again)  # a retry is in flight: the old key, so Dagster skips it

    rig.instance.report_run_failed(retry)  # retries exhausted
    keys, _ = _keys(rig, first)
    assert keys == [f"{KEY}#{again}"]
    assert _keys(rig, first)[0] == keys  # the same entry read again (failed tick): the same key, one run


def test_republishing_after_a_success_requests_nothing_new(rig):
    first = rig.publish("episode_0000")
    _run(rig, dg.DagsterRunStatus.FAILURE, **{"dagster/run_key": KEY})
    _run(rig, dg.DagsterRunStatus.SUCCESS, **{"dagster/retry_number": "1"})
    rig.publish("episode_0000")
    assert _keys(rig, first)[0] == [KEY]


def test_a_failure_whose_automatic_retry_is_still_owed_keeps_the_key(rig):
    """Between a run's failure (tagged will_retry=true) and the creation of its retry, the partition still has a
    conversion to come: an entry read again then must not open a new key (a second conversion of the episode)."""
    first = rig.publish("episode_0000")
    assert _keys(rig) == ([KEY], first)
    failed = _run(rig, dg.DagsterRunStatus.FAILURE, **{"dagster/run_key": KEY, "dagster/will_retry": "true"})
    again = rig.publish("episode_0000")
    assert _keys(rig, first)[0] == [KEY]  # retry owed: the old key, which Dagster skips

    rig.instance.add_run_tags(failed.run_id, {"dagster/will_retry": "false"})  # no retry will come
    assert _keys(rig, first)[0] == [f"{KEY}#{again}"]

    rig.instance.add_run_tags(failed.run_id, {"dagster/will_retry": "true"})  # the retry was made and failed too
    retry = _run(rig, dg.DagsterRunStatus.FAILURE, **{"dagster/retry_number": "1", "dagster/will_retry": "false"})
    rig.instance.add_run_tags(failed.run_id, {"dagster/auto_retry_run_id": retry.run_id})
    assert _keys(rig, first)[0] == [f"{KEY}#{again}"]
