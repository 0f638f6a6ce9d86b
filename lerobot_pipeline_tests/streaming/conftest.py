"""Fixtures for the Redis streaming tests: a real Redis, one unique key prefix per test.

The server is the local one on 127.0.0.1:6379 (db 15); where none runs (CI without Redis), one
embedded redis-server is started for the session instead. No mocks.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from lerobot_pipeline.streaming.embedded import start_embedded
from lerobot_pipeline.streaming.settings import RedisSettings, settings_from_dict
from lerobot_pipeline.streaming.stream import EpisodeStream, redis_client

LOCAL_URL = "redis://127.0.0.1:6379/15"
ARM_FILES = ("left_slave.parquet", "left_master.parquet", "right_slave.parquet", "right_master.parquet")


@pytest.fixture(scope="session")
def redis_url():
    probe = redis.Redis.from_url(LOCAL_URL, socket_connect_timeout=0.5)
    try:
        probe.ping()
        yield LOCAL_URL
        return
    except redis.RedisError:
        pass
    finally:
        probe.close()
    with start_embedded(db=15) as server:
        yield server.url


@pytest.fixture
def make_settings(redis_url, tmp_path):
    """``make_settings(**sections)``: settings on the test server with a fresh key prefix."""
    prefixes = []

    def make(**data) -> RedisSettings:
        prefix = f"lp_test_{uuid.uuid4().hex[:12]}"
        prefixes.append(prefix)
        data.setdefault("redis", {})
        data["redis"] = {"url": redis_url, "key_prefix": prefix, **data["redis"]}
        data.setdefault("sources", {"robot_1": {"raw_root": str(tmp_path / "raw_robot_1")}})
        return settings_from_dict(data, env={})

    yield make
    for prefix in prefixes:
        cleanup_prefix(redis_url, prefix)


@pytest.fixture
def settings(make_settings) -> RedisSettings:
    return make_settings()


@pytest.fixture
def stream(settings, redis_url):
    s = EpisodeStream(redis_client(redis_url), settings)
    yield s
    s.close()


def write_raw_episode(raw_root: Path, episode_id: str, task: str = "pick_cube", skip: tuple[str, ...] = ()) -> None:
    """The raw files ``find_episode`` looks for (contents are not read by it), minus ``skip``."""
    joints = raw_root / "joints" / task / episode_id
    images = raw_root / "images" / task / episode_id
    joints.mkdir(parents=True)
    images.mkdir(parents=True)
    for name in (*ARM_FILES, "metadata.json"):
        if name not in skip:
            (joints / name).write_bytes(b"{}" if name.endswith(".json") else b"PAR1")
    (images / "metadata.json").write_text(f'{{"episode_id": "{episode_id}"}}')


def cleanup_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` on the server at ``url`` (test teardown)."""
    client = redis_client(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def write_redis_yaml(redis_url, tmp_path):
    """``write_redis_yaml(sources={name: raw_root}, url=None, **sections)``: a redis.yaml under ``tmp_path``
    on the test server (``url`` replaces it) with a fresh key prefix; returns ``(path, settings)``.
    Keys under every prefix handed out are deleted afterwards."""
    from lerobot_pipeline.streaming.settings import load_redis_settings

    written = []

    def write(sources: dict[str, Path] | None = None, *, url: str | None = None, name: str = "redis.yaml",
              **sections) -> tuple[Path, RedisSettings]:
        import yaml

        prefix = f"lp_test_{uuid.uuid4().hex[:12]}"
        data = {
            "redis": {"url": url or redis_url, "key_prefix": prefix},
            "sources": {s: {"raw_root": str(root)} for s, root in (sources or {}).items()},
            "sensor": {"interval_seconds": 1},
            "embedded": {"enabled": False},
            **sections,
        }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        written.append(prefix)
        return path, load_redis_settings(path, env={})

    yield write
    for prefix in written:
        cleanup_prefix(redis_url, prefix)
