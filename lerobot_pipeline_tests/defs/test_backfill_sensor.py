"""backfill_sensor: request files → one run per batch of contiguous partitions, run keys, cursor."""

from __future__ import annotations

import json

import dagster as dg

from lerobot_pipeline.cli import orchestrate
from lerobot_pipeline.defs.backfill_sensor import RANGE_END, RANGE_START, backfill_sensor, parallel_steps, plan_batches
from lerobot_pipeline.defs.partitions import multi_key


def test_plan_batches_cuts_at_gaps_and_at_the_batch_size():
    reg = ["a", "b", "c", "d", "e", "f", "g"]
    assert plan_batches(reg, reg, 3) == [("a", "c", 3), ("d", "f", 3), ("g", "g", 1)]
    # b and f are not selected: a range must not cover them
    assert plan_batches(reg, ["a", "c", "d", "e", "g"], 10) == [("a", "a", 1), ("c", "e", 3), ("g", "g", 1)]
    assert plan_batches(reg, ["g", "a"], 10) == [("a", "a", 1), ("g", "g", 1)]  # registration order
    assert plan_batches(reg, [], 3) == []


def sizes(runs):
    return [count for _, _, count in runs]


def test_plan_batches_gives_every_parallel_slot_a_run_and_evens_the_runs():
    reg = [f"e{i:02d}" for i in range(20)]
    assert sizes(plan_batches(reg, reg, 10, parallel=1)) == [10, 10]
    assert sizes(plan_batches(reg, reg, 10, parallel=2)) == [10, 10]
    assert sizes(plan_batches(reg, reg, 10, parallel=4)) == [5, 5, 5, 5]  # 4 slots: not 2 runs and 2 idle
    assert sizes(plan_batches(reg, reg, 10, parallel=3)) == [7, 7, 6]
    assert sizes(plan_batches(reg[:12], reg[:12], 10, parallel=1)) == [6, 6]  # not 10 then 2
    assert sizes(plan_batches(reg[:3], reg[:3], 10, parallel=8)) == [1, 1, 1]
    more = [f"e{i:02d}" for i in range(24)]
    assert sizes(plan_batches(more, more, 10, parallel=2)) == [6, 6, 6, 6]  # two rounds of two, not 10, 10, 4
    assert sizes(plan_batches(more, more, 10, parallel=1)) == [8, 8, 8]
    runs = plan_batches(reg, reg, 10, parallel=4)
    assert [(a, b) for a, b, _ in runs] == [(reg[i], reg[i + 4]) for i in (0, 5, 10, 15)]


def test_parallel_steps_reads_the_video_pool_and_the_run_limit(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry: {enabled: false}\n"
        "concurrency:\n  runs: {max_concurrent_runs: 3}\n  pools: {default_limit: 2}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert parallel_steps(instance) == 2  # the pool's default limit
        instance.event_log_storage.set_concurrency_slots("video", 5)
        assert parallel_steps(instance) == 3  # 5 slots, but only 3 runs at once
        instance.event_log_storage.set_concurrency_slots("video", 1)
        assert parallel_steps(instance) == 1


def tick(w, cursor=None):
    with dg.build_sensor_context(instance=w.instance, cursor=cursor, definitions=w.defs,
                                 resources={"pipeline": w.pipeline}) as ctx:
        return backfill_sensor(ctx)


def test_sensor_turns_a_request_into_batched_runs_once(pipeline_world, monkeypatch):
    w = pipeline_world
    for i in range(5):
        w.record(f"episode_{i:04d}", index=i)
    keys = w.register()
    monkeypatch.setenv("LEROBOT_PIPELINE_BACKFILL_BATCH", "2")
    w.instance.event_log_storage.set_concurrency_slots("video", 1)  # one step at a time: runs of the batch size
    n = orchestrate.launch_backfill(w.instance, w.work, "window", keys, "0123456789ab", direct=False)
    assert n == 3
    result = tick(w)
    reqs = result.run_requests
    assert [r.run_key for r in reqs] == [f"backfill:0123456789ab:{i}" for i in range(3)]
    assert (reqs[0].tags[RANGE_START], reqs[0].tags[RANGE_END]) == (str(multi_key(keys[0], "window")),
                                                                    str(multi_key(keys[1], "window")))
    assert reqs[2].partition_key == str(multi_key(keys[4], "window"))  # a batch of one is a plain partition run
    assert all(r.tags["lerobot_pipeline/backfill"] == "0123456789ab" for r in reqs)
    # the cursor remembers the request: the next tick launches nothing
    assert json.loads(result.cursor) == ["0123456789ab"]
    again = tick(w, result.cursor)
    assert isinstance(again, dg.SkipReason)


def test_sensor_skips_malformed_requests_and_goes_on(pipeline_world):
    w = pipeline_world
    w.record("episode_0000", index=0)
    keys = w.register()
    w.pipeline.backfill_dir.mkdir(parents=True)
    (w.pipeline.backfill_dir / "deadbeef00.json").write_text("{not json")
    (w.pipeline.backfill_dir / "deadbeef01.json").write_text(json.dumps({"strategy": "bogus", "batches": []}))
    orchestrate.launch_backfill(w.instance, w.work, "nearest", keys, "deadbeef02", direct=False)
    result = tick(w)
    assert [r.run_key for r in result.run_requests] == ["backfill:deadbeef02:0"]
    assert json.loads(result.cursor) == ["deadbeef00", "deadbeef01", "deadbeef02"]


def test_direct_launch_queues_the_runs_the_sensor_would_and_the_sensor_then_adds_none(pipeline_world, monkeypatch):
    """The CLI queues each batch's run itself (same run keys and tags as the sensor's); the sensor leaves the
    request alone during the CLI's window and afterwards only requests run keys that already exist."""
    w = pipeline_world
    for i in range(3):
        w.record(f"episode_{i:04d}", index=i)
    keys = w.register()
    monkeypatch.setenv("LEROBOT_PIPELINE_BACKFILL_BATCH", "2")
    queued = {"run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}}
    (w.tmp / "queued_home").mkdir()
    with dg.instance_for_test(temp_dir=str(w.tmp / "queued_home"), overrides=queued) as instance:
        instance.add_dynamic_partitions("episode", keys)
        w.instance = instance
        instance.event_log_storage.set_concurrency_slots("video", 1)
        assert orchestrate.launch_backfill(instance, w.work, "window", keys, "00aa11bb22cc") == 2
        runs = sorted(instance.get_runs(dg.RunsFilter(tags={"lerobot_pipeline/backfill": "00aa11bb22cc"})),
                      key=lambda r: r.tags["dagster/run_key"])
        assert [r.status for r in runs] == [dg.DagsterRunStatus.QUEUED] * 2
        assert [r.tags["dagster/run_key"] for r in runs] == ["backfill:00aa11bb22cc:0", "backfill:00aa11bb22cc:1"]
        assert all(r.tags["dagster/sensor_name"] == "backfill_sensor" and r.job_name == "convert_episode_job"
                   for r in runs)
        assert (runs[0].tags[RANGE_START], runs[0].tags[RANGE_END]) == (str(multi_key(keys[0], "window")),
                                                                        str(multi_key(keys[1], "window")))
        # the single-partition run carries the partition tags the sensor daemon would resolve
        assert runs[1].tags["dagster/partition"] == str(multi_key(keys[2], "window"))
        assert runs[1].tags["dagster/partition/strategy"] == "window"
        origin = runs[0].remote_job_origin.repository_origin.code_location_origin
        assert origin.location_name == "lerobot_pipeline"
        assert runs[0].job_code_origin.repository_origin.code_pointer.module == "lerobot_pipeline.definitions"

        first = tick(w)
        assert not first.run_requests and "queued by the CLI" in first.skip_reason.skip_message
        assert first.cursor is None or "00aa11bb22cc" not in first.cursor
        path = w.pipeline.backfill_dir / "00aa11bb22cc.json"
        request = json.loads(path.read_text())
        path.write_text(json.dumps(request | {"created": request["created"] - 61}))  # the CLI's window is over
        later = tick(w)
        assert [r.run_key for r in later.run_requests] == [r.tags["dagster/run_key"] for r in runs]
        assert json.loads(later.cursor) == ["00aa11bb22cc"]
