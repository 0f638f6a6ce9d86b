"""Building a strategy's dataset from the episode store: what it should hold (a cheap digest), what it holds,
and the build itself. Used by the ``lerobot_dataset`` asset and, right after a batch commits, by the
conversion step (so a backfill or a streamed episode reaches the dataset without waiting for a sensor).
"""

import hashlib
import json

import dagster as dg

from lerobot_pipeline.core.dataset import assemble_dataset, dataset_lock, read_provenance
from lerobot_pipeline.core.episode_checks import check_parts
from lerobot_pipeline.core.episode_writer import StagedPart, load_staged, read_manifest, store_generation
from lerobot_pipeline.core.fsutil import write_json_atomic
from lerobot_pipeline.core.v30.writer import assemble_dataset_v30
from lerobot_pipeline.defs import ui_metadata
from lerobot_pipeline.defs.partitions import EPISODE_DIM
from lerobot_pipeline.defs.resources import PipelineResource
from lerobot_pipeline.errors import PipelineError

DATASET = dg.AssetKey("lerobot_dataset")
DATASET_V30 = dg.AssetKey("lerobot_dataset_v30")
DATASET_KEYS = {"v2.1": DATASET, "v3.0": DATASET_V30}


def committed_parts(
    pipeline: PipelineResource, strategy: str, episode_keys: list[str],
) -> tuple[list[StagedPart], dict]:
    """Committed parts of the registered episodes, and {episode_key: why it is left out}."""
    parts, left_out = [], {}
    for key in episode_keys:
        episode_dir = pipeline.episode_dir(strategy, key)
        manifest = read_manifest(episode_dir)
        if manifest is None:
            left_out[key] = "not converted yet"
        elif manifest.get("filtered"):
            left_out[key] = f"filtered: {manifest['filtered']}"
        else:
            parts.extend(load_staged(episode_dir))
    return parts, left_out


def store_digest(pipeline: PipelineResource, strategy: str, episode_keys: list[str]) -> str | None:
    """What the dataset should hold, in two cheap reads: the store's commit generation of the strategy and
    the registered episodes. None while nothing of the strategy was ever committed. Constant cost, however
    many episodes (the refresh sensor evaluates it every few seconds)."""
    generation = store_generation(pipeline.store, strategy)
    if generation is None:
        return None
    h = hashlib.sha256(generation.encode())
    for key in sorted(episode_keys):
        h.update(b"\n" + key.encode())
    return h.hexdigest()[:16]


def dataset_digest(pipeline: PipelineResource, strategy: str, fmt: str = "v2.1") -> str | None:
    """The store digest the current dataset was assembled from (None: never assembled by Dagster)."""
    try:
        return json.loads(pipeline.dataset_state_path(strategy, fmt).read_text())["store_digest"]
    except (OSError, ValueError, KeyError):
        return None


def build_dataset(instance: dg.DagsterInstance, pipeline: PipelineResource, strategy: str, fmt: str = "v2.1") -> dict:
    """Assemble the strategy's dataset in format ``fmt`` from the store; returns the materialisation metadata.

    Episodes already in the dataset at the same version were checked when they went in: only new or
    re-converted ones are checked again, so the cost follows what changed, not the dataset's size.
    Raises :class:`dg.Failure` naming what is wrong; the previous dataset then stays as it was.
    """
    config = pipeline.config(strategy, {"output.format": fmt})
    dataset_dir = pipeline.dataset_dir(strategy, fmt)
    # the store is read under the dataset's lock: builds run one at a time, each from the store as it is
    # when its turn comes, so an assembly that read an older store can never swap in over a newer dataset
    with dataset_lock(dataset_dir):
        return _build_locked(instance, pipeline, strategy, fmt, config, dataset_dir)


def _build_locked(instance: dg.DagsterInstance, pipeline: PipelineResource, strategy: str, fmt: str,
                  config, dataset_dir) -> dict:
    keys = instance.get_dynamic_partitions(EPISODE_DIM)
    digest = store_digest(pipeline, strategy, keys)  # before reading the store: a commit during the build
    parts, left_out = committed_parts(pipeline, strategy, keys)  # ... then shows as a change next tick
    if not parts:
        raise dg.Failure(description=f"no committed episode for strategy {strategy!r} yet", allow_retries=False)
    held = {(row["uid"], row["version"]) for row in read_provenance(dataset_dir)}
    bad = check_parts([p for p in parts if (p.uid, p.version) not in held], config)
    if not bad.passed:
        raise dg.Failure(
            description="episodes failed their conformance check; dataset left unchanged:\n"
            + "\n".join(bad.problems[:20]),
            allow_retries=False,
        )
    try:
        assemble = assemble_dataset_v30 if fmt == "v3.0" else assemble_dataset
        summary = assemble(parts, dataset_dir, config)
    except PipelineError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e
    write_json_atomic(pipeline.dataset_state_path(strategy, fmt), {"store_digest": digest})
    return {
        "format": fmt,
        "path": dg.MetadataValue.path(str(summary.root)),
        "episodes": summary.episodes,
        "recordings": len({r["episode_key"] for r in summary.provenance}),
        "frames": summary.frames,
        "hours": round(summary.frames / config.fps / 3600, 3),
        "reused_unchanged": summary.reused,
        "rewritten": summary.rewritten,
        "left_out": dg.MetadataValue.md("\n".join(f"- {k}: {v}" for k, v in sorted(left_out.items())) or "none"),
        "episodes_table": ui_metadata.dataset_table(summary.provenance),
        "store_digest": digest,
    }
