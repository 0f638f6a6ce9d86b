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

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pydantic
import yaml
from pydantic import Field, StrictInt, StrictStr

from lerobot_pipeline.config import Strategy
from lerobot_pipeline.errors import ConfigError, InvalidIdError
from lerobot_pipeline.ids import validate_source
from lerobot_pipeline.strict_model import StrictModel, validate

CONFIG_PATH_ENV = "LEROBOT_PIPELINE_REDIS_CONFIG"
URL_ENV = "REDIS_URL"
PASSWORD_ENV = "REDIS_PASSWORD"
DEFAULT_HOST = "127.0.0.1"
URL_SCHEMES = ("redis", "rediss", "unix")
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$"
_MASK = "***"
_BASE_DIR = "base_dir"  # validation context: the YAML file's directory (relative paths start there)


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


def _absolute(path: str, info: pydantic.ValidationInfo) -> str:
    if not path:
        raise ValueError("must not be empty")
    base = info.context.get(_BASE_DIR) if isinstance(info.context, Mapping) else None
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (Path(base) if base is not None else Path.cwd()) / p
    return os.path.normpath(str(p))


def check_url(url: str) -> str:
    if urlsplit(url).scheme not in URL_SCHEMES:
        raise ValueError(f"URL scheme must be one of {', '.join(URL_SCHEMES)}, got {redact_url(url)!r}")
    return url


def _not_blank(host: str) -> str:
    if not host.strip():
        raise ValueError("must not be empty (use null for 'not configured')")
    return host


def _raw_root_pattern(pattern: str) -> str:
    try:
        ok = "{source}" in pattern and pattern.format(source="x") is not None
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{pattern!r} must contain '{{source}}' and no other '{{...}}' field")
    return pattern


AbsolutePath = Annotated[StrictStr, pydantic.AfterValidator(_absolute)]
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN)]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]


class ConnectionSettings(StrictModel):
    """``redis:`` section. ``host: null`` and ``url: null`` mean "no server configured"."""

    url: Annotated[StrictStr, pydantic.AfterValidator(check_url)] | None = None
    host: Annotated[StrictStr, pydantic.AfterValidator(_not_blank)] | None = None
    port: Annotated[Port, Field(gt=0)] = 6379
    db: StrictInt = Field(0, ge=0)
    password: StrictStr | None = Field(None, description="or $REDIS_PASSWORD; never shown")
    key_prefix: Name = "lerobot_pipeline"

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            if name == "url":
                value = redact_url(value)
            elif name == "password":
                value = _MASK if value else None
            yield name, value


class StreamSettings(StrictModel):
    """``stream:`` section. The stream key is ``<key_prefix>:<name>``; ``maxlen`` trims approximately."""

    name: Name = "episodes"
    maxlen: StrictInt = Field(100_000, gt=0)
    dead_letter_maxlen: StrictInt = Field(10_000, gt=0, description="rejected entries kept (approximate trim); "
                                          "a counter keeps the total")


class SourceSettings(StrictModel):
    """One ``sources.<name>:`` entry: where that rig's raw recordings are (absolute after loading)."""

    raw_root: AbsolutePath


class SensorSettings(StrictModel):
    interval_seconds: StrictInt = Field(5, gt=0)
    max_messages_per_tick: StrictInt = Field(100, gt=0, le=10_000, description="run requests per tick")
    max_entries_per_tick: StrictInt = Field(20_000, gt=0, le=1_000_000, description=(
        "entries scanned per tick, valid or rejected: a flood of garbage drains in a few ticks"))


class RetrySettings(StrictModel):
    max_automatic: StrictInt = Field(2, ge=0)


class EmbeddedSettings(StrictModel):
    """``embedded:`` section. ``dir: null``: a per-user directory under the system temp dir."""

    enabled: Literal["auto", True, False] = "auto"
    port: Port = 0
    dir: AbsolutePath | None = None


class RedisSettings(StrictModel):
    """Everything the publisher, the stream reader and the Dagster sensor need to agree on."""

    model_config = pydantic.ConfigDict(title="lerobot_pipeline Redis streaming settings")

    redis: ConnectionSettings = Field(default_factory=ConnectionSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    raw_root_pattern: (
        Annotated[StrictStr, pydantic.AfterValidator(_raw_root_pattern), pydantic.AfterValidator(_absolute)] | None
    ) = None
    default_strategy: Strategy = "chunking"
    sensor: SensorSettings = Field(default_factory=SensorSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)

    @pydantic.field_validator("sources", mode="before")
    @classmethod
    def _source_names(cls, value: Any) -> Any:
        for name in value if isinstance(value, dict) else ():
            try:
                validate_source(name)
            except InvalidIdError as e:
                raise ConfigError(f"sources.{name}", str(e)) from e
        return value

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


# ----------------------------------------------------------------------------- loading


def settings_schema() -> dict:
    """JSON schema of ``configs/redis.yaml``."""
    return RedisSettings.model_json_schema()


def settings_from_dict(
    data: Mapping | None, *, env: Mapping[str, str] | None = None, base_dir: str | Path | None = None
) -> RedisSettings:
    """Validate ``data`` (the parsed YAML), apply ``REDIS_URL``/``REDIS_PASSWORD`` from ``env``."""
    env = os.environ if env is None else env
    context = {_BASE_DIR: Path(base_dir) if base_dir is not None else None}
    settings: RedisSettings = validate(RedisSettings, data, context=context)
    update = {}
    if env.get(URL_ENV):
        try:
            update["url"] = check_url(env[URL_ENV])
        except ValueError as e:
            raise ConfigError(URL_ENV, str(e)) from None
    if env.get(PASSWORD_ENV):
        update["password"] = env[PASSWORD_ENV]
    if update:
        settings = settings.model_copy(update={"redis": settings.redis.model_copy(update=update)})
    return settings


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
