"""Streaming conversion end to end: rigs publish to a real Redis, a real ``dagster-daemon`` runs the stream
sensor and the conversions, the episodes arrive in the chunking dataset.

Real parts only: Redis (db 15 on the local server, one key prefix per world; the Redis-outage test starts
its own redis-server), a Dagster instance in a temporary DAGSTER_HOME (``configs/dagster.yaml``), the
daemon as a subprocess group (always stopped in teardown), tiny sample episodes (1.5 s, 64x48).

Scenarios a-d share one daemon (module fixture) and use distinct sources, so their assertions stay
independent. The Redis-outage scenario (e, its own redis-server) and the mid-conversion crash (f) have
their own instance and daemon and come first in the file, so that no two
daemons run at once. Every wait is bounded, and every test has a hard SIGALRM timeout.

Note: the interval env vars are 1 s, but Dagster's sensor daemon loops at most every 5 s
(``MIN_INTERVAL_LOOP_TIME``) and the run queue is polled every 5 s, so ticks come about every 5 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from lerobot_pipeline import monitor
from lerobot_pipeline.core.dataset import read_provenance
from lerobot_pipeline.daemon import DaemonProcess
from lerobot_pipeline.defs.jobs import convert_episode_job
from lerobot_pipeline.defs.resources import (
    PACKAGE_CONFIGS,
    PipelineResource,
    RedisStreamResource,
)
from lerobot_pipeline.defs.stream_sensor import stream_tick
from lerobot_pipeline.sample_data import generate_dataset
from lerobot_pipeline.streaming.embedded import start_embedded
from lerobot_pipeline.streaming.publisher import publish_episode
from lerobot_pipeline.streaming.settings import load_redis_settings
from lerobot_pipeline.streaming.stream import EpisodeStream

from .conftest import cleanup_prefix

pytestmark = pytest.mark.slow

STRATEGY = "chunking"
SENSOR = "episode_stream_sensor"
RUN_KEY_TAG = "dagster/run_key"
WAIT_S = 120          # every single wait is bounded by this
TEST_TIMEOUT_S = 300  # hard limit per test (SIGALRM)
EPISODES = ("episode_0000", "episode_0001")


@pytest.fixture(autouse=True)
def hard_timeout():
    def expired(signum, frame):
        raise TimeoutError(f"test exceeded its hard timeout of {TEST_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _sid(stream_id: str | None) -> tuple[int, int]:
    if not stream_id:
        return (0, 0)
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamWorld:
    """Raw data of some rigs, a redis.yaml, a work dir, a Dagster instance and a daemon (not started)."""

    episodes, seconds, size = EPISODES, 1.5, (64, 48)  # the sample recordings of every source
    wait_cap = WAIT_S  # upper bound of any single wait

    def __init__(self, base: Path, redis_url: str, sources: list[str], mp: pytest.MonkeyPatch, *, seed: int,
                 prefix: str):
        self.base, self.redis_url, self.prefix = base, redis_url, prefix
        self.home, self.work, self.raw = base / "dagster_home", base / "work", base / "raw"
        self.home.mkdir(parents=True)
        shutil.copy(PACKAGE_CONFIGS / "dagster.yaml", self.home / "dagster.yaml")
        generate_dataset(self.raw, episodes=len(self.episodes), seconds=self.seconds, size=self.size, sources=sources,
                         seed=seed)
        self.redis_yaml = base / "redis.yaml"
        self.redis_yaml.write_text(yaml.safe_dump({
            "redis": {"url": redis_url, "key_prefix": prefix},
            "sources": {s: {"raw_root": str(self.raw / s)} for s in sources},
            "default_strategy": STRATEGY,
            "sensor": {"interval_seconds": 1},
            "embedded": {"enabled": False},
        }, sort_keys=False))
        for var in ("REDIS_URL", "REDIS_PASSWORD", "LEROBOT_PIPELINE_CONFIG_DIR", "ROBOT_ID"):
            mp.delenv(var, raising=False)
        mp.setenv("DAGSTER_HOME", str(self.home))
        mp.setenv("LEROBOT_PIPELINE_WORK_DIR", str(self.work))
        mp.setenv("LEROBOT_PIPELINE_REDIS_CONFIG", str(self.redis_yaml))
        mp.setenv("LEROBOT_PIPELINE_STREAM_INTERVAL_SECONDS", "1")
        mp.setenv("LEROBOT_PIPELINE_REFRESH_SECONDS", "1")
        mp.setenv("LEROBOT_PIPELINE_REFRESH_QUIET_SECONDS", "3")
        mp.setenv("LEROBOT_PIPELINE_ORPHAN_SECONDS", "2")
        self.settings = load_redis_settings(self.redis_yaml)
        self.pipeline = PipelineResource(work_dir=str(self.work), redis_config=str(self.redis_yaml))
        self.redis_stream = RedisStreamResource(config_path=str(self.redis_yaml))
        self.instance = dg.DagsterInstance.get()
        self.instance.get_run_records(limit=1)  # create the SQLite storage before the daemon opens it too
        self.daemon = DaemonProcess(os.environ.copy(), base / "daemon.log")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.daemon.alive():
            self.daemon.stop()  # reap a dead one, if any
            self.daemon.start()

    def close(self) -> None:
        try:
            self.daemon.stop()
        finally:
            self.instance.dispose()
            cleanup_prefix(self.redis_url, self.prefix)

    # ------------------------------------------------------------------ publishing

    def publish(self, source: str, episode_id: str) -> str:
        return publish_episode(episode_id, source=source, strategy=STRATEGY, settings=self.settings)

    def stream(self) -> EpisodeStream:
        return EpisodeStream.from_settings(self.settings)

    # ------------------------------------------------------------------ what the instance knows

    def runs(self, run_key: str) -> list[dg.RunRecord]:
        return list(self.instance.get_run_records(
            dg.RunsFilter(job_name=convert_episode_job.name, tags={RUN_KEY_TAG: run_key})))

    def partition_runs(self, run_key: str) -> list[dg.RunRecord]:
        """Every run of the partition, including run-retry attempts (which need not carry the run key)."""
        return list(self.instance.get_run_records(
            dg.RunsFilter(job_name=convert_episode_job.name, tags={"dagster/partition": run_key})))

    def sensor_state(self):
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name == SENSOR:
                return state
        return None

    def sensor_cursor(self) -> str | None:
        state = self.sensor_state()
        return state.instigator_data.cursor if state is not None and state.instigator_data else None

    def ticks(self, limit: int = 20):
        state = self.sensor_state()
        if state is None:
            return []
        return list(self.instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=limit))

    def dataset_keys(self) -> set[str]:
        try:
            return {row["episode_key"] for row in read_provenance(self.pipeline.dataset_dir(STRATEGY))}
        except (OSError, ValueError, KeyError):  # being rewritten right now: ask again
            return set()

    # ------------------------------------------------------------------ waiting

    def diagnostics(self) -> str:
        lines = [f"daemon alive: {self.daemon.alive()}", f"sensor cursor: {self.sensor_cursor()}"]
        for rec in self.instance.get_run_records(limit=30):
            run = rec.dagster_run
            lines.append(f"  run {run.run_id[:8]} {run.job_name} {run.status.value} key={run.tags.get(RUN_KEY_TAG)}")
        for tick in self.ticks(5):
            error = tick.error.message[:300] if tick.error else ''
            lines.append(f"  tick {tick.status.value} {tick.skip_reason or ''} {error}")
        log = self.base / "daemon.log"
        if log.is_file():
            lines.append("daemon log tail:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(lines)

    def wait_for(self, what: str, predicate, timeout: float = WAIT_S, need_daemon: bool = True):
        deadline = time.monotonic() + min(timeout, self.wait_cap)
        while True:
            value = predicate()
            if value:
                return value
            if need_daemon and not self.daemon.alive():
                pytest.fail(f"dagster-daemon died while waiting for {what}\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(0.5)

    def wait_converted(self, pairs: list[tuple[str, str]], timeout: float = WAIT_S, retries: bool = False) -> None:
        """Every (source, episode) has a successful conversion run and is in the chunking dataset.

        With ``retries`` a failed attempt is expected to be followed by a run retry, so failures do not
        end the wait early."""
        run_keys = {f"{s}.{e}|{STRATEGY}" for s, e in pairs}
        episode_keys = {f"{s}.{e}" for s, e in pairs}
        runs_of = self.partition_runs if retries else self.runs

        def done():
            for key in run_keys:
                statuses = [r.dagster_run.status for r in runs_of(key)]
                if dg.DagsterRunStatus.SUCCESS in statuses:
                    continue
                if not retries and statuses and all(st in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
                                                    for st in statuses):  # fail fast, with the run's error
                    run_id = self.runs(key)[0].dagster_run.run_id
                    pytest.fail(f"conversion {key} failed: {monitor.run_error(self.instance, run_id)}\n"
                                f"{self.diagnostics()}")
                return False
            return episode_keys <= self.dataset_keys()

        self.wait_for(f"{sorted(episode_keys)} converted and in the dataset", done, timeout)

    def wait_sensor_past(self, stream_id: str, timeout: float = 60) -> None:
        self.wait_for(f"the stream sensor's cursor to pass {stream_id}",
                      lambda: _sid(self.sensor_cursor()) >= _sid(stream_id), timeout)

    def assert_exactly_once(self, pairs: list[tuple[str, str]]) -> None:
        for source, episode_id in pairs:
            key = f"{source}.{episode_id}|{STRATEGY}"
            recs = self.runs(key)
            statuses = [r.dagster_run.status for r in recs]
            assert statuses == [dg.DagsterRunStatus.SUCCESS], f"{key}: runs {statuses}\n{self.diagnostics()}"
            tags = recs[0].dagster_run.tags
            assert tags["dagster/sensor_name"] == SENSOR
            assert tags["dagster/partition"] == key


# ----------------------------------------------------------------------------- e. Redis outage (own server)


@pytest.fixture
def outage_world(tmp_path_factory):
    """A world on its own redis-server (``world.servers[-1]`` is the current one); all stopped afterwards."""
    base = tmp_path_factory.mktemp("stream_outage")
    servers = [start_embedded(directory=base / "redis", port=_free_port())]
    try:
        with pytest.MonkeyPatch.context() as mp:
            world = StreamWorld(base, servers[0].url, ["robot_1"], mp, seed=11, prefix=f"lp_e2e_{base.name}")
            world.servers = servers
            try:
                yield world
            finally:
                world.daemon.stop()
                world.instance.dispose()
    finally:
        for server in servers:
            server.stop()


def test_e_redis_outage_skips_with_a_reason_then_resumes(outage_world):
    """Runs first: its daemon is gone before the shared one starts."""
    w = outage_world
    server = w.servers[0]
    password = server.password
    assert password and password in w.settings.connection_url()
    w.start()
    w.publish("robot_1", "episode_0000")
    w.wait_converted([("robot_1", "episode_0000")])

    server.stop()  # returns once the process is gone: every tick that starts later finds no server
    stopped_at = time.time()

    def outage_ticks(n: int):
        def enough():
            ticks = [t for t in w.ticks(10) if t.timestamp > stopped_at and t.status != TickStatus.STARTED]
            return ticks if len(ticks) >= n else None
        return enough

    (tick,) = w.wait_for("a sensor tick after Redis stopped", outage_ticks(1), timeout=60)
    assert tick.status == TickStatus.SKIPPED, tick
    assert "Redis unreachable" in tick.skip_reason
    assert f"127.0.0.1:{server.port}" in tick.skip_reason
    assert password not in tick.skip_reason
    cursor_during_outage = w.sensor_cursor()

    context = dg.build_sensor_context(instance=w.instance, cursor=cursor_during_outage)
    result = stream_tick(context, w.redis_stream, w.pipeline)
    assert isinstance(result, dg.SkipReason) and "Redis unreachable" in result.skip_message
    assert password not in result.skip_message
    assert context.cursor == cursor_during_outage

    ticks = w.wait_for("another sensor tick during the outage", outage_ticks(2), timeout=60)
    assert all(t.status == TickStatus.SKIPPED and "Redis unreachable" in t.skip_reason for t in ticks), ticks
    assert w.daemon.alive()  # the daemon keeps going; the cursor stays where it was
    assert w.sensor_cursor() == cursor_during_outage

    w.servers.append(start_embedded(directory=w.base / "redis", port=server.port, password=password))
    w.publish("robot_1", "episode_0001")
    w.wait_converted([("robot_1", "episode_0001")])
    w.assert_exactly_once([("robot_1", "episode_0000"), ("robot_1", "episode_0001")])


# ----------------------------------------------------------------------------- f. crash in the middle of a run


@pytest.fixture
def crash_world(tmp_path_factory, redis_url):
    base = tmp_path_factory.mktemp("stream_crash")
    with pytest.MonkeyPatch.context() as mp:
        w = StreamWorld(base, redis_url, ["robot_6"], mp, seed=13, prefix=f"lp_e2e_{base.name}")
        try:
            yield w
        finally:
            w.close()


def test_f_daemon_killed_in_the_middle_of_a_conversion(crash_world):
    """A run whose worker died with the daemon is marked failed by orphaned_run_sensor after the restart
    (Dagster's default launcher cannot see dead workers), and run retries convert the episode again."""
    w = crash_world
    w.start()
    pairs = [("robot_6", e) for e in EPISODES]
    keys = [f"{s}.{e}|{STRATEGY}" for s, e in pairs]
    for s, e in pairs:
        w.publish(s, e)

    def a_run_is_executing():
        return any(r.dagster_run.status == dg.DagsterRunStatus.STARTED for k in keys for r in w.runs(k))

    w.wait_for("a conversion run to start executing", a_run_is_executing, timeout=60)
    w.daemon.kill()  # the daemon, its code server and the run workers, as a crash of the machine would
    w.start()
    # a run killed while executing: orphaned_run_sensor fails it within seconds; one killed while launching
    # (no worker yet): run monitoring's start timeout (60 s in configs/dagster.yaml); then run retries
    w.wait_converted(pairs, timeout=200, retries=True)
    for key in keys:  # a failed attempt plus its retry is fine; one success and nothing left in flight
        statuses = [r.dagster_run.status for r in w.partition_runs(key)]
        assert statuses.count(dg.DagsterRunStatus.SUCCESS) == 1, (key, statuses)
        assert not set(statuses) & {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                                    dg.DagsterRunStatus.STARTED}, (key, statuses)


# ----------------------------------------------------------------------------- a-d: one shared daemon


@pytest.fixture(scope="module")
def world(tmp_path_factory, redis_url):
    base = tmp_path_factory.mktemp("stream_e2e")
    with pytest.MonkeyPatch.context() as mp:
        w = StreamWorld(base, redis_url, ["robot_1", "robot_2", "robot_3", "robot_4", "robot_5"], mp, seed=7,
                        prefix=f"lp_e2e_{base.name}")
        try:
            yield w
        finally:
            w.close()


@pytest.fixture
def running(world):
    """The shared world with its daemon running (tests b and c stop or kill it)."""
    world.start()
    return world


def test_a_two_sources_every_episode_converted_exactly_once(running):
    w = running
    pairs = [("robot_1", "episode_0000"), ("robot_1", "episode_0001"),
             ("robot_2", "episode_0000"), ("robot_2", "episode_0001")]
    for source, episode_id in pairs:
        w.publish(source, episode_id)
    w.wait_converted(pairs)
    w.assert_exactly_once(pairs)
    keys = w.dataset_keys()
    assert {"robot_1.episode_0000", "robot_2.episode_0000"} <= keys  # same id on two rigs: two episodes

    again = w.publish("robot_1", "episode_0000")
    w.wait_sensor_past(again)
    time.sleep(2)  # a tick or two more: nothing may be launched for it
    w.assert_exactly_once(pairs)
    assert sum(1 for r in read_provenance(w.pipeline.dataset_dir(STRATEGY))
               if r["episode_key"] == "robot_1.episode_0000") >= 1


def test_b_published_while_the_daemon_is_down(running):
    w = running
    w.daemon.stop()
    assert not w.daemon.alive()
    pairs = [("robot_3", e) for e in EPISODES]
    ids = [w.publish(s, e) for s, e in pairs]
    time.sleep(1)
    assert all(not w.runs(f"{s}.{e}|{STRATEGY}") for s, e in pairs)
    assert _sid(w.sensor_cursor()) < _sid(ids[0])
    w.start()
    w.wait_converted(pairs)
    w.assert_exactly_once(pairs)


def test_c_daemon_killed_while_processing_loses_and_duplicates_nothing(running):
    w = running
    w.wait_for("the stream sensor's first tick", lambda: w.ticks(1), timeout=60)
    pairs = [("robot_4", e) for e in EPISODES]
    keys = [f"{s}.{e}|{STRATEGY}" for s, e in pairs]
    published_at = time.time()
    ids = [w.publish(s, e) for s, e in pairs]

    def tick_in_progress():  # the first tick after publishing has started: kill it right there
        ticks = w.ticks(3)
        return [t for t in ticks if t.timestamp >= published_at and t.status == TickStatus.STARTED] or (
            [t for t in ticks if t.timestamp >= published_at] and "tick already done")

    deadline = time.monotonic() + 60
    seen = None
    while seen is None and time.monotonic() < deadline:
        seen = tick_in_progress() or None
        if seen is None:
            time.sleep(0.02)
    w.daemon.kill()
    assert seen is not None, f"no sensor tick within 60 s of publishing\n{w.diagnostics()}"
    at_kill = {k: [r.dagster_run.status for r in w.runs(k)] for k in keys}
    what = seen if isinstance(seen, str) else [(t.status.value, t.timestamp, t.run_keys) for t in seen]
    print(f"killed during {what}; runs at kill: {at_kill}; cursor at kill: {w.sensor_cursor()}")
    if any(st not in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED) for sts in at_kill.values()
           for st in sts):
        pytest.skip(f"the kill landed after a conversion run was launched ({at_kill}): that is test_f's case")

    w.start()
    w.wait_converted(pairs)
    w.wait_sensor_past(ids[-1])
    w.assert_exactly_once(pairs)


def test_d_malformed_and_hostile_messages_are_dead_lettered(running):
    w = running
    s = w.stream()
    try:
        first = w.publish("robot_5", "episode_0000")
        malformed = s.client.xadd(s.stream_key, {"data": "this is {not json"})
        hostile = s.client.xadd(s.stream_key, {"data": json.dumps(
            {"episode_id": "../../etc/passwd", "source": "robot_5", "strategy": STRATEGY, "timestamp": time.time()})})
        last = w.publish("robot_5", "episode_0001")
        pairs = [("robot_5", e) for e in EPISODES]
        w.wait_converted(pairs)
        w.wait_sensor_past(last)
        w.assert_exactly_once(pairs)
        assert _sid(first) < _sid(malformed) < _sid(hostile) < _sid(last)

        letters = {d.stream_id: d for d in s.dead_letters(100)}
        assert set(letters) >= {malformed, hostile}
        assert "not valid JSON" in letters[malformed].reason
        assert "invalid episode id" in letters[hostile].reason
        assert letters[malformed].fields == {"data": "this is {not json"}

        text = monitor.format_views(monitor.collect(s, w.instance), s.dead_letters(100), verbose=True)
        assert "rejected messages (dead letters)" in text
        for sid in (malformed, hostile):
            assert f"{sid}: {letters[sid].reason}" in text
        robot_5 = next(line for line in text.splitlines() if line.startswith("robot_5 "))
        assert robot_5.split()[1:6] == ["2", "0", "0", "2", "0"], text  # published pending running completed failed
        assert "passwd" not in " ".join(w.instance.get_dynamic_partitions("episode"))
        assert not (w.work / "etc").exists() and not any(w.work.rglob("passwd"))
    finally:
        s.close()

