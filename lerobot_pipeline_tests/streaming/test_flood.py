"""A flood of 10,000 garbage entries interleaved with valid ones (XADD straight into the stream), read
tick by tick by the real sensor function against a real instance and real Redis (issue 8, network side):
every valid entry gets exactly one run request and its partition, the stream drains in a few ticks,
the dead-letter record stays capped while its counter counts every rejection."""

from __future__ import annotations

import json
import math
import time

import dagster as dg
import pytest

from lerobot_pipeline.defs.partitions import EPISODE_DIM
from lerobot_pipeline.streaming.messages import MAX_MESSAGE_BYTES, EpisodeMessage

from .test_sensor import open_rig

GARBAGE = 10_000
VALID_EVERY = 50  # one valid entry after every 50 garbage ones: 200 valid
DEAD_LETTER_CAP = 1_000


def _garbage(i: int) -> dict:
    """Ten kinds of bad entry, in turn."""
    ts = 1.7e9 + i
    kinds = [
        {"data": f"not json {i}"},
        {"data": "x" * (MAX_MESSAGE_BYTES + 1)},
        {"data": json.dumps({"episode_id": f"../../etc/{i}", "source": "robot_1", "strategy": "nearest",
                             "timestamp": ts})},
        {"data": json.dumps({"episode_id": f"e{i}", "source": "robot_9", "strategy": "nearest", "timestamp": ts})},
        {"data": json.dumps({"episode_id": f"e{i}", "source": "robot_1", "strategy": "best", "timestamp": ts})},
        {"data": json.dumps([i])},
        {"data": b"\xff\xfe" + bytes([i % 256])},
        {"payload": "x", "data": "{}"},
        {"data": json.dumps({"episode_id": f"e{i}", "source": "robot_1", "strategy": "nearest", "timestamp": ts,
                             "config_overrides": {"output.root": "/etc"}})},
        {"data": json.dumps({"episode_id": f"e{i}", "source": "robot_1", "strategy": "nearest", "timestamp": "now"})},
    ]
    return kinds[i % len(kinds)]


@pytest.fixture
def flood_rig(tmp_path, write_redis_yaml, monkeypatch):
    def write(raw):  # the test's cap on the dead-letter stream
        return write_redis_yaml(raw, stream={"dead_letter_maxlen": DEAD_LETTER_CAP})

    with open_rig(tmp_path, monkeypatch, write) as r:
        yield r


def test_a_garbage_flood_drains_in_a_few_ticks_and_every_valid_entry_is_requested_once(flood_rig):
    rig = flood_rig
    client, key = rig.stream.client, rig.stream.stream_key
    valid = {}
    pipe = client.pipeline(transaction=False)
    for i in range(GARBAGE):
        pipe.xadd(key, _garbage(i))
        if i % VALID_EVERY == VALID_EVERY - 1:
            msg = EpisodeMessage.new(f"episode_{i:05d}", ("robot_1", "robot_2")[i % 2], "chunking")
            valid[msg.run_key] = msg.partition_episode_key
            pipe.xadd(key, msg.to_fields())
    pipe.execute()
    total = GARBAGE + len(valid)
    assert rig.stream.length() == total

    settings = rig.settings.sensor
    cursor, ticks, requested, durations = None, 0, [], []
    while True:
        t0 = time.monotonic()
        context, result = rig.tick(cursor)
        durations.append(time.monotonic() - t0)
        if isinstance(result, dg.SkipReason):
            break
        ticks += 1
        assert ticks <= 10, "the sensor never caught up"
        behind = len(client.xrange(key, f"({result.cursor}", "+"))
        # each tick is bounded, and it stops only at the request cap, the scan cap or the end of the stream
        assert len(result.run_requests) <= settings.max_messages_per_tick
        assert len(result.run_requests) == settings.max_messages_per_tick or behind == 0 or \
            (total - behind) >= settings.max_entries_per_tick * ticks, (ticks, len(result.run_requests), behind)
        requested.extend(r.run_key for r in result.run_requests)
        for req in result.dynamic_partitions_requests:  # what the daemon does with them
            rig.instance.add_dynamic_partitions(EPISODE_DIM, list(req.partition_keys))
        cursor = result.cursor
    print(f"\n[flood] {total} entries ({len(valid)} valid) drained in {ticks} ticks; "
          f"tick durations {[round(d, 2) for d in durations]} s")

    assert ticks <= math.ceil(len(valid) / settings.max_messages_per_tick) + 1
    assert sorted(requested) == sorted(valid)  # every valid entry, each once
    assert set(rig.instance.get_dynamic_partitions(EPISODE_DIM)) == set(valid.values())
    assert cursor == rig.stream.last_id()

    assert rig.stream.dead_letter_count() == GARBAGE
    kept = client.xlen(rig.stream.dead_letter_key)
    assert DEAD_LETTER_CAP <= kept <= DEAD_LETTER_CAP + 200, kept  # MAXLEN ~ trims whole nodes of 100
    letters = rig.stream.dead_letters(DEAD_LETTER_CAP)
    assert letters[0].stream_id == client.xrevrange(key, count=2)[1][0]  # newest rejection is kept
    reasons = {d.reason.split(":")[0] for d in letters}
    assert len(reasons) >= 5, reasons
