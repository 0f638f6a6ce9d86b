"""Property-based tests (hypothesis) of the stream message parser, the one place where bytes from the
network become a conversion request: whatever the field map, ``from_fields`` returns a message or
raises its own :class:`MessageError`; an accepted message is in canonical form (it round-trips)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from lerobot_pipeline.streaming.messages import MAX_MESSAGE_BYTES, EpisodeMessage, MessageError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ("episode_id", "source", "strategy", "timestamp", "config_overrides")
OVERRIDE_KEYS = ("sync.tolerance_ms", "sync.gap_policy", "alignment.window_ms", "alignment.chunk_size",
                 "video.crf", "video.codec", "filtering.min_duration_sec", "output.root", "alignment.strategy",
                 "video.extra_options.x", "robot.joint_columns", "cameras.base")

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,40}\Z")
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
# YAML-looking strings too: override string values are parsed as YAML
override_values = st.one_of(scalars, json_values, st.sampled_from(
    ["2001-02-30", "!!python/object:os.system", "[1, [2, [3]]]", "{a: 1}", "&a [*a]", "1e999", ".nan", "0x1F",
     "2020-01-01 25:00:00", "~", "- - - -", "'unterminated"]))
overrides = st.dictionaries(st.one_of(st.sampled_from(OVERRIDE_KEYS), st.text(max_size=20)), override_values,
                            max_size=4)
documents = st.fixed_dictionaries({}, optional={
    "episode_id": st.one_of(ids, json_values), "source": st.one_of(ids, json_values),
    "strategy": st.one_of(st.sampled_from(["nearest", "chunking", "window"]), json_values),
    "timestamp": st.one_of(st.floats(), st.integers(), json_values),
    "config_overrides": st.one_of(overrides, json_values),
    "extra": json_values})
field_values = st.one_of(st.text(max_size=200), st.binary(max_size=200), st.integers(), st.none(),
                         documents.map(json.dumps),
                         st.builds(lambda n: "x" * n, st.integers(MAX_MESSAGE_BYTES - 5, MAX_MESSAGE_BYTES + 5)))
field_maps = st.dictionaries(st.one_of(st.just("data"), st.just(b"data"), st.text(max_size=8), st.binary(max_size=8)),
                             field_values, max_size=3)


def parse(fields):
    try:
        return EpisodeMessage.from_fields(fields)
    except MessageError as e:
        assert e.reason and "\n" not in e.reason, e.reason  # one line saying why
        return None


@SETTINGS
@given(field_maps)
@example({"data": '{"episode_id":"e","source":"robot_1","strategy":"nearest","timestamp":1,'
                  '"config_overrides":{"sync.tolerance_ms":"2001-02-30"}}'})
@example({"data": b"\xff"})
@example({"data": "\udcff"})
def test_any_field_map_gives_a_message_or_a_message_error(fields):
    msg = parse(fields)
    if msg is not None:
        assert EpisodeMessage.from_fields(msg.to_fields()) == msg


@SETTINGS
@given(documents, st.booleans())
def test_any_json_document_gives_a_message_or_a_message_error(doc, as_bytes):
    data = json.dumps(doc)
    msg = parse({b"data": data.encode()} if as_bytes else {"data": data})
    if msg is not None:
        assert set(doc) - {"extra"} >= {"episode_id", "source", "strategy", "timestamp"} and "extra" not in doc
        assert (msg.episode_id, msg.source, msg.strategy) == (doc["episode_id"], doc["source"], doc["strategy"])
        assert EpisodeMessage.from_fields(msg.to_fields()) == msg


@SETTINGS
@given(ids, ids, st.sampled_from(["nearest", "chunking", "window"]),
       st.floats(min_value=1e-3, max_value=1e12, allow_nan=False),
       st.dictionaries(st.sampled_from(["sync.tolerance_ms", "alignment.window_ms", "video.crf"]),
                       st.integers(1, 40), max_size=3))
def test_accepted_messages_round_trip_through_their_wire_form(episode_id, source, strategy, ts, ov):
    try:
        msg = EpisodeMessage.new(episode_id, source, strategy, ov, timestamp=ts)
    except MessageError:
        assume(False)
    fields = msg.to_fields()
    assert list(fields) == ["data"] and len(fields["data"].encode()) <= MAX_MESSAGE_BYTES
    for wire in (fields, {b"data": fields["data"].encode()}):
        back = EpisodeMessage.from_fields(wire)
        assert back == msg
        assert (back.run_key, back.status_field, back.timestamp) == (msg.run_key, msg.status_field, ts)
