import json

import pytest

from lerobot_pipeline.errors import PipelineError
from lerobot_pipeline.streaming.messages import MAX_MESSAGE_BYTES, EpisodeMessage, MessageError


def _fields(**overrides) -> dict[str, str]:
    data = {
        "episode_id": "episode_0007",
        "source": "robot_1",
        "strategy": "window",
        "config_overrides": {},
        "timestamp": 1764143235.5,
    }
    data.update(overrides)
    return {"data": json.dumps(data)}


def test_round_trip_keeps_every_field():
    msg = EpisodeMessage.new("episode_0007", "robot_1", "window", {"alignment.window_ms": 30, "video.crf": 20})
    fields = msg.to_fields()
    assert list(fields) == ["data"]
    assert " " not in fields["data"]  # compact JSON
    back = EpisodeMessage.from_fields(fields)
    assert back == msg
    assert back.config_overrides == {"alignment.window_ms": 30, "video.crf": 20}


def test_bytes_fields_as_sent_by_a_client_without_decoding():
    raw = _fields()
    back = EpisodeMessage.from_fields({b"data": raw["data"].encode()})
    assert (back.episode_id, back.source, back.strategy, back.timestamp) == (
        "episode_0007", "robot_1", "window", 1764143235.5)


def test_keys_are_unique_per_source_episode_and_strategy():
    a = EpisodeMessage.new("episode_0007", "robot_1", "nearest")
    b = EpisodeMessage.new("episode_0007", "robot_2", "nearest")
    assert a.partition_episode_key == "robot_1.episode_0007"
    assert a.run_key == "robot_1.episode_0007|nearest"
    assert a.status_field == "episode_0007|nearest"
    assert a.run_key != b.run_key


def test_config_overrides_are_optional():
    data = json.loads(_fields()["data"])
    del data["config_overrides"]
    assert EpisodeMessage.from_fields({"data": json.dumps(data)}).config_overrides == {}


REJECTED = {
    "non-JSON": ({"data": "{not json"}, "not valid JSON"),
    "oversized": ({"data": "x" * (MAX_MESSAGE_BYTES + 1)}, "larger than"),
    "JSON but not an object": ({"data": "[1, 2]"}, "JSON object"),
    "NaN constant": ({"data": _fields()["data"].replace("1764143235.5", "NaN")}, "not valid JSON"),
    "duplicate key": ({"data": '{"episode_id":"a","episode_id":"b"}'}, "duplicate key"),
    "no data field": ({"episode_id": "episode_0007"}, "missing field 'data'"),
    "extra field": ({**_fields(), "evil": "1"}, "unknown fields"),
    "missing key": ({"data": json.dumps({"episode_id": "e1", "source": "robot_1"})}, "missing keys"),
    "unknown key": (_fields(path="/tmp/x"), "unknown keys"),
    "hostile id": (_fields(episode_id="../../etc/passwd"), "invalid episode id"),
    "id with pipe": (_fields(episode_id="ep|chunking"), "invalid episode id"),
    "id not a string": (_fields(episode_id=7), "invalid episode id"),
    "source with slash": (_fields(source="robot/1"), "invalid source"),
    "unknown strategy": (_fields(strategy="fastest"), "unknown strategy"),
    "timestamp as string": (_fields(timestamp="now"), "timestamp"),
    "timestamp as bool": (_fields(timestamp=True), "timestamp"),
    "overrides not a mapping": (_fields(config_overrides=["alignment.window_ms", 30]), "must be a mapping"),
    "output override": (_fields(config_overrides={"output.base_path": "/etc"}), "not allowed"),
    "input override": (_fields(config_overrides={"input.raw_root": "/"}), "not allowed"),
    "strategy override": (_fields(config_overrides={"alignment.strategy": "nearest"}), "not allowed"),
    "encoder options override": (
        _fields(config_overrides={"video.extra_options.passlogfile": "/tmp/x"}), "not allowed"),
    "unknown section": (_fields(config_overrides={"dagster.x": 1}), "not allowed"),
    "bare section": (_fields(config_overrides={"alignment": {"window_ms": 5}}), "not allowed"),
    "nested value": (_fields(config_overrides={"alignment.window_ms": {"a": 1}}), "scalar"),
    "unknown config key": (_fields(config_overrides={"alignment.nope": 1}), "alignment.nope"),
    "wrong config type": (_fields(config_overrides={"alignment.chunk_size": "many"}), "alignment.chunk_size"),
    "sub-key of a list": (_fields(config_overrides={"cameras.name": "x"}), "cameras"),
}


@pytest.mark.parametrize("fields,reason", REJECTED.values(), ids=REJECTED.keys())
def test_rejects(fields, reason):
    with pytest.raises(MessageError) as info:
        EpisodeMessage.from_fields(fields)
    assert reason in info.value.reason
    assert isinstance(info.value, PipelineError)


def test_constructor_validates_too():
    with pytest.raises(MessageError, match="invalid episode id"):
        EpisodeMessage.new("../x", "robot_1", "nearest")
    with pytest.raises(MessageError, match="not allowed"):
        EpisodeMessage.new("e1", "robot_1", "nearest", {"output.base_path": "/"})


def test_string_values_of_overrides_are_parsed_like_the_cli():
    msg = EpisodeMessage.from_fields(_fields(config_overrides={"alignment.window_ms": "30", "video.preset": "fast"}))
    assert msg.config_overrides == {"alignment.window_ms": "30", "video.preset": "fast"}
