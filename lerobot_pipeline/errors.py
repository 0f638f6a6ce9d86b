"""Typed errors. Every error names what it is about: the episode, the file and the field."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error this project raises on purpose.

    Errors travel from video worker processes back to the caller by pickle; subclasses whose constructor
    takes other arguments than the message say how to rebuild them in ``_init_args``.
    """

    def _init_args(self) -> tuple[object, ...]:
        return self.args

    def __reduce__(self) -> tuple[type[PipelineError], tuple[object, ...]]:
        return (type(self), self._init_args())


class ConfigError(PipelineError):
    """A configuration value is unknown, of the wrong type or impossible. ``key`` is its dotted path."""

    def __init__(self, key: str, message: str):
        self.key, self._message = key, message
        super().__init__(f"config key '{key}': {message}")

    def _init_args(self) -> tuple[object, ...]:
        return (self.key, self._message)


class InvalidIdError(PipelineError):
    """An episode id, source name or partition key that arrived from outside is not acceptable."""


class RawDataError(PipelineError):
    """Raw recording data that cannot be used. Names the episode, the file and the field."""

    def __init__(self, episode: str, message: str, file: str | None = None, field: str | None = None):
        self.episode, self.file, self.field, self._message = episode, file, field, message
        where = "".join(
            [f" file '{file}'" if file else "", f" field '{field}'" if field else ""]
        )
        super().__init__(f"episode '{episode}'{where}: {message}")

    def _init_args(self) -> tuple[object, ...]:
        return (self.episode, self._message, self.file, self.field)


class EpisodeRejected(PipelineError):
    """The episode was read fine but a configured policy refuses it (too short, gap policy 'reject', ...)."""

    def __init__(self, episode: str, reason: str):
        self.episode, self.reason = episode, reason
        super().__init__(f"episode '{episode}' rejected: {reason}")

    def _init_args(self) -> tuple[object, ...]:
        return (self.episode, self.reason)


class DatasetError(PipelineError):
    """Writing, assembling or validating an output dataset failed."""


class UndecodableImage(RawDataError):
    """A JPEG the video stage could not decode although it passed the cheap structural check.

    ``convert_episode`` treats it as a missing frame of ``camera`` and aligns the episode again without it.
    """

    def __init__(self, episode: str, camera: str, file: str, reason: str):
        self.camera, self.file_name, self.reason = camera, file.rsplit("/", 1)[-1], reason
        super().__init__(episode, f"image cannot be decoded ({reason})", file=file, field=camera)

    def _init_args(self) -> tuple[object, ...]:
        return (self.episode, self.camera, self.file, self.reason)


class WorkerCrashed(PipelineError):
    """A video worker process died (killed, out of memory) while encoding this episode; worth a retry."""
