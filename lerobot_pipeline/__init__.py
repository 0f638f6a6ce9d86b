"""lerobot_pipeline: airbot_play recordings → LeRobot v2.1 datasets, orchestrated with Dagster.

The public API needs no Dagster import: ``convert_episode`` (core) and ``publish_episode``
(streaming). ``lerobot_pipeline.definitions`` holds the Dagster code location.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:  # lazy, so `import lerobot_pipeline` stays cheap and imports no redis/av
    if name == "publish_episode":
        from lerobot_pipeline.streaming.publisher import publish_episode

        return publish_episode
    if name == "convert_episode":
        from lerobot_pipeline.core.convert import convert_episode

        return convert_episode
    raise AttributeError(name)


__all__ = ["publish_episode", "convert_episode", "__version__"]
