"""Atomic file and directory writes: a crash never leaves a file a loader could take for complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_durable = True  # False inside scratch_writes(): atomic still, but no fsync


@contextlib.contextmanager
def scratch_writes() -> Iterator[None]:
    """Atomic writes in this block skip fsync: for a staging area that is thrown away after use (the CLI's
    episode store). Whatever is kept from it must be synced where it lands (:func:`fsync_file`)."""
    global _durable
    before, _durable = _durable, False
    try:
        yield
    finally:
        _durable = before


def durable_writes() -> bool:
    return _durable


def fsync_file(path: str | os.PathLike[str]) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    if not _durable:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], fsync: bool | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it is fsynced and renamed onto ``final``.

    ``fsync`` None: as the process is set (see :func:`scratch_writes`).
    On any exception the temporary file is removed and ``final`` is untouched. The temporary name
    starts with ``.`` and ends with ``.partial`` so that globs such as ``*.parquet`` never match it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if _durable if fsync is None else fsync:
            fsync_file(tmp_path)
        os.replace(tmp_path, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 4) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Hard-link ``src`` to ``dst`` (same filesystem: no bytes copied), falling back to a copy."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def swap_directory(build: Path, final: Path) -> None:
    """Replace directory ``final`` by the fully built ``build`` (same parent filesystem).

    The old tree is renamed away first, then ``build`` is renamed into place, then the old tree is
    deleted: a reader sees the old dataset, briefly no dataset, or the new one, never a mix.
    """
    build, final = Path(build), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(build, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fresh_build_dir(final: Path) -> Path:
    """A new empty directory beside ``final`` to build into before :func:`swap_directory`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.build-", dir=final.parent))


def remove_stale_builds(final: Path) -> list[Path]:
    """Clean up after assemblies killed mid-way, beside ``final``: ``.<name>.build-*`` (a build never
    swapped in) are deleted; ``.<name>.old-*`` (the previous tree a swap had moved away) is put back
    when the kill came between the swap's two renames and ``final`` is missing, else deleted.
    Call it only while holding the dataset's lock: every live build or swap happens under it."""
    final = Path(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not final.exists():
        os.replace(olds.pop(), final)
        _fsync_dir(final.parent)
    for stale in [*final.parent.glob(f".{final.name}.build-*"), *olds]:
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    return removed


def remove_dead_staging(final: Path) -> list[Path]:
    """Delete ``.<name>.staging-<pid>-*`` directories beside ``final`` whose process is gone."""
    final = Path(final)
    removed = []
    for d in final.parent.glob(f".{final.name}.staging-*") if final.parent.is_dir() else ():
        pid = d.name[len(f".{final.name}.staging-"):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
