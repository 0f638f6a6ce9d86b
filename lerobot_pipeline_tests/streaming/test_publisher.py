import pytest

from lerobot_pipeline.errors import ConfigError, RawDataError
from lerobot_pipeline.streaming.messages import EpisodeMessage, MessageError
from lerobot_pipeline.streaming.publisher import publish_episode

from .conftest import write_raw_episode


def _published(stream):
    return [EpisodeMessage.from_fields(f) for _, f in stream.read_after(None, 100)]


def test_source_from_robot_id_and_default_strategy(stream, settings, monkeypatch):
    monkeypatch.setenv("ROBOT_ID", "robot_2")
    stream_id = publish_episode("episode_0003", settings=settings, check_raw=False, client=stream.client)
    [msg] = _published(stream)
    assert stream.read_after(None, 1)[0][0] == stream_id
    assert (msg.source, msg.episode_id, msg.strategy) == ("robot_2", "episode_0003", "chunking")
    assert stream.status_of("robot_2", "episode_0003", "chunking").state == "published"


def test_no_source_anywhere(stream, settings, monkeypatch):
    monkeypatch.delenv("ROBOT_ID", raising=False)
    with pytest.raises(MessageError, match="ROBOT_ID"):
        publish_episode("episode_0003", settings=settings, check_raw=False, client=stream.client)


def test_invalid_message_publishes_nothing(stream, settings):
    with pytest.raises(MessageError, match="invalid episode id"):
        publish_episode("../../etc/passwd", "robot_1", settings=settings, check_raw=False, client=stream.client)
    with pytest.raises(MessageError, match="not allowed"):
        publish_episode("e1", "robot_1", "window", {"output.base_path": "/"}, settings=settings, check_raw=False,
                        client=stream.client)
    assert stream.length() == 0


def test_overrides_travel_with_the_message(stream, settings):
    publish_episode("e1", "robot_1", "window", {"alignment.window_ms": 30}, settings=settings, check_raw=False,
                    client=stream.client)
    assert _published(stream)[0].config_overrides == {"alignment.window_ms": 30}


def test_connects_from_settings_when_no_client(stream, settings):
    publish_episode("e2", "robot_1", "nearest", settings=settings, check_raw=False)
    assert [m.run_key for m in _published(stream)] == ["robot_1.e2|nearest"]


def test_unknown_source_with_check_raw(stream, settings):
    with pytest.raises(ConfigError) as info:
        publish_episode("e1", "robot_9", settings=settings, client=stream.client)
    assert info.value.key == "sources.robot_9"


def test_check_raw_requires_every_file(stream, settings):
    raw = pytest.importorskip("lerobot_pipeline.core.raw")
    if not hasattr(raw, "find_episode"):
        pytest.skip("lerobot_pipeline.core.raw.find_episode is not written yet")
    root = settings.raw_root_for("robot_1")
    write_raw_episode(root, "episode_0001")
    write_raw_episode(root, "episode_0002", skip=("right_master.parquet",))
    publish_episode("episode_0001", "robot_1", settings=settings, client=stream.client)
    with pytest.raises(RawDataError) as info:
        publish_episode("episode_0002", "robot_1", settings=settings, client=stream.client)
    assert info.value.file.endswith("right_master.parquet")
    with pytest.raises(RawDataError):
        publish_episode("episode_0404", "robot_1", settings=settings, client=stream.client)
    assert [m.episode_id for m in _published(stream)] == ["episode_0001"]
