"""Atomic file and directory writes (core/fsutil.py)."""

from __future__ import annotations

import os

import pytest

from lerobot_pipeline.core.fsutil import (
    atomic_path,
    fresh_build_dir,
    link_or_copy,
    swap_directory,
    write_json_atomic,
    write_jsonl_atomic,
)


def test_atomic_path_renames_onto_the_final_name(tmp_path):
    final = tmp_path / "sub" / "data.parquet"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".data.parquet.") and tmp.name.endswith(".partial")
        tmp.write_bytes(b"payload")
        assert not final.exists()  # invisible until the block succeeds
    assert final.read_bytes() == b"payload"
    assert os.listdir(final.parent) == ["data.parquet"]


def test_atomic_path_leaves_nothing_on_exception(tmp_path):
    final = tmp_path / "data.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half written")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_atomic_path_keeps_the_previous_file_on_exception(tmp_path):
    final = tmp_path / "info.json"
    final.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(final) as tmp:
            tmp.write_text("new")
            raise KeyboardInterrupt
    assert final.read_text() == "old"
    assert os.listdir(tmp_path) == ["info.json"]


def test_json_and_jsonl_writers(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"k": "é"})
    write_jsonl_atomic(tmp_path / "b.jsonl", [{"i": 0}, {"i": 1}])
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == '{\n    "k": "é"\n}\n'
    assert (tmp_path / "b.jsonl").read_text() == '{"i": 0}\n{"i": 1}\n'


def test_swap_directory_replaces_the_old_tree(tmp_path):
    final = tmp_path / "dataset"
    (final / "meta").mkdir(parents=True)
    (final / "meta" / "old.txt").write_text("old")
    build = fresh_build_dir(final)
    assert build.parent == tmp_path and build.name.startswith(".dataset.build-") and build.is_dir()
    (build / "meta").mkdir()
    (build / "meta" / "new.txt").write_text("new")
    swap_directory(build, final)
    assert [p.name for p in (final / "meta").iterdir()] == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["dataset"]  # neither the build nor the old tree remain


def test_swap_directory_into_a_new_place(tmp_path):
    final = tmp_path / "dataset"
    build = fresh_build_dir(final)
    (build / "x").write_text("1")
    swap_directory(build, final)
    assert (final / "x").read_text() == "1"
    assert os.listdir(tmp_path) == ["dataset"]


def test_link_or_copy_hard_links(tmp_path):
    src = tmp_path / "a.mp4"
    src.write_bytes(b"video")
    dst = tmp_path / "deep" / "b.mp4"
    link_or_copy(src, dst)
    assert dst.read_bytes() == b"video" and dst.stat().st_ino == src.stat().st_ino


def test_scratch_writes_stay_atomic_and_restore_durability(tmp_path):
    from lerobot_pipeline.core.fsutil import durable_writes, scratch_writes, write_json_atomic

    assert durable_writes()
    with scratch_writes():
        assert not durable_writes()
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        with scratch_writes():
            pass
        assert not durable_writes()
    assert durable_writes()
    assert (tmp_path / "a.json").read_text().strip().startswith("{")
    assert not list(tmp_path.glob(".*.partial"))
    try:
        with scratch_writes():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert durable_writes()
