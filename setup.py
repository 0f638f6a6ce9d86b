from setuptools import find_packages, setup

# Metadata lives in pyproject.toml; this file keeps `pip install -e .` working with older pips
# and follows the Dagster project convention (package, package_tests, setup.py, workspace.yaml).
setup(packages=find_packages(exclude=["lerobot_pipeline_tests*"]))
