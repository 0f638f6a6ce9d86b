import json
import os
import signal
import stat
import subprocess
import sys

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lerobot_pipeline.streaming.embedded import STATE_FILE, ensure_redis, find_embedded, start_embedded
from lerobot_pipeline.streaming.messages import EpisodeMessage
from lerobot_pipeline.streaming.settings import settings_from_dict
from lerobot_pipeline.streaming.stream import EpisodeStream, redis_client


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _embedded_settings(tmp_path, **embedded):
    return settings_from_dict({"embedded": {"enabled": True, "dir": str(tmp_path / "emb"), **embedded}}, env={})


def test_start_and_stop_a_real_server():
    server = start_embedded()
    pid, directory = server.pid, server.directory
    try:
        client = redis_client(server.url)
        assert client.ping()
        client.close()
        listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and {addr.ip for addr in listening} == {"127.0.0.1"}
        with pytest.raises(redis.AuthenticationError):  # a password is required ...
            redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0)).ping()
        assert server.password not in " ".join(psutil.Process(pid).cmdline())  # ... and not visible in ps
        assert server.password not in repr(server)
    finally:
        server.stop()
    assert _gone(pid)
    assert not directory.exists()


def test_context_manager_stops_the_server(tmp_path):
    with start_embedded(tmp_path / "srv") as server:
        pid = server.pid
        assert server.is_running()
    assert _gone(pid) and not server.is_running()


def test_configured_server_needs_no_embedded():
    settings = settings_from_dict({"redis": {"host": "127.0.0.1", "port": 6379, "db": 15}}, env={})
    assert ensure_redis(settings) == ("redis://127.0.0.1:6379/15", None)


def test_ensure_redis_shares_one_server_and_replaces_a_dead_one(tmp_path):
    settings = _embedded_settings(tmp_path)
    url, first = ensure_redis(settings)
    handles = [first]
    try:
        assert first.started
        state_path = tmp_path / "emb" / STATE_FILE
        assert json.loads(state_path.read_text())["pid"] == first.pid
        assert stat.S_IMODE(state_path.stat().st_mode) == 0o600  # it holds the password

        url2, again = ensure_redis(settings)  # e.g. the Dagster sensor after the CLI publisher
        assert (url2, again.pid, again.started) == (url, first.pid, False)

        # another process finds the same server through the state file
        code = (
            "import sys\n"
            "from lerobot_pipeline.streaming.embedded import ensure_redis\n"
            "from lerobot_pipeline.streaming.settings import settings_from_dict\n"
            "settings = settings_from_dict({'embedded': {'enabled': True, 'dir': sys.argv[1]}}, env={})\n"
            "print(ensure_redis(settings)[1].pid)\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "emb")], capture_output=True, text=True,
                             check=True, timeout=60)
        assert int(out.stdout.strip()) == first.pid

        with EpisodeStream(redis_client(url), settings) as s:
            s.publish(EpisodeMessage.new("episode_0001", "robot_1", "nearest"))
            assert s.length() == 1

        os.kill(first.pid, signal.SIGKILL)  # the server crashes
        first._process.wait()
        assert find_embedded(tmp_path / "emb") is None
        url3, third = ensure_redis(settings)
        handles.append(third)
        assert third.started and third.pid != first.pid
        assert redis_client(url3).ping()
    finally:
        for handle in handles:
            handle.stop()
    assert all(_gone(h.pid) for h in handles) and len(handles) == 2
    assert not (tmp_path / "emb" / STATE_FILE).exists()


def test_stream_from_settings_uses_the_embedded_server(tmp_path):
    settings = _embedded_settings(tmp_path)
    with EpisodeStream.from_settings(settings) as s:
        try:
            assert s.embedded is not None and s.embedded.started
            s.publish(EpisodeMessage.new("episode_0001", "robot_1", "nearest"))
            assert [f for _, f in s.read_after(None, 10)]
        finally:
            s.embedded.stop()
    assert _gone(s.embedded.pid)
