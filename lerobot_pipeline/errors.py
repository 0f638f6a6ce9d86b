"""Typed errors. Every error names what it is about: the episode, the file and the field."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(PipelineError):
    """A configuration value is unknown, of the wrong type or impossible. ``key`` is its dotted path."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class InvalidIdError(PipelineError):
    """An episode id, source name or partition key that arrived from outside is not acceptable."""


class RawDataError(PipelineError):
    """Raw recording data that cannot be used. Names the episode, the file and the field."""

    def __init__(self, episode: str, message: str, file: str | None = None, field: str | None = None):
        self.episode, self.file, self.field = episode, file, field
        where = "".join(
            [f" file '{file}'" if file else "", f" field '{field}'" if field else ""]
        )
        super().__init__(f"episode '{episode}'{where}: {message}")


class EpisodeRejected(PipelineError):
    """The episode was read fine but a configured policy refuses it (too short, gap policy 'reject', ...)."""

    def __init__(self, episode: str, reason: str):
        self.episode, self.reason = episode, reason
        super().__init__(f"episode '{episode}' rejected: {reason}")


class DatasetError(PipelineError):
    """Writing, assembling or validating an output dataset failed."""
