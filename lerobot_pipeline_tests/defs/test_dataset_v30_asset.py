"""The v3.0 dataset asset in a real temporary instance: built beside the v2.1 one, from the same episodes."""

from __future__ import annotations

import json

import dagster as dg
import pyarrow.parquet as pq

from lerobot_pipeline.cli import orchestrate
from lerobot_pipeline.defs import dataset_v30_assets

STRATEGY = "nearest"


def _materialize_v30(w) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [dataset_v30_assets.lerobot_dataset_v30, dataset_v30_assets.dataset_v30_conformance],
        instance=w.instance, resources={"pipeline": w.pipeline}, partition_key=STRATEGY,
        run_config=orchestrate.QUIET_RUN_CONFIG, raise_on_error=False,
    )


def test_v30_asset_holds_the_same_episodes_as_the_v21_asset(pipeline_world):
    w = pipeline_world
    for i in range(2):
        w.record(f"episode_{i:04d}", index=i)
    keys = w.register()
    w.materialize(keys, STRATEGY)  # episodes and the v2.1 dataset
    result = _materialize_v30(w)
    assert result.success
    root = w.pipeline.dataset_dir(STRATEGY, "v3.0")
    assert root != w.dataset_dir(STRATEGY) and root.name.endswith("_v30")
    assert json.loads((root / "meta/info.json").read_text())["codebase_version"] == "v3.0"
    assert w.info()["codebase_version"] == "v2.1"
    v21 = [(r["uid"], r["episode_index"], r["offset"]) for r in w.provenance(STRATEGY)]
    v30 = [(r["uid"], r["episode_index"], r["offset"]) for r in
           (json.loads(line) for line in (root / "meta/provenance.jsonl").read_text().splitlines())]
    assert v30 == v21
    assert pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").num_rows == 2
    meta = w.latest_metadata("lerobot_dataset_v30", STRATEGY)
    assert meta["format"].value == "v3.0" and meta["episodes"].value == 2
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["format"].value == "v3.0"
    # re-materialising with nothing changed rewrites no data or video file
    before = {p: p.stat().st_ino for p in (root / "data").rglob("*.parquet")}
    assert _materialize_v30(w).success
    assert {p: p.stat().st_ino for p in (root / "data").rglob("*.parquet")} == before
