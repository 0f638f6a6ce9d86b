"""Fixtures for the Dagster-layer tests: a real instance in a temporary DAGSTER_HOME, real raw files.

``pipeline_world`` gives a :class:`World`: a raw root written by ``sample_data`` (tiny 64x48 episodes),
a work dir (episode store, datasets, source registry), a real SQLite Dagster instance and the
project's ``Definitions`` built on that work dir. Jobs are executed in-process against the instance
(real alignment, parquet and PyAV encoding); nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from lerobot_pipeline.cli import orchestrate
from lerobot_pipeline.core.dataset import read_provenance
from lerobot_pipeline.definitions import build_definitions
from lerobot_pipeline.defs.partitions import multi_key
from lerobot_pipeline.defs.resources import PipelineResource, RedisStreamResource
from lerobot_pipeline.sample_data import DEFAULT_START_NS, generate_episode

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = "local"
SIZE = (64, 48)
SECONDS = 1.5
EPISODE_SPACING_NS = 20_000_000_000  # episodes of one rig follow each other in time

#: Redis settings that name a closed port and forbid the embedded server: the stream sensor
#: (default RUNNING) then skips with "Redis unreachable" instead of touching any real server.
UNREACHABLE_REDIS_YAML = "redis: {url: 'redis://127.0.0.1:1/0'}\nembedded: {enabled: false}\n"


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (byte-level identity of a directory)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*")) if p.is_file()
    }


@dataclass
class World:
    tmp: Path
    instance: dg.DagsterInstance
    raw: Path
    work: Path
    pipeline: PipelineResource
    defs: dg.Definitions
    _next_seed: int = field(default=100)

    # ------------------------------------------------------------------ raw data and partitions

    def record(self, episode_id: str, *, seconds: float = SECONDS, index: int | None = None) -> str:
        """Write one raw episode under the raw root; returns its partition key (not yet registered)."""
        self._next_seed += 1
        n = index if index is not None else self._next_seed
        generate_episode(self.raw, episode_id, seconds=seconds, size=SIZE, seed=self._next_seed,
                         start_ns=DEFAULT_START_NS + n * EPISODE_SPACING_NS)
        return f"{SOURCE}.{episode_id}"

    def register(self) -> list[str]:
        keys, skipped = orchestrate.register_episodes(self.instance, self.work, self.raw, SOURCE)
        assert not skipped, skipped
        return keys

    # ------------------------------------------------------------------ runs

    def job(self, name: str) -> dg.JobDefinition:
        return self.defs.resolve_job_def(name)

    def convert(self, key: str, strategy: str = "nearest", raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return self.job("convert_episode_job").execute_in_process(
            instance=self.instance, partition_key=str(multi_key(key, strategy)), raise_on_error=raise_on_error,
            run_config=orchestrate.QUIET_RUN_CONFIG)

    def convert_batch(self, keys: list[str], strategy: str = "nearest") -> dg.ExecuteInProcessResult:
        """One run over a range of partitions, as a backfill batches them (BackfillPolicy.multi_run)."""
        first, last = (str(multi_key(k, strategy)) for k in (keys[0], keys[-1]))
        return self.job("convert_episode_job").execute_in_process(
            instance=self.instance, raise_on_error=False, run_config=orchestrate.QUIET_RUN_CONFIG,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})

    def assemble(self, strategy: str = "nearest", raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return self.job("dataset_job").execute_in_process(
            instance=self.instance, partition_key=strategy, raise_on_error=raise_on_error,
            run_config=orchestrate.QUIET_RUN_CONFIG)

    def materialize(self, keys: list[str], strategy: str = "nearest") -> dict:
        out = orchestrate.materialize_in_process(self.instance, self.work, strategy, keys)
        assert not out["failed"], out
        assert out["dataset_ok"], out
        return out

    # ------------------------------------------------------------------ outputs

    def dataset_dir(self, strategy: str = "nearest") -> Path:
        return self.pipeline.dataset_dir(strategy)

    def provenance(self, strategy: str = "nearest") -> list[dict]:
        return read_provenance(self.dataset_dir(strategy))

    def index_of(self, strategy: str = "nearest") -> dict[str, int]:
        return {row["episode_key"]: row["episode_index"] for row in self.provenance(strategy)}

    def info(self, strategy: str = "nearest") -> dict:
        return json.loads((self.dataset_dir(strategy) / "meta" / "info.json").read_text())

    def latest_metadata(self, asset: str, partition: str) -> dict:
        """Metadata of the latest materialization of ``asset`` for ``partition``."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records
        assert records, f"{asset}[{partition}] was never materialized"
        return dict(records[0].asset_materialization.metadata)


def pytest_collection_modifyitems(config, items):
    """The package knowingly uses Dagster's beta/preview features (see lerobot_pipeline/defs/__init__.py)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::dagster.BetaWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore::dagster.PreviewWarning"))


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Environment of one test: its own work dir and DAGSTER_HOME, no Redis or config-dir leaking in."""
    work = tmp_path / "work"
    home = tmp_path / "dagster_home"
    home.mkdir()
    redis_yaml = tmp_path / "redis.yaml"
    redis_yaml.write_text(UNREACHABLE_REDIS_YAML)
    for var in ("REDIS_URL", "REDIS_PASSWORD", "LEROBOT_PIPELINE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LEROBOT_PIPELINE_WORK_DIR", str(work))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LEROBOT_PIPELINE_REDIS_CONFIG", str(redis_yaml))
    return {"work": work, "home": home, "redis_yaml": redis_yaml}


@pytest.fixture
def pipeline_world(tmp_path, isolated_env):
    """A :class:`World` on a temporary instance (``dg.instance_for_test``) and work dir."""
    with dg.instance_for_test(temp_dir=str(isolated_env["home"])) as instance:
        # these tests drive the dataset asset themselves; in-run assembly has its own test
        pipeline = PipelineResource(work_dir=str(isolated_env["work"]), redis_config=None, assemble_after_convert=False)
        defs = build_definitions(pipeline, RedisStreamResource(config_path=str(isolated_env["redis_yaml"])))
        yield World(tmp_path, instance, tmp_path / "raw", isolated_env["work"], pipeline, defs)
