"""Settings of the Redis streaming path, loaded from ``configs/redis.yaml`` and validated key by key.

Precedence: the environment variables ``REDIS_URL`` and ``REDIS_PASSWORD`` (when set and not empty)
override ``redis.url`` and ``redis.password`` from the file; the file overrides the defaults below.
``redis.password`` (or ``REDIS_PASSWORD``) also overrides a password written inside the URL.

Which server is used (:attr:`RedisSettings.uses_embedded`):

- ``embedded.enabled: true``: always an embedded server (see ``embedded.py``), whatever else is set;
- ``embedded.enabled: false``: never; the configured server, ``redis://127.0.0.1:6379/<db>`` if none;
- ``embedded.enabled: auto`` (default): embedded exactly when no server is configured, i.e. neither
  ``REDIS_URL`` nor ``redis.url`` nor ``redis.host`` is set. No reachability probe is involved, so
  every process (CLI publisher, Dagster sensor, runs) reading the same file makes the same choice.

Relative paths (``sources.<name>.raw_root``, ``raw_root_pattern``, ``embedded.dir``) are relative to
the directory of the YAML file. The password never appears in ``repr``/``str`` or
:meth:`RedisSettings.redacted_url`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Optional
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import yaml

from lerobot_pipeline.config import _build
from lerobot_pipeline.errors import ConfigError, InvalidIdError
from lerobot_pipeline.ids import validate_source, validate_strategy

CONFIG_PATH_ENV = "LEROBOT_PIPELINE_REDIS_CONFIG"
URL_ENV = "REDIS_URL"
PASSWORD_ENV = "REDIS_PASSWORD"
DEFAULT_HOST = "127.0.0.1"
URL_SCHEMES = ("redis", "rediss", "unix")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$")
_MASK = "***"


def redact_url(url: str | None) -> str | None:
    """``url`` with any password (in the user-info part or a ``password=`` query argument) masked."""
    if url is None:
        return None
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{_MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _MASK if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_with_password(url: str, password: str) -> str:
    """``url`` with its password replaced by ``password`` (percent-encoded), keeping the user name."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0] if at else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}"))


@dataclass(frozen=True, repr=False)
class ConnectionSettings:
    """``redis:`` section. ``host: null`` and ``url: null`` mean "no server configured"."""

    url: Optional[str] = None
    host: Optional[str] = None
    port: int = 6379
    db: int = 0
    password: Optional[str] = None
    key_prefix: str = "lerobot_pipeline"

    def __repr__(self) -> str:
        return (
            f"ConnectionSettings(url={redact_url(self.url)!r}, host={self.host!r}, port={self.port}, "
            f"db={self.db}, password={_MASK if self.password else None!r}, key_prefix={self.key_prefix!r})"
        )


@dataclass(frozen=True)
class StreamSettings:
    """``stream:`` section. The stream key is ``<key_prefix>:<name>``; ``maxlen`` trims approximately."""

    name: str = "episodes"
    maxlen: int = 100_000


@dataclass(frozen=True)
class SourceSettings:
    """One ``sources.<name>:`` entry: where that rig's raw recordings are (absolute after loading)."""

    raw_root: str


@dataclass(frozen=True)
class SensorSettings:
    interval_seconds: int = 5
    max_messages_per_tick: int = 100


@dataclass(frozen=True)
class RetrySettings:
    max_automatic: int = 2


@dataclass(frozen=True)
class EmbeddedSettings:
    """``embedded:`` section. ``dir: null``: a per-user directory under the system temp dir."""

    enabled: Literal["auto", True, False] = "auto"
    port: int = 0
    dir: Optional[str] = None


@dataclass(frozen=True)
class RedisSettings:
    """Everything the publisher, the stream reader and the Dagster sensor need to agree on."""

    redis: ConnectionSettings = field(default_factory=ConnectionSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    sources: dict[str, SourceSettings] = field(default_factory=dict)
    raw_root_pattern: Optional[str] = None
    default_strategy: str = "chunking"
    sensor: SensorSettings = field(default_factory=SensorSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    embedded: EmbeddedSettings = field(default_factory=EmbeddedSettings)

    @property
    def key_prefix(self) -> str:
        return self.redis.key_prefix

    @property
    def stream_key(self) -> str:
        return self.key(self.stream.name)

    def key(self, *parts: str) -> str:
        """A Redis key under this project's prefix, e.g. ``key("status", "robot_1")``."""
        return ":".join((self.redis.key_prefix, *parts))

    @property
    def uses_embedded(self) -> bool:
        enabled = self.embedded.enabled
        if enabled == "auto":
            return self.redis.url is None and self.redis.host is None
        return bool(enabled)

    def connection_url(self) -> str:
        """URL of the configured server, password included: pass it to a client, never log it.

        Meaningless when :attr:`uses_embedded` is true; use ``embedded.ensure_redis`` instead.
        """
        if self.redis.url is not None:
            url = self.redis.url
        else:
            url = f"redis://{self.redis.host or DEFAULT_HOST}:{self.redis.port}/{self.redis.db}"
        if self.redis.password:
            url = url_with_password(url, self.redis.password)
        return url

    def redacted_url(self) -> str:
        """The configured server's URL for logs and messages, password masked as ``***``."""
        if self.uses_embedded:
            return "embedded redis-server on 127.0.0.1"
        return redact_url(self.connection_url())

    def embedded_dir(self) -> Path:
        if self.embedded.dir:
            return Path(self.embedded.dir)
        return Path(tempfile.gettempdir()) / f"lerobot_pipeline_redis_{os.getuid()}"

    def raw_root_for(self, source: str) -> Path:
        """The raw data root of ``source``; :class:`ConfigError` naming ``sources.<source>`` if unknown."""
        validate_source(source)
        if source in self.sources:
            return Path(self.sources[source].raw_root)
        if self.raw_root_pattern:
            return Path(self.raw_root_pattern.format(source=source))
        known = ", ".join(sorted(self.sources)) or "none"
        raise ConfigError(
            f"sources.{source}", f"no raw_root configured for this source and no raw_root_pattern (known: {known})"
        )


# ----------------------------------------------------------------------------- loading / validation

_SECTIONS = {
    "redis": ConnectionSettings,
    "stream": StreamSettings,
    "sensor": SensorSettings,
    "retries": RetrySettings,
    "embedded": EmbeddedSettings,
}
_TOP_KEYS = (*_SECTIONS, "sources", "raw_root_pattern", "default_strategy")


def _absolute(path: str, base_dir: Path | None, key: str) -> str:
    if not path:
        raise ConfigError(key, "must not be empty")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    return os.path.normpath(str(p))


def _check_url(key: str, url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise ConfigError(key, f"URL scheme must be one of {', '.join(URL_SCHEMES)}, got {redact_url(url)!r}")


def _build_sources(data, base_dir: Path | None) -> dict[str, SourceSettings]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("sources", f"expected a mapping of source name to {{raw_root: ...}}, got {type(data).__name__}")
    out = {}
    for name, entry in data.items():
        try:
            validate_source(name)
        except InvalidIdError as e:
            raise ConfigError(f"sources.{name}", str(e)) from e
        src = _build(SourceSettings, entry, f"sources.{name}")
        out[name] = SourceSettings(_absolute(src.raw_root, base_dir, f"sources.{name}.raw_root"))
    return out


def _positive(key: str, value: int, *, allow_zero: bool = False, maximum: int | None = None) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be <= {maximum}, got {value}")


def settings_from_dict(
    data: Mapping | None, *, env: Mapping[str, str] | None = None, base_dir: str | Path | None = None
) -> RedisSettings:
    """Validate ``data`` (the parsed YAML), apply ``REDIS_URL``/``REDIS_PASSWORD`` from ``env``."""
    env = os.environ if env is None else env
    base = Path(base_dir) if base_dir is not None else None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("<root>", f"expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (known keys here: {', '.join(sorted(_TOP_KEYS))})")
    password = data.get("redis", {}).get("password") if isinstance(data.get("redis"), dict) else None
    if password is not None and not isinstance(password, str):
        raise ConfigError("redis.password", "expected a string (quote it in YAML)")  # value not echoed
    sections = {name: _build(cls, data.get(name), name) for name, cls in _SECTIONS.items()}

    conn: ConnectionSettings = sections["redis"]
    if env.get(URL_ENV):
        conn = dataclasses.replace(conn, url=env[URL_ENV])
    if env.get(PASSWORD_ENV):
        conn = dataclasses.replace(conn, password=env[PASSWORD_ENV])
    if conn.url is not None:
        _check_url(URL_ENV if env.get(URL_ENV) else "redis.url", conn.url)
    if conn.host is not None and not conn.host.strip():
        raise ConfigError("redis.host", "must not be empty (use null for 'not configured')")
    _positive("redis.port", conn.port, maximum=65535)
    _positive("redis.db", conn.db, allow_zero=True)
    if not _NAME_RE.match(conn.key_prefix):
        raise ConfigError("redis.key_prefix", f"{conn.key_prefix!r} must match {_NAME_RE.pattern}")

    stream: StreamSettings = sections["stream"]
    if not _NAME_RE.match(stream.name):
        raise ConfigError("stream.name", f"{stream.name!r} must match {_NAME_RE.pattern}")
    _positive("stream.maxlen", stream.maxlen)
    _positive("sensor.interval_seconds", sections["sensor"].interval_seconds)
    _positive("sensor.max_messages_per_tick", sections["sensor"].max_messages_per_tick, maximum=10_000)
    _positive("retries.max_automatic", sections["retries"].max_automatic, allow_zero=True)

    emb: EmbeddedSettings = sections["embedded"]
    if not (emb.enabled == "auto" or isinstance(emb.enabled, bool)):
        raise ConfigError("embedded.enabled", f"expected auto, true or false, got {emb.enabled!r}")
    _positive("embedded.port", emb.port, allow_zero=True, maximum=65535)
    if emb.dir is not None:
        emb = dataclasses.replace(emb, dir=_absolute(emb.dir, base, "embedded.dir"))

    pattern = data.get("raw_root_pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise ConfigError("raw_root_pattern", f"expected a string, got {pattern!r}")
        try:
            ok = "{source}" in pattern and pattern.format(source="x") is not None
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ConfigError("raw_root_pattern", f"{pattern!r} must contain '{{source}}' and no other '{{...}}' field")
        pattern = _absolute(pattern, base, "raw_root_pattern")

    strategy = data.get("default_strategy", RedisSettings.default_strategy)
    try:
        validate_strategy(strategy)
    except InvalidIdError as e:
        raise ConfigError("default_strategy", str(e)) from e

    return RedisSettings(
        redis=conn,
        stream=stream,
        sources=_build_sources(data.get("sources"), base),
        raw_root_pattern=pattern,
        default_strategy=strategy,
        sensor=sections["sensor"],
        retries=sections["retries"],
        embedded=emb,
    )


def load_redis_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> RedisSettings:
    """Read ``path`` (else the file named by ``$LEROBOT_PIPELINE_REDIS_CONFIG``, else the defaults).

    ``env`` defaults to ``os.environ``; only ``REDIS_URL``, ``REDIS_PASSWORD`` and
    ``LEROBOT_PIPELINE_REDIS_CONFIG`` are read from it.
    """
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_PATH_ENV):
        path = env[CONFIG_PATH_ENV]
    if path is None:
        return settings_from_dict({}, env=env)
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("<file>", f"cannot read {p}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("<file>", f"{p} is not valid YAML: {e}") from e
    return settings_from_dict(data, env=env, base_dir=p.resolve().parent)
