"""The Redis side of streaming conversion: publish, read after a cursor, dead letters, status.

Keys (all under ``<key_prefix>``, see ``settings.py``):

- ``<prefix>:<stream.name>``: the episode stream. Entries are never popped; readers keep the last
  id they processed (the Dagster sensor's cursor) and ``XREAD`` after it. ``XADD`` trims
  approximately to ``stream.maxlen``.
- ``<prefix>:dead_letter``: a stream of rejected entries, one field ``data`` holding JSON
  ``{stream_id, fields, reason, time}``, trimmed approximately to ``stream.dead_letter_maxlen``;
  ``<prefix>:dead_letter_count``: how many were ever rejected (the trim drops records, not the count).
- ``<prefix>:status:<source>``: hash, field ``<episode_id>|<strategy>`` → JSON ``{state, run_id,
  error, updated_at, attempts}``; ``<prefix>:sources``: set of sources that have a status hash;
  ``<prefix>:published``: hash, source → number of ``publish`` calls.

``publish`` sets the status to ``published`` only when the (source, episode, strategy) has none yet,
so publishing an episode again never hides that it is already running, completed or failed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from lerobot_pipeline.errors import PipelineError
from lerobot_pipeline.ids import validate_episode_id, validate_source, validate_strategy
from lerobot_pipeline.streaming.embedded import EmbeddedRedis, ensure_redis
from lerobot_pipeline.streaming.messages import MAX_MESSAGE_BYTES, EpisodeMessage
from lerobot_pipeline.streaming.settings import RedisSettings, redact_url

STATES = ("published", "queued", "running", "completed", "failed")
START_CURSOR = "0-0"
_CURSOR_RE = re.compile(r"^\d{1,20}-\d{1,20}$")
_MAX_ERROR_CHARS = 4000


class StreamError(PipelineError):
    """Redis cannot be reached or used (the URL in the message has its password masked)."""


@dataclass(frozen=True)
class EpisodeStatus:
    source: str
    episode_id: str
    strategy: str
    state: str
    run_id: str | None = None
    error: str | None = None
    updated_at: float | None = None
    attempts: int = 0


@dataclass(frozen=True)
class DeadLetter:
    id: str  # id in the dead-letter stream
    stream_id: str  # id of the rejected entry in the episode stream
    fields: dict[str, str]
    reason: str
    time: float


def redis_client(url: str) -> redis.Redis:
    """A client for ``url`` decoding responses as ``str``, with bounded connect and read timeouts.

    Bytes that are not UTF-8 decode with ``surrogateescape`` instead of raising: one such entry
    written by a broken client must be rejected by the parser, not fail every read of the stream."""
    return redis.Redis.from_url(
        url, decode_responses=True, encoding_errors="surrogateescape", socket_connect_timeout=5, socket_timeout=30,
        health_check_interval=30,
    )


def _clip(value: object, limit: int) -> str:
    if isinstance(value, str):  # undecodable bytes (surrogate escapes) shown as U+FFFD in the record
        value = value.encode("utf-8", "surrogateescape")
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more characters]"


class EpisodeStream:
    """One project's episode stream, dead letters and status hashes in one Redis database."""

    def __init__(self, client: redis.Redis, settings: RedisSettings, *, embedded: EmbeddedRedis | None = None):
        if not client.get_connection_kwargs().get("decode_responses"):
            raise StreamError("EpisodeStream needs a client created with decode_responses=True")
        self.client = client
        self.settings = settings
        self.embedded = embedded
        self.stream_key = settings.stream_key
        self.dead_letter_key = settings.key("dead_letter")
        self.dead_letter_count_key = settings.key("dead_letter_count")
        self.sources_key = settings.key("sources")
        self.published_key = settings.key("published")

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> EpisodeStream:
        """Connect to the configured server, or to the shared embedded one (started if needed)."""
        url, handle = ensure_redis(settings)
        stream = cls(redis_client(url), settings, embedded=handle)
        stream.ping(redact_url(url))
        return stream

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> EpisodeStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ping(self, where: str | None = None) -> None:
        try:
            self.client.ping()
        except redis.AuthenticationError as e:
            raise StreamError(f"Redis at {where or self.settings.redacted_url()} refused the connection's password "
                              f"(set REDIS_PASSWORD or redis.password): {e}") from e
        except redis.RedisError as e:
            raise StreamError(f"cannot reach Redis at {where or self.settings.redacted_url()}: {e}") from e

    def status_key(self, source: str) -> str:
        return self.settings.key("status", validate_source(source))

    # ------------------------------------------------------------------------- stream

    def publish(self, msg: EpisodeMessage) -> str:
        """Append ``msg`` (XADD, approximate MAXLEN trim) and return its stream id, atomically with
        the published counter and a first ``published`` status."""
        fields = msg.to_fields()
        status = self._status_json("published", None, None, 0)
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.stream_key, fields, maxlen=self.settings.stream.maxlen, approximate=True)
        pipe.hincrby(self.published_key, msg.source, 1)
        pipe.hsetnx(self.status_key(msg.source), msg.status_field, status)
        pipe.sadd(self.sources_key, msg.source)
        return pipe.execute()[0]

    def read_after(self, cursor: str | None, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` entries with ids strictly after ``cursor`` (``"0-0"`` when None), oldest
        first. Non-blocking and non-destructive."""
        cursor = START_CURSOR if cursor is None else cursor
        if not isinstance(cursor, str) or not _CURSOR_RE.match(cursor):
            raise StreamError(f"invalid stream cursor {cursor!r}: expected '<ms>-<seq>'")
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise StreamError(f"count must be a positive integer, got {count!r}")
        resp = self.client.xread({self.stream_key: cursor}, count=count)
        if not resp:
            return []
        entries = resp[self.stream_key][0] if isinstance(resp, dict) else resp[0][1]
        return [(entry_id, dict(fields)) for entry_id, fields in entries]

    def length(self) -> int:
        return self.client.xlen(self.stream_key)

    def last_id(self) -> str | None:
        """Id of the newest entry, or None for an empty stream."""
        newest = self.client.xrevrange(self.stream_key, count=1)
        return newest[0][0] if newest else None

    # ------------------------------------------------------------------------- dead letters

    def dead_letter(self, stream_id: str, fields: Mapping, reason: str) -> str:
        """Record a rejected entry with the reason; returns its id in the dead-letter stream."""
        return self.dead_letter_many([(stream_id, fields, reason)])[0]

    def dead_letter_many(self, rejected: list[tuple[str, Mapping, str]]) -> list[str]:
        """Record rejected entries ``(stream_id, fields, reason)`` in one round trip; the record is
        capped at ``stream.dead_letter_maxlen`` (approximately) and the counter counts every one."""
        if not rejected:
            return []
        pipe = self.client.pipeline(transaction=False)
        for stream_id, fields, reason in rejected:
            items = list(fields.items())[:32] if isinstance(fields, Mapping) else [("<not a mapping>", fields)]
            record = {
                "stream_id": str(stream_id),
                "fields": {_clip(k, 256): _clip(v, MAX_MESSAGE_BYTES) for k, v in items},
                "reason": _clip(reason, _MAX_ERROR_CHARS),
                "time": time.time(),
            }
            data = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
            pipe.xadd(self.dead_letter_key, {"data": data}, maxlen=self.settings.stream.dead_letter_maxlen,
                      approximate=True)
        pipe.incrby(self.dead_letter_count_key, len(rejected))
        return pipe.execute()[:-1]

    def dead_letter_count(self) -> int:
        """How many entries were ever rejected (more than the capped record may still hold)."""
        return int(self.client.get(self.dead_letter_count_key) or 0)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        out = []
        for dl_id, f in self.client.xrevrange(self.dead_letter_key, count=limit):
            try:
                rec = json.loads(f["data"])
                out.append(DeadLetter(dl_id, rec["stream_id"], rec["fields"], rec["reason"], rec["time"]))
            except (KeyError, TypeError, ValueError):
                out.append(DeadLetter(dl_id, "", dict(f), "unreadable dead-letter record", 0.0))
        return out

    # ------------------------------------------------------------------------- status

    @staticmethod
    def _status_json(state: str, run_id: str | None, error: str | None, attempts: int) -> str:
        rec = {"state": state, "run_id": run_id, "error": error, "updated_at": time.time(), "attempts": attempts}
        return json.dumps(rec, separators=(",", ":"))

    def set_status(
        self,
        source: str,
        episode_id: str,
        strategy: str,
        state: str,
        *,
        run_id: str | None = None,
        error: str | None = None,
        attempts: int | None = None,
    ) -> EpisodeStatus:
        """Record the state of one (source, episode, strategy) and return the stored record.

        ``run_id`` None keeps the previous run id. ``error`` is stored as given (so a new state
        clears an old error). ``attempts`` None keeps the previous count, plus one when the state
        becomes ``running`` under a run id not seen before.
        """
        if state not in STATES:
            raise StreamError(f"unknown status state {state!r}: expected one of {', '.join(STATES)}")
        key = self.status_key(source)
        field = f"{validate_episode_id(episode_id)}|{validate_strategy(strategy)}"
        error = None if error is None else _clip(error, _MAX_ERROR_CHARS)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    prev = _parse_status(source, field, pipe.hget(key, field))
                    new_run = run_id if run_id is not None else (prev.run_id if prev else None)
                    n = attempts
                    if n is None:
                        n = prev.attempts if prev else 0
                        if state == "running" and (prev is None or prev.run_id != new_run or prev.state != "running"):
                            n += 1
                    pipe.multi()
                    pipe.hset(key, field, self._status_json(state, new_run, error, n))
                    pipe.sadd(self.sources_key, source)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        return self.status_of(source, episode_id, strategy)

    def status_of(self, source: str, episode_id: str, strategy: str) -> EpisodeStatus | None:
        field = f"{validate_episode_id(episode_id)}|{validate_strategy(strategy)}"
        return _parse_status(source, field, self.client.hget(self.status_key(source), field))

    def get_status(self, source: str) -> dict[str, EpisodeStatus]:
        """Every status of ``source``, keyed ``<episode_id>|<strategy>``, sorted by that key.
        Unreadable records (not written by this module) are left out."""
        raw = self.client.hgetall(self.status_key(source))
        parsed = {f: _parse_status(source, f, v) for f, v in sorted(raw.items())}
        return {f: s for f, s in parsed.items() if s is not None}

    def delete_status(self, source: str, episode_id: str, strategy: str) -> bool:
        """Forget one status (e.g. to clear a failure); True if there was one."""
        field = f"{validate_episode_id(episode_id)}|{validate_strategy(strategy)}"
        return bool(self.client.hdel(self.status_key(source), field))

    def sources(self) -> list[str]:
        """Every source that published or has a status, sorted."""
        return sorted(self.client.smembers(self.sources_key))

    def published_count(self, source: str) -> int:
        """How many times ``source`` published (re-publishing the same episode counts again)."""
        return int(self.client.hget(self.published_key, validate_source(source)) or 0)


def _parse_status(source: str, field: str, value: Any) -> EpisodeStatus | None:
    if value is None:
        return None
    episode_id, sep, strategy = field.partition("|")
    try:
        rec = json.loads(value)
        if not sep or rec["state"] not in STATES:
            return None
        return EpisodeStatus(
            source=source,
            episode_id=episode_id,
            strategy=strategy,
            state=rec["state"],
            run_id=rec.get("run_id"),
            error=rec.get("error"),
            updated_at=rec.get("updated_at"),
            attempts=int(rec.get("attempts") or 0),
        )
    except (KeyError, TypeError, ValueError):
        return None
