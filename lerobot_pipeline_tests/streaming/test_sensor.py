"""The episode stream sensor, one tick at a time, against a real Redis and a real Dagster instance.

No daemon: ``dg.build_sensor_context`` plus :func:`stream_tick` (or the decorated sensor) return the
``SensorResult`` / ``SkipReason`` the daemon would act on. Every test has its own key prefix on db 15.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest

from lerobot_pipeline.definitions import build_definitions
from lerobot_pipeline.defs.partitions import EPISODE_DIM
from lerobot_pipeline.defs.resources import (
    OVERRIDES_TAG,
    PipelineResource,
    RedisStreamResource,
)
from lerobot_pipeline.defs.stream_sensor import (
    EPISODE_TAG,
    SOURCE_TAG,
    STREAM_ID_TAG,
    episode_stream_sensor,
    stream_tick,
)
from lerobot_pipeline.streaming.messages import EpisodeMessage
from lerobot_pipeline.streaming.stream import EpisodeStream

SOURCES = ("robot_1", "robot_2")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rig:
    """One test's world: redis.yaml (unique prefix), resources, Definitions and a real instance."""

    def __init__(self, tmp_path, instance, write_redis_yaml):
        self.instance = instance
        self.raw = {s: tmp_path / "raw" / s for s in SOURCES}
        self.config_path, self.settings = write_redis_yaml(self.raw)
        self.redis_stream = RedisStreamResource(config_path=str(self.config_path))
        self.pipeline = PipelineResource(work_dir=str(tmp_path / "work"), redis_config=str(self.config_path))
        self.defs = build_definitions(self.pipeline, self.redis_stream)
        self.stream = EpisodeStream.from_settings(self.settings)

    def publish(self, episode_id: str, source: str = "robot_1", strategy: str = "chunking",
                overrides: dict | None = None) -> str:
        return self.stream.publish(EpisodeMessage.new(episode_id, source, strategy, overrides))

    def xadd_raw(self, data: str) -> str:
        """An entry written without the publisher (what a broken or hostile client could send)."""
        return self.stream.client.xadd(self.stream.stream_key, {"data": data})

    def xadd_json(self, **obj) -> str:
        obj.setdefault("timestamp", time.time())
        return self.xadd_raw(json.dumps(obj))

    def tick(self, cursor: str | None = None):
        context = dg.build_sensor_context(instance=self.instance, cursor=cursor, definitions=self.defs)
        return context, stream_tick(context, self.redis_stream, self.pipeline)


@contextmanager
def open_rig(tmp_path, monkeypatch, write_yaml) -> Iterator[Rig]:
    """A Rig on a fresh test instance, with the Redis/config environment of the host cleared."""
    for var in ("REDIS_URL", "REDIS_PASSWORD", "LEROBOT_PIPELINE_REDIS_CONFIG", "LEROBOT_PIPELINE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        r = Rig(tmp_path, instance, write_yaml)
        try:
            yield r
        finally:
            r.stream.close()


@pytest.fixture
def rig(tmp_path, write_redis_yaml, monkeypatch):
    with open_rig(tmp_path, monkeypatch, write_redis_yaml) as r:
        yield r


def _added_keys(result: dg.SensorResult) -> list[str]:
    keys = []
    for req in result.dynamic_partitions_requests:
        assert isinstance(req, dg.AddDynamicPartitionsRequest)
        assert req.partitions_def_name == EPISODE_DIM
        keys.extend(req.partition_keys)
    return keys


# ----------------------------------------------------------------------------- valid messages


def test_one_run_request_per_message_and_the_cursor_advances_to_the_last_id(rig):
    ids = [
        rig.publish("episode_0000", "robot_1", "chunking"),
        rig.publish("episode_0001", "robot_1", "nearest"),
        rig.publish("episode_0000", "robot_2", "window"),
    ]
    _, result = rig.tick(None)
    assert isinstance(result, dg.SensorResult)
    assert result.cursor == ids[-1]
    assert [r.run_key for r in result.run_requests] == [
        "robot_1.episode_0000|chunking", "robot_1.episode_0001|nearest", "robot_2.episode_0000|window"]
    assert [str(r.partition_key) for r in result.run_requests] == [r.run_key for r in result.run_requests]
    for req, sid in zip(result.run_requests, ids):
        assert isinstance(req.partition_key, dg.MultiPartitionKey)
        assert req.tags[STREAM_ID_TAG] == sid
        episode_key = req.partition_key.keys_by_dimension["episode"]
        assert req.tags[EPISODE_TAG] == episode_key
        assert req.tags[SOURCE_TAG] == episode_key.split(".", 1)[0]
        assert req.tags["alignment_strategy"] == req.partition_key.keys_by_dimension["strategy"]
        assert OVERRIDES_TAG not in req.tags
    assert _added_keys(result) == ["robot_1.episode_0000", "robot_1.episode_0001", "robot_2.episode_0000"]


def test_run_key_matches_the_message(rig):
    msg = EpisodeMessage.new("episode_0042", "robot_2", "nearest")
    rig.stream.publish(msg)
    _, result = rig.tick()
    (req,) = result.run_requests
    assert req.run_key == msg.run_key
    assert str(req.partition_key) == f"{msg.partition_episode_key}|{msg.strategy}" == "robot_2.episode_0042|nearest"


def test_only_messages_after_the_cursor_are_read(rig):
    first = rig.publish("episode_0000")
    second = rig.publish("episode_0001")
    third = rig.publish("episode_0002")
    _, result = rig.tick(first)
    assert [r.tags[STREAM_ID_TAG] for r in result.run_requests] == [second, third]
    assert result.cursor == third
    _, result = rig.tick(second)
    assert [r.run_key for r in result.run_requests] == ["robot_1.episode_0002|chunking"]
    assert result.cursor == third


def test_nothing_after_the_cursor_is_a_skip(rig):
    last = rig.publish("episode_0000")
    context, result = rig.tick(last)
    assert isinstance(result, dg.SkipReason)
    assert "no new episodes" in result.skip_message and last in result.skip_message
    assert context.cursor == last


def test_an_empty_stream_is_a_skip(rig):
    context, result = rig.tick(None)
    assert isinstance(result, dg.SkipReason)
    assert "no new episodes" in result.skip_message
    assert context.cursor is None


def test_the_same_episode_id_on_two_sources_is_two_partitions(rig):
    rig.publish("episode_0000", "robot_1")
    rig.publish("episode_0000", "robot_2")
    _, result = rig.tick()
    assert [str(r.partition_key) for r in result.run_requests] == [
        "robot_1.episode_0000|chunking", "robot_2.episode_0000|chunking"]
    assert len({r.run_key for r in result.run_requests}) == 2
    assert _added_keys(result) == ["robot_1.episode_0000", "robot_2.episode_0000"]


def test_known_partitions_are_not_added_again_and_duplicates_share_a_run_key(rig):
    rig.instance.add_dynamic_partitions(EPISODE_DIM, ["robot_1.episode_0000"])
    rig.publish("episode_0000", "robot_1", "chunking")
    rig.publish("episode_0000", "robot_1", "nearest")   # same episode, another strategy: another run
    rig.publish("episode_0001", "robot_1", "chunking")
    rig.publish("episode_0001", "robot_1", "chunking")  # published twice: same run key (Dagster runs it once)
    _, result = rig.tick()
    assert [r.run_key for r in result.run_requests] == [
        "robot_1.episode_0000|chunking", "robot_1.episode_0000|nearest",
        "robot_1.episode_0001|chunking", "robot_1.episode_0001|chunking"]
    assert _added_keys(result) == ["robot_1.episode_0001"]


def test_a_schema_preserving_override_is_passed_to_the_run(rig):
    rig.publish("episode_0000", "robot_1", "chunking", {"sync.tolerance_ms": 25})
    _, result = rig.tick()
    (req,) = result.run_requests
    assert json.loads(req.tags[OVERRIDES_TAG]) == {"sync.tolerance_ms": 25}


def test_the_decorated_sensor_with_the_project_resources(rig):
    sid = rig.publish("episode_0000", "robot_2")
    context = dg.build_sensor_context(instance=rig.instance, definitions=rig.defs,
                                      resources={"redis_stream": rig.redis_stream, "pipeline": rig.pipeline})
    result = episode_stream_sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert result.cursor == sid
    assert [r.run_key for r in result.run_requests] == ["robot_2.episode_0000|chunking"]


# ----------------------------------------------------------------------------- rejected messages

BAD = {
    "malformed JSON": (lambda rig: rig.xadd_raw("{not json"), "not valid JSON"),
    "not an object": (lambda rig: rig.xadd_raw("[1, 2]"), "JSON object"),
    "path traversal id": (lambda rig: rig.xadd_json(episode_id="../../etc/passwd", source="robot_1",
                                                    strategy="chunking"), "invalid episode id"),
    "separator in id": (lambda rig: rig.xadd_json(episode_id="a|b", source="robot_1", strategy="chunking"),
                        "invalid episode id"),
    "hostile source": (lambda rig: rig.xadd_json(episode_id="episode_0009", source="../robot_1",
                                                 strategy="chunking"), "invalid source"),
    "unknown strategy": (lambda rig: rig.xadd_json(episode_id="episode_0009", source="robot_1",
                                                   strategy="cubic"), "unknown strategy"),
    "unknown source": (lambda rig: rig.publish("episode_0009", "robot_9"), "sources.robot_9"),
    "chunk size override": (lambda rig: rig.publish("episode_0009", "robot_1", "chunking",
                                                    {"alignment.chunk_size": 5}), "schema"),
    "joints per arm override": (lambda rig: rig.publish("episode_0009", "robot_1", "nearest",
                                                        {"robot.joints_per_arm": 6}), "joints_per_arm"),
    "output override": (lambda rig: rig.xadd_json(episode_id="episode_0009", source="robot_1", strategy="chunking",
                                                  config_overrides={"output.base_path": "/tmp/x"}), "not allowed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_rejected_message_is_dead_lettered_and_does_not_block_the_stream(rig, case):
    add_bad, reason = BAD[case]
    before = rig.publish("episode_0000", "robot_1")
    bad = add_bad(rig)
    after = rig.publish("episode_0001", "robot_2")
    bad_last = add_bad(rig)  # also as the newest entry: the cursor must still move past it
    _, result = rig.tick()
    assert isinstance(result, dg.SensorResult)
    assert result.cursor == bad_last
    assert [r.tags[STREAM_ID_TAG] for r in result.run_requests] == [before, after]
    assert [r.run_key for r in result.run_requests] == ["robot_1.episode_0000|chunking",
                                                        "robot_2.episode_0001|chunking"]
    assert _added_keys(result) == ["robot_1.episode_0000", "robot_2.episode_0001"]
    letters = rig.stream.dead_letters()
    assert sorted(d.stream_id for d in letters) == sorted([bad, bad_last])
    for d in letters:
        assert reason in d.reason, d.reason
        assert d.fields  # the rejected entry is kept as it was sent
    # the next tick starts after the rejected entry: nothing is read, nothing is dead-lettered twice
    _, again = rig.tick(result.cursor)
    assert isinstance(again, dg.SkipReason)
    assert len(rig.stream.dead_letters()) == 2


def test_only_rejected_messages_still_advance_the_cursor(rig):
    bad = rig.xadd_raw("garbage")
    _, result = rig.tick()
    assert isinstance(result, dg.SensorResult)
    assert result.run_requests == [] and result.dynamic_partitions_requests == []
    assert result.cursor == bad
    assert [d.stream_id for d in rig.stream.dead_letters()] == [bad]


# ----------------------------------------------------------------------------- Redis down


@pytest.mark.parametrize("where", ["url", "password key"])
def test_unreachable_redis_is_a_skip_without_password_and_keeps_the_cursor(tmp_path, write_redis_yaml, monkeypatch,
                                                                           where):
    for var in ("REDIS_URL", "REDIS_PASSWORD", "LEROBOT_PIPELINE_REDIS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    secret = "Sup3rS3cretPassw0rd"
    port = _free_port()  # nothing listens there
    if where == "url":
        path, _ = write_redis_yaml({"robot_1": tmp_path / "raw"}, url=f"redis://:{secret}@127.0.0.1:{port}/15")
    else:
        path, _ = write_redis_yaml({"robot_1": tmp_path / "raw"}, url=f"redis://127.0.0.1:{port}/15")
        text = path.read_text().replace("redis:\n", f"redis:\n  password: {secret}\n", 1)
        path.write_text(text)
    redis_stream = RedisStreamResource(config_path=str(path))
    assert redis_stream.settings().connection_url().count(secret) == 1  # the password is really configured
    pipeline = PipelineResource(work_dir=str(tmp_path / "work"), redis_config=str(path))
    defs = build_definitions(pipeline, redis_stream)
    cursor = "1764143235000-3"
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        started = time.monotonic()
        result = stream_tick(context, redis_stream, pipeline)
        assert time.monotonic() - started < 10  # refused connections fail fast; the tick does not hang
        assert isinstance(result, dg.SkipReason)
        text = result.skip_message
        assert "unreachable" in text.lower() and "redis" in text.lower()
        assert f"127.0.0.1:{port}" in text
        assert secret not in text
        assert context.cursor == cursor
        # the decorated sensor too
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                          resources={"redis_stream": redis_stream, "pipeline": pipeline})
        result = episode_stream_sensor(context)
        assert isinstance(result, dg.SkipReason) and secret not in result.skip_message
        assert context.cursor == cursor
        assert instance.get_dynamic_partitions(EPISODE_DIM) == []
