"""`monitor --watch` piped: plain lines (no terminal control codes), a view written only when it changes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import yaml

from lerobot_pipeline.streaming.messages import EpisodeMessage


def test_monitor_watch_prints_plain_lines_when_piped(settings, redis_url, tmp_path):
    stream_cfg = tmp_path / "redis.yaml"
    stream_cfg.write_text(yaml.safe_dump({"redis": {"url": redis_url, "key_prefix": settings.key_prefix},
                                          "sources": {"robot_1": {"raw_root": str(tmp_path / "raw")}}}))
    from lerobot_pipeline.streaming.stream import EpisodeStream

    stream = EpisodeStream.from_settings(settings)
    try:
        stream.publish(EpisodeMessage("episode_0000", "robot_1", "chunking", timestamp=time.time()))
    finally:
        stream.close()
    env = {**os.environ, "LEROBOT_PIPELINE_REDIS_CONFIG": str(stream_cfg)}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "lerobot_pipeline", "monitor", "--watch", "--interval", "0.1", "--iterations", "3",
         "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out
    lines = out.splitlines()
    assert "127.0.0.1:6379" in lines[0]  # the header: time and the redacted server URL
    assert lines[1].split()[:3] == ["source", "published", "pending"]
    assert lines[2].split()[:3] == ["robot_1", "1", "1"]  # published once, its conversion still pending
    assert len(lines) == 3  # three refreshes of an unchanged view: written once
