"""The monitor flags running conversions that are blocked on a pool slot or make no progress (issue 8):
a real Dagster instance (temporary, SQLite, the shipped pool limit of 1), real Redis records."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest

from lerobot_pipeline import monitor
from lerobot_pipeline.defs.jobs import convert_episode_job
from lerobot_pipeline.defs.stream_sensor import EPISODE_TAG, SOURCE_TAG
from lerobot_pipeline.streaming.messages import EpisodeMessage


@pytest.fixture
def instance(tmp_path):
    overrides = {"concurrency": {"pools": {"default_limit": 1}}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=overrides) as inst:
        yield inst


def _running_conversion(instance, stream, episode_id: str) -> dg.DagsterRun:
    """A published episode whose conversion run is STARTED and has just logged an event."""
    stream.publish(EpisodeMessage.new(episode_id, "robot_1", "chunking"))
    key = f"robot_1.{episode_id}"
    run = instance.add_run(dg.DagsterRun(
        job_name=convert_episode_job.name, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
        tags={SOURCE_TAG: "robot_1", EPISODE_TAG: key, "alignment_strategy": "chunking"}))
    instance.report_engine_event("step started", run)
    return run


def _states(stream, instance, stall_after):
    (view,) = monitor.collect(stream, instance, stall_after=stall_after)
    return view, {c.episode_id: (c.state, c.error) for c in view.conversions}


def test_a_run_without_progress_past_the_threshold_is_stalled_not_running(stream, instance):
    run = _running_conversion(instance, stream, "episode_0000")
    view, states = _states(stream, instance, stall_after=300)
    assert states["episode_0000"] == ("running", None)
    assert view.counts["running"] == 1 and view.counts["stalled"] == 0

    time.sleep(1.2)
    view, states = _states(stream, instance, stall_after=1.0)
    state, why = states["episode_0000"]
    assert state == "stalled" and why.startswith("stalled: no progress"), why
    assert view.counts == {"pending": 0, "running": 0, "stalled": 1, "completed": 0, "failed": 0}
    text = monitor.format_views([view], [])
    assert f"STALLED episode_0000 [chunking] run {run.run_id}: stalled: no progress" in text
    assert text.splitlines()[1].split()[1:7] == ["1", "0", "0", "0", "0", "1"], text

    instance.report_engine_event("progress", run)  # a new event: healthy again
    assert _states(stream, instance, stall_after=1.0)[1]["episode_0000"] == ("running", None)


def test_a_run_waiting_on_a_pool_slot_held_by_a_dead_run_is_blocked(stream, instance):
    dead = instance.add_run(dg.DagsterRun(job_name="other", run_id=str(uuid.uuid4())))
    instance.report_run_failed(dead, message="worker killed")
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("video")
    assert storage.claim_concurrency_slot("video", dead.run_id, "episode_videos").is_claimed

    run = _running_conversion(instance, stream, "episode_0001")
    waiting = storage.claim_concurrency_slot("video", run.run_id, "episode_videos")
    assert not waiting.is_claimed
    time.sleep(1.2)
    instance.report_engine_event("still here", run)  # events keep coming: only the slot wait shows it
    state, why = _states(stream, instance, stall_after=1.0)[1]["episode_0001"]
    assert state == "stalled" and why.startswith("blocked: waiting") and "'video' pool slot" in why, why
    assert _states(stream, instance, stall_after=300)[1]["episode_0001"] == ("running", None)

    storage.free_concurrency_slots_for_run(dead.run_id)  # what release_run_resources does
    assert storage.claim_concurrency_slot("video", run.run_id, "episode_videos").is_claimed
    assert _states(stream, instance, stall_after=1.0)[1]["episode_0001"] == ("running", None)
