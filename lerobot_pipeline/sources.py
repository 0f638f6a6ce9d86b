"""Where each source's (rig's) raw data lives: a small registry file written by ``register``.

A root registered by an operator (``lerobot-pipeline register --raw-root DIR --source NAME``) or
configured in ``configs/redis.yaml`` (``sources: {name: {raw_root: ...}}``) is trusted; network
messages only name a source, which must resolve here, and ids are joined under it with ``safe_join``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lerobot_pipeline.core.fsutil import write_json_atomic
from lerobot_pipeline.errors import ConfigError
from lerobot_pipeline.ids import validate_source

REGISTRY_FILE = "sources.json"


class SourceRegistry:
    def __init__(self, work_dir: str | Path, configured: dict[str, str] | None = None, pattern: str | None = None):
        self.path = Path(work_dir) / REGISTRY_FILE
        self.configured = dict(configured or {})
        self.pattern = pattern

    def registered(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text())

    def all(self) -> dict[str, str]:
        return self.configured | self.registered()

    def register(self, source: str, raw_root: str | Path) -> None:
        validate_source(source)
        data = self.registered()
        data[source] = str(Path(raw_root).resolve())
        write_json_atomic(self.path, data)

    def raw_root(self, source: str) -> Path:
        validate_source(source)
        known = self.all()
        if source in known:
            return Path(known[source])
        if self.pattern:
            return Path(self.pattern.format(source=source))
        raise ConfigError(f"sources.{source}",
                          "unknown source: register it (lerobot-pipeline register) or configure it")
