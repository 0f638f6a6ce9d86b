"""build_dataset reads the store under the dataset's lock: an assembly that waited for another never swaps in
an older view of the store over a newer dataset (a race seen in CI: the refresh sensor's build read 3 episodes,
waited while a conversion run assembled 4, then replaced the 4-episode dataset with its 3)."""

from __future__ import annotations

import threading
import time

from lerobot_pipeline.core.convert import convert_episode
from lerobot_pipeline.core.dataset import dataset_lock, read_provenance
from lerobot_pipeline.core.raw import discover_episodes
from lerobot_pipeline.defs.dataset_build import build_dataset
from lerobot_pipeline.defs.partitions import EPISODE_DIM
from lerobot_pipeline.sample_data import generate_dataset

STRATEGY = "nearest"


def test_a_build_waiting_for_the_lock_assembles_the_store_as_it_is_when_its_turn_comes(pipeline_world):
    w = pipeline_world
    generate_dataset(w.raw, episodes=2, seconds=1.0, size=(32, 24), seed=5)
    config = w.pipeline.config(STRATEGY)
    refs, _ = discover_episodes(w.raw, config)
    w.instance.add_dynamic_partitions(EPISODE_DIM, [r.key for r in refs])
    convert_episode(refs[0], config, w.pipeline.store, jobs=1)
    dataset = w.pipeline.dataset_dir(STRATEGY)

    result: dict = {}
    holding, release = threading.Event(), threading.Event()

    def another_assembly():  # holds the dataset lock as a running assembly does
        with dataset_lock(dataset):
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=another_assembly)
    holder.start()
    holding.wait(10)
    builder = threading.Thread(target=lambda: result.update(build_dataset(w.instance, w.pipeline, STRATEGY)))
    builder.start()
    time.sleep(0.5)  # the build is waiting for its turn ...
    convert_episode(refs[1], config, w.pipeline.store, jobs=1)  # ... while a second episode is committed
    release.set()
    holder.join(10)
    builder.join(120)

    assert result["episodes"] == 2
    assert sorted(r["episode_key"] for r in read_provenance(dataset)) == sorted(r.key for r in refs)


def test_the_dataset_lock_is_reentrant_within_a_thread_and_exclusive_across_threads(tmp_path):
    target = tmp_path / "ds"
    order = []
    with dataset_lock(target):
        with dataset_lock(target):  # a nested take passes straight through
            order.append("nested")
        def other():
            with dataset_lock(target):
                order.append("other")

        t = threading.Thread(target=other)
        t.start()
        t.join(0.3)
        assert t.is_alive() and order == ["nested"]  # another thread waits while this one holds it
    t.join(10)
    assert order == ["nested", "other"]
