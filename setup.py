from setuptools import find_packages, setup

# Metadata lives in pyproject.toml; this file keeps `pip install -e .` working with older pips
# and follows the Dagster project convention (package, package_tests, setup.py, workspace.yaml).
# The top-level configs/ directory is installed as the package lerobot_pipeline.configs, so the
# ready configs and templates ship in the wheel and an editable install reads the checkout's files.
setup(
    packages=[*find_packages(include=["lerobot_pipeline", "lerobot_pipeline.*"]), "lerobot_pipeline.configs"],
    package_dir={"lerobot_pipeline.configs": "configs"},
    package_data={"lerobot_pipeline": ["py.typed"], "lerobot_pipeline.configs": ["*.yaml"]},
)
