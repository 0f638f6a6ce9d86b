"""Files shipped inside the package: the ready configs and the Dagster templates.

They live in the checkout's top-level ``configs/`` directory, installed as the package
``lerobot_pipeline.configs`` (setup.py maps it), so they are found the same way from a wheel, an
editable install or a source tree, wherever the current directory is.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STRATEGY_CONFIGS = ("dual_arm_nearest.yaml", "dual_arm_chunking.yaml", "dual_arm_window.yaml")
REDIS_CONFIG = "redis.yaml"
DAGSTER_TEMPLATE = "dagster.yaml"
WORKSPACE = "workspace.yaml"


def configs_dir() -> Path:
    """The directory of the shipped configs (a real directory: wheels install unzipped)."""
    root = resources.files("lerobot_pipeline.configs")
    path = Path(str(root))
    if not (path / DAGSTER_TEMPLATE).is_file():  # pragma: no cover - a zipped or broken install
        raise FileNotFoundError(f"lerobot_pipeline's shipped configs are missing from {root}: reinstall the package")
    return path


def shipped_file(name: str) -> Path:
    return configs_dir() / name


def workspace_file() -> Path:
    """The workspace.yaml that loads ``lerobot_pipeline.definitions`` (for dagster subprocesses)."""
    return shipped_file(WORKSPACE)


def dagster_template() -> Path:
    return shipped_file(DAGSTER_TEMPLATE)
