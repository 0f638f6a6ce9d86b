from pathlib import Path

import pytest
import yaml

from lerobot_pipeline.errors import ConfigError, InvalidIdError
from lerobot_pipeline.streaming.settings import load_redis_settings, redact_url, settings_from_dict

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "redis.yaml"
SECRET = "pa:ss@w/rd-7Q9"


def _write(tmp_path, data) -> Path:
    path = tmp_path / "redis.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_file_loads():
    s = load_redis_settings(SHIPPED, env={})
    assert s.stream_key == "lerobot_pipeline:episodes"
    assert s.stream.maxlen == 100_000
    assert s.default_strategy == "chunking"
    assert (s.sensor.interval_seconds, s.sensor.max_messages_per_tick, s.retries.max_automatic) == (5, 100, 2)
    assert not s.uses_embedded
    assert s.connection_url() == "redis://127.0.0.1:6379/0"
    assert s.raw_root_for("robot_1") == Path("/data/robot_1")


def test_nothing_configured_means_embedded_under_auto():
    assert load_redis_settings(None, env={}).uses_embedded
    assert not settings_from_dict({"embedded": {"enabled": False}}, env={}).uses_embedded
    assert settings_from_dict({"redis": {"host": "db1"}, "embedded": {"enabled": True}}, env={}).uses_embedded
    assert not settings_from_dict({"redis": {"host": "db1"}}, env={}).uses_embedded
    assert not load_redis_settings(None, env={"REDIS_URL": "redis://db2:6380/1"}).uses_embedded


def test_config_path_from_env(tmp_path):
    path = _write(tmp_path, {"stream": {"name": "eps"}})
    assert load_redis_settings(env={"LEROBOT_PIPELINE_REDIS_CONFIG": str(path)}).stream_key == "lerobot_pipeline:eps"


BAD = {
    "unknown top key": ({"bogus": 1}, "bogus"),
    "unknown nested key": ({"stream": {"nam": "x"}}, "stream.nam"),
    "port not an int": ({"redis": {"port": "6379x"}}, "redis.port"),
    "port out of range": ({"redis": {"port": 70000}}, "redis.port"),
    "maxlen zero": ({"stream": {"maxlen": 0}}, "stream.maxlen"),
    "bad key prefix": ({"redis": {"key_prefix": "a b"}}, "redis.key_prefix"),
    "url scheme": ({"redis": {"url": "http://x"}}, "redis.url"),
    "unknown strategy": ({"default_strategy": "fastest"}, "default_strategy"),
    "enabled not auto/bool": ({"embedded": {"enabled": "maybe"}}, "embedded.enabled"),
    "sources not a mapping": ({"sources": ["robot_1"]}, "sources"),
    "bad source name": ({"sources": {"../x": {"raw_root": "/d"}}}, "sources.../x"),
    "source without raw_root": ({"sources": {"robot_1": {}}}, "sources.robot_1.raw_root"),
    "raw_root wrong type": ({"sources": {"robot_1": {"raw_root": 5}}}, "sources.robot_1.raw_root"),
    "unknown source key": ({"sources": {"robot_1": {"raw_root": "/d", "x": 1}}}, "sources.robot_1.x"),
    "pattern without {source}": ({"raw_root_pattern": "/data/x"}, "raw_root_pattern"),
    "pattern with other field": ({"raw_root_pattern": "/data/{source}/{task}"}, "raw_root_pattern"),
    "retries negative": ({"retries": {"max_automatic": -1}}, "retries.max_automatic"),
    "section not a mapping": ({"sensor": 5}, "sensor"),
}


@pytest.mark.parametrize("data,key", BAD.values(), ids=BAD.keys())
def test_errors_name_the_key(tmp_path, data, key):
    with pytest.raises(ConfigError) as info:
        load_redis_settings(_write(tmp_path, data), env={})
    assert info.value.key == key


def test_unreadable_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_redis_settings("/nonexistent/redis.yaml", env={})


def test_non_string_password_is_not_echoed(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_redis_settings(_write(tmp_path, {"redis": {"password": 98765432}}), env={})
    assert info.value.key == "redis.password" and "98765432" not in str(info.value)


def test_env_takes_precedence_over_the_file(tmp_path):
    path = _write(tmp_path, {"redis": {"url": "redis://:filepw@db1:6379/2", "password": "filepw"}})
    s = load_redis_settings(path, env={"REDIS_URL": "redis://db9:6390/3", "REDIS_PASSWORD": SECRET})
    assert s.redis.url == "redis://db9:6390/3"
    assert s.redis.password == SECRET
    url = s.connection_url()
    assert url.startswith("redis://:") and url.endswith("@db9:6390/3")
    from redis.connection import parse_url

    assert parse_url(url)["password"] == SECRET


def test_password_field_beats_password_inside_url():
    s = settings_from_dict({"redis": {"url": "redis://user:old@db1:6379/0"}}, env={"REDIS_PASSWORD": SECRET})
    assert s.connection_url().startswith("redis://user:pa%3Ass%40w%2Frd-7Q9@db1")


@pytest.mark.parametrize(
    "data,env",
    [
        ({"redis": {"host": "db1", "password": SECRET}}, {}),
        ({"redis": {"host": "db1"}}, {"REDIS_PASSWORD": SECRET}),
        ({}, {"REDIS_URL": f"redis://:{SECRET.replace('/', '%2F').replace('@', '%40')}@db1:6379/0"}),
        ({"redis": {"url": f"redis://db1/0?password={SECRET.replace('/', '%2F')}"}}, {}),
    ],
    ids=["file", "env password", "env url", "url query"],
)
def test_password_never_shown(data, env):
    s = settings_from_dict(data, env=env)
    shown = [s.redacted_url(), repr(s), str(s), repr(s.redis)]
    for text in shown:
        assert SECRET not in text
        assert SECRET.replace("/", "%2F") not in text
        assert "pa%3Ass" not in text and "pa:ss" not in text
    assert "***" in s.redacted_url()


def test_redact_url_keeps_everything_else():
    assert redact_url("redis://user:pw@h:1/2") == "redis://user:***@h:1/2"
    assert redact_url("redis://h:1/2") == "redis://h:1/2"
    assert redact_url(None) is None


def test_raw_roots(tmp_path):
    path = _write(tmp_path, {"sources": {"robot_1": {"raw_root": "rel/r1"}}, "raw_root_pattern": "/nfs/{source}/raw"})
    s = load_redis_settings(path, env={})
    assert s.raw_root_for("robot_1") == tmp_path / "rel" / "r1"  # relative to the YAML file
    assert s.raw_root_for("robot_7") == Path("/nfs/robot_7/raw")
    with pytest.raises(InvalidIdError):
        s.raw_root_for("../etc")


def test_unknown_source_names_the_key():
    s = settings_from_dict({"sources": {"robot_1": {"raw_root": "/d"}}}, env={})
    with pytest.raises(ConfigError) as info:
        s.raw_root_for("robot_2")
    assert info.value.key == "sources.robot_2"
    assert "robot_1" in str(info.value)
