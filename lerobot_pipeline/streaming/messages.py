"""The one message a recording rig publishes per finished episode, and its strict parser.

Wire format: a stream entry with exactly one field, ``data``, holding compact JSON (UTF-8, at most
8 KiB)::

    data = {"config_overrides":{"alignment.window_ms":30},"episode_id":"episode_0007",
            "source":"robot_1","strategy":"window","timestamp":1764143235.47}

``episode_id``, ``source``, ``strategy`` and ``timestamp`` (seconds since the epoch) are required,
``config_overrides`` is optional. One JSON field keeps the types (numbers, nested overrides) and
makes the size check a single length test. Nothing is ever unpickled or evaluated.

Messages arrive over the network, so :meth:`EpisodeMessage.from_fields` rejects with
:class:`MessageError` anything not exactly as above: ids failing ``ids.py``, unknown strategies,
and ``config_overrides`` that are not a flat ``{"section.key": scalar}`` mapping of known
conversion keys. Overrides may only touch ``robot``, ``cameras``, ``sync``, ``alignment``,
``filtering`` and ``video``: ``output.*`` and ``input.*`` could redirect where files are read or
written and are refused, and so are ``alignment.strategy`` (the ``strategy`` field is the one
source of truth, it is also the Dagster partition) and ``video.extra_options.*`` (free-form encoder
options, some of which name files).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lerobot_pipeline.config import PipelineConfig, _build, merge_overrides
from lerobot_pipeline.errors import ConfigError, InvalidIdError, PipelineError
from lerobot_pipeline.ids import episode_key, validate_episode_id, validate_source, validate_strategy

MAX_MESSAGE_BYTES = 8 * 1024
DATA_FIELD = "data"
OVERRIDE_SECTIONS = ("robot", "cameras", "sync", "alignment", "filtering", "video")
FORBIDDEN_OVERRIDES = {
    "alignment.strategy": "set the message's 'strategy' instead",
    "video.extra_options": "arbitrary encoder options are not accepted from the network",
}
MAX_OVERRIDE_STRING = 1024
_OVERRIDE_KEY_RE = re.compile(rf"^(?:{'|'.join(OVERRIDE_SECTIONS)})(?:\.[A-Za-z_][A-Za-z0-9_]{{0,63}})+$")
_REQUIRED = ("episode_id", "source", "strategy", "timestamp")
_OPTIONAL = ("config_overrides",)


class MessageError(PipelineError):
    """A stream message that cannot be accepted. ``reason`` says why in one line."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"invalid episode message: {reason}")


def _check_overrides(overrides: object) -> dict[str, Any]:
    if not isinstance(overrides, dict):
        raise MessageError(f"config_overrides must be a mapping, got {type(overrides).__name__}")
    for key, value in overrides.items():
        if not isinstance(key, str) or not _OVERRIDE_KEY_RE.match(key):
            raise MessageError(
                f"config_overrides key {key!r} is not allowed: use 'section.key' with section one of "
                f"{', '.join(OVERRIDE_SECTIONS)}"
            )
        for forbidden, why in FORBIDDEN_OVERRIDES.items():
            if key == forbidden or key.startswith(forbidden + "."):
                raise MessageError(f"config_overrides key {key!r} is not allowed: {why}")
        if isinstance(value, float) and not math.isfinite(value):
            raise MessageError(f"config_overrides[{key!r}] must be finite, got {value!r}")
        if isinstance(value, str) and len(value) > MAX_OVERRIDE_STRING:
            raise MessageError(f"config_overrides[{key!r}] is longer than {MAX_OVERRIDE_STRING} characters")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise MessageError(f"config_overrides[{key!r}] must be a scalar, got {type(value).__name__}")
    try:  # structure and types only; cross-field rules are checked against the real config at conversion
        _build(PipelineConfig, merge_overrides(PipelineConfig().to_dict(), overrides), "")
    except ConfigError as e:
        raise MessageError(f"config_overrides: {e}") from e
    return dict(overrides)


@dataclass(frozen=True)
class EpisodeMessage:
    """One published episode. Constructing it validates every field (:class:`MessageError`)."""

    episode_id: str
    source: str
    strategy: str
    config_overrides: dict[str, Any] = field(default_factory=dict)
    timestamp: float = 0.0

    def __post_init__(self) -> None:
        try:
            validate_episode_id(self.episode_id)
            validate_source(self.source)
            validate_strategy(self.strategy)
        except InvalidIdError as e:
            raise MessageError(str(e)) from e
        ts = self.timestamp
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts <= 0:
            raise MessageError(f"timestamp must be a positive number of seconds since the epoch, got {ts!r}")
        object.__setattr__(self, "timestamp", float(ts))
        object.__setattr__(self, "config_overrides", _check_overrides(self.config_overrides))

    @classmethod
    def new(
        cls,
        episode_id: str,
        source: str,
        strategy: str,
        config_overrides: Mapping[str, Any] | None = None,
        timestamp: float | None = None,
    ) -> EpisodeMessage:
        """A message stamped with the current time unless ``timestamp`` is given."""
        overrides = dict(config_overrides) if config_overrides is not None else {}
        return cls(episode_id, source, strategy, overrides, time.time() if timestamp is None else timestamp)

    @property
    def partition_episode_key(self) -> str:
        """The Dagster ``episode`` partition key, ``<source>.<episode_id>``."""
        return episode_key(self.source, self.episode_id)

    @property
    def run_key(self) -> str:
        """Unique per (source, episode, strategy); equals the ``episode|strategy`` multi-partition key."""
        return f"{self.partition_episode_key}|{self.strategy}"

    @property
    def status_field(self) -> str:
        """Field of this message in the per-source status hash: ``<episode_id>|<strategy>``."""
        return f"{self.episode_id}|{self.strategy}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "source": self.source,
            "strategy": self.strategy,
            "config_overrides": dict(self.config_overrides),
            "timestamp": self.timestamp,
        }

    def to_fields(self) -> dict[str, str]:
        """The stream entry: ``{"data": <compact JSON>}``."""
        data = json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, allow_nan=False)
        if len(data.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise MessageError(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
        return {DATA_FIELD: data}

    @classmethod
    def from_fields(cls, fields: Mapping) -> EpisodeMessage:
        """Parse a stream entry's fields (``str`` or ``bytes``); :class:`MessageError` if unacceptable."""
        if not isinstance(fields, Mapping):
            raise MessageError(f"fields must be a mapping, got {type(fields).__name__}")
        decoded = {_text(k, "field name"): v for k, v in fields.items()}
        if DATA_FIELD not in decoded:
            raise MessageError(f"missing field '{DATA_FIELD}'")
        extra = sorted(set(decoded) - {DATA_FIELD})
        if extra:
            raise MessageError(f"unknown fields {extra[:5]}: only '{DATA_FIELD}' is expected")
        raw = decoded[DATA_FIELD]
        size = len(raw) if isinstance(raw, bytes) else len(str(raw).encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            raise MessageError(f"message of {size} bytes is larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            obj = json.loads(_text(raw, f"field '{DATA_FIELD}'"), parse_constant=_reject_constant,
                             object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as e:
            raise MessageError(f"field '{DATA_FIELD}' is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise MessageError(f"field '{DATA_FIELD}' must hold a JSON object, got {type(obj).__name__}")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise MessageError(f"missing keys {missing}")
        unknown = sorted(set(obj) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise MessageError(f"unknown keys {unknown[:5]} (known: {', '.join(_REQUIRED + _OPTIONAL)})")
        overrides = obj.get("config_overrides")
        return cls(
            obj["episode_id"], obj["source"], obj["strategy"], {} if overrides is None else overrides, obj["timestamp"]
        )


def _text(value: object, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError(f"{what} is not UTF-8") from None
    if not isinstance(value, str):
        raise MessageError(f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")  # lone surrogates: bytes that were not UTF-8 (the client's surrogateescape)
    except UnicodeEncodeError:
        raise MessageError(f"{what} is not UTF-8") from None
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out
