"""Cheap content fingerprints of raw episode files, so changed or re-recorded data is noticed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def files_fingerprint(paths: list[Path]) -> str:
    """Digest of (name, size, mtime_ns) of each file; missing files count as such."""
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            st = os.stat(p)
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{p.name}:missing\n".encode())
    return h.hexdigest()[:16]


def directory_fingerprint(directory: Path) -> str:
    """Digest of every file under ``directory`` (names, sizes, mtimes), without reading contents."""
    paths = [Path(root) / f for root, _, files in os.walk(directory) for f in files]
    h = hashlib.sha256()
    for p in sorted(paths):
        st = os.stat(p)
        h.update(f"{p.relative_to(directory)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"{len(paths)}-{h.hexdigest()[:16]}"
