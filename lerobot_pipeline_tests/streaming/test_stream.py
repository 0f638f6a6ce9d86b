import threading

import pytest
import redis

from lerobot_pipeline.streaming.messages import EpisodeMessage
from lerobot_pipeline.streaming.stream import EpisodeStream, StreamError, redis_client


def _msg(i: int, source: str = "robot_1", strategy: str = "chunking") -> EpisodeMessage:
    return EpisodeMessage.new(f"episode_{i:04d}", source, strategy)


def test_publish_then_read_from_the_start(stream):
    sent = _msg(1)
    stream_id = stream.publish(sent)
    entries = stream.read_after(None, 10)
    assert [e[0] for e in entries] == [stream_id]
    assert EpisodeMessage.from_fields(entries[0][1]) == sent
    assert stream.length() == 1 and stream.last_id() == stream_id


def test_read_after_returns_ids_strictly_after_the_cursor_in_order(stream):
    ids = [stream.publish(_msg(i)) for i in range(6)]
    assert [i for i, _ in stream.read_after("0-0", 100)] == ids
    assert [i for i, _ in stream.read_after(ids[1], 2)] == ids[2:4]  # count limit
    assert [i for i, _ in stream.read_after(ids[3], 100)] == ids[4:]
    assert stream.read_after(ids[-1], 100) == []
    # reading is non-destructive
    assert [i for i, _ in stream.read_after(None, 100)] == ids
    # a cursor naming an entry that is gone (trimmed) resumes at the next one
    stream.client.xdel(stream.stream_key, ids[2])
    assert [i for i, _ in stream.read_after(ids[2], 1)] == [ids[3]]


def test_read_after_on_an_empty_stream(stream):
    assert stream.read_after(None, 5) == []
    assert stream.last_id() is None


@pytest.mark.parametrize("cursor", ["$", "abc", "1-2-3", "-1", ""])
def test_invalid_cursor(stream, cursor):
    with pytest.raises(StreamError, match="invalid stream cursor"):
        stream.read_after(cursor, 5)


def test_invalid_count(stream):
    with pytest.raises(StreamError, match="count"):
        stream.read_after(None, 0)


def test_approximate_trim(make_settings, redis_url):
    settings = make_settings(stream={"maxlen": 10})
    with EpisodeStream(redis_client(redis_url), settings) as s:
        pipe_ids = [s.publish(_msg(i)) for i in range(300)]
        assert 10 <= s.length() < 300
        assert s.last_id() == pipe_ids[-1]


def test_dead_letters(stream):
    first = stream.dead_letter("1-0", {"data": "{not json"}, "invalid episode message: not valid JSON")
    second = stream.dead_letter("2-0", {"data": "x" * 20_000, "evil": "1"}, "too big")
    letters = stream.dead_letters(10)
    assert [d.id for d in letters] == [second, first]  # newest first
    assert letters[1].stream_id == "1-0" and letters[1].fields == {"data": "{not json"}
    assert letters[1].reason.endswith("not valid JSON") and letters[1].time > 0
    assert len(letters[0].fields["data"]) < 9_000 and "more characters" in letters[0].fields["data"]
    assert [d.id for d in stream.dead_letters(1)] == [second]


def test_status_lifecycle(stream):
    stream.publish(_msg(7))
    st = stream.status_of("robot_1", "episode_0007", "chunking")
    assert (st.state, st.attempts, st.run_id, st.error) == ("published", 0, None, None)
    stream.set_status("robot_1", "episode_0007", "chunking", "queued", run_id="run-a")
    assert stream.set_status("robot_1", "episode_0007", "chunking", "running").attempts == 1
    failed = stream.set_status("robot_1", "episode_0007", "chunking", "failed", error="RawDataError: boom")
    assert (failed.state, failed.run_id, failed.error, failed.attempts) == ("failed", "run-a", "RawDataError: boom", 1)
    retry = stream.set_status("robot_1", "episode_0007", "chunking", "running", run_id="run-b")
    assert (retry.attempts, retry.error) == (2, None)
    done = stream.set_status("robot_1", "episode_0007", "chunking", "completed")
    assert (done.state, done.run_id, done.attempts) == ("completed", "run-b", 2)
    assert done.updated_at >= failed.updated_at
    # publishing the same episode again counts, but does not hide that it is completed
    stream.publish(_msg(7))
    assert stream.status_of("robot_1", "episode_0007", "chunking").state == "completed"
    assert stream.published_count("robot_1") == 2
    assert stream.delete_status("robot_1", "episode_0007", "chunking")
    assert stream.status_of("robot_1", "episode_0007", "chunking") is None


def test_status_per_source_and_strategy(stream):
    stream.publish(_msg(1, "robot_1", "nearest"))
    stream.publish(_msg(1, "robot_1", "window"))
    stream.publish(_msg(1, "robot_2", "nearest"))
    stream.set_status("robot_2", "episode_0001", "nearest", "failed", error="x")
    assert stream.sources() == ["robot_1", "robot_2"]
    one = stream.get_status("robot_1")
    assert list(one) == ["episode_0001|nearest", "episode_0001|window"]
    assert {s.state for s in one.values()} == {"published"}
    two = stream.get_status("robot_2")["episode_0001|nearest"]
    assert (two.source, two.episode_id, two.strategy, two.state, two.error) == (
        "robot_2", "episode_0001", "nearest", "failed", "x")
    assert stream.published_count("robot_1") == 2 and stream.published_count("robot_3") == 0
    assert stream.get_status("robot_3") == {}


def test_unreadable_status_records_are_skipped(stream):
    stream.set_status("robot_1", "episode_0001", "nearest", "completed")
    stream.client.hset(stream.status_key("robot_1"), "junk", "not json")
    assert list(stream.get_status("robot_1")) == ["episode_0001|nearest"]


def test_status_rejects_unknown_state_and_bad_ids(stream):
    with pytest.raises(StreamError, match="unknown status state"):
        stream.set_status("robot_1", "episode_0001", "nearest", "exploded")
    with pytest.raises(Exception, match="invalid episode id"):
        stream.set_status("robot_1", "a|b", "nearest", "failed")


def test_concurrent_publishers_lose_nothing(settings, redis_url):
    errors = []

    def publisher(t: int):
        try:
            with EpisodeStream(redis_client(redis_url), settings) as s:
                for i in range(50):
                    s.publish(EpisodeMessage.new(f"episode_{t}_{i:03d}", f"robot_{t}", "chunking"))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with EpisodeStream(redis_client(redis_url), settings) as s:
        entries, cursor = [], None
        while batch := s.read_after(cursor, 64):  # paging with the cursor, like the sensor
            entries += batch
            cursor = batch[-1][0]
        ids = [i for i, _ in entries]
        assert len(ids) == len(set(ids)) == 200
        assert ids == sorted(ids, key=lambda x: tuple(map(int, x.split("-"))))
        keys = {EpisodeMessage.from_fields(f).run_key for _, f in entries}
        assert len(keys) == 200
        assert sum(s.published_count(f"robot_{t}") for t in range(4)) == 200
        assert sum(len(s.get_status(src)) for src in s.sources()) == 200


def test_client_must_decode_responses(settings, redis_url):
    with pytest.raises(StreamError, match="decode_responses"):
        EpisodeStream(redis.Redis.from_url(redis_url), settings)


def test_from_settings_connects_to_the_configured_server(settings):
    with EpisodeStream.from_settings(settings) as s:
        assert s.embedded is None
        s.publish(_msg(3))
        assert s.length() == 1


def test_unreachable_server_is_a_stream_error_without_password(make_settings):
    settings = make_settings(redis={"url": "redis://:topsecret@127.0.0.1:1/0"})
    with pytest.raises(StreamError) as info:
        EpisodeStream.from_settings(settings)
    assert "topsecret" not in str(info.value) and "***" in str(info.value)
