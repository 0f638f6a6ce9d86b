#!/usr/bin/env python
"""Our native v3.0 dataset vs lerobot's official converter's output of our v2.1.

Run with the python of the lerobot 0.4.4 venv (``~/.cache/lerobot_check_v30_venv``, built by
``../shared/tools/lerobot_check_v30/setup.sh``), which has the official converter:

    PYTHONPATH=../shared/tools/lerobot_check HF_HUB_OFFLINE=1 \
        ~/.cache/lerobot_check_v30_venv/bin/python bench/compare_official_v30.py V21_DATASET V30_DATASET

(``PYTHONPATH`` makes that venv's CPU-only torchvision shim importable, as its check.py does.)

Both datasets must come from the same recordings and config (``convert`` with and without
``--format v3.0``). A scratch copy of V21 is converted with
``lerobot.datasets.v30.convert_dataset_v21_to_v30.convert_dataset`` (no Hub); then, per episode, the
parquet rows (every column), the episode metadata (lengths, offsets, from/to timestamps, tasks,
per-episode stats) and every decoded video frame are compared. Prints one line per check and
``COMPARE OK`` / ``COMPARE FAIL`` last.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def frames(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def table(root: Path, sub: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((root / sub).glob("*/*.parquet"))])


def main(v21: Path, ours: Path) -> int:
    try:
        import tv_cpu_shim  # the lerobot_check venv's CPU-only torchvision shim, when on PYTHONPATH

        tv_cpu_shim.apply()
    except ImportError:
        pass
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    scratch = Path(tempfile.mkdtemp(prefix="compare_v30_"))
    failures = []
    try:
        shutil.copytree(v21, scratch / "local" / "ds")
        convert_dataset("ds", root=str(scratch / "local"), push_to_hub=False)
        theirs = scratch / "local" / "ds"
        d_ours, d_theirs = table(ours, "data"), table(theirs, "data")
        for name in d_theirs.column_names:
            same = name in d_ours.column_names and d_ours.column(name).to_pylist() == d_theirs.column(name).to_pylist()
            print(f"data column {name}: {'identical' if same else 'DIFFERENT'} ({d_theirs.num_rows} rows)")
            if not same:
                failures.append(f"data column {name}")
        e_ours, e_theirs = table(ours, "meta/episodes").to_pylist(), table(theirs, "meta/episodes").to_pylist()
        keys = sorted(k for k in e_theirs[0] if k in e_ours[0])
        missing = sorted(set(e_theirs[0]) - set(e_ours[0]))
        print(f"episode metadata columns: {len(keys)} shared, missing in ours: {missing or 'none'}")
        failures += [f"episode column {k} missing" for k in missing]
        for k in keys:
            a, b = [r[k] for r in e_ours], [r[k] for r in e_theirs]
            close = a == b or (isinstance(a[0], float) and np.allclose(a, b, rtol=0, atol=1e-9))
            if not close and k.startswith("stats/"):
                close = all(np.allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-9, atol=1e-12)
                            for x, y in zip(a, b))
            if not close:
                print(f"episode column {k}: DIFFERENT ours={a[:3]} theirs={b[:3]}")
                failures.append(f"episode column {k}")
        same = not any(f.startswith('episode column') for f in failures)
        print(f"episode metadata values: {'identical' if same else 'DIFFERENT'} "
              f"({len(e_theirs)} episodes)")
        keys_v = [k.split("/")[1] for k in e_theirs[0] if k.startswith("videos/") and k.endswith("/from_timestamp")]
        for key in keys_v:
            files: dict[tuple, list] = {}
            decoded = 0
            for r_o, r_t in zip(e_ours, e_theirs):
                fo = ours / (f"videos/{key}/chunk-{r_o[f'videos/{key}/chunk_index']:03d}"
                             f"/file-{r_o[f'videos/{key}/file_index']:03d}.mp4")
                ft = theirs / (f"videos/{key}/chunk-{r_t[f'videos/{key}/chunk_index']:03d}"
                               f"/file-{r_t[f'videos/{key}/file_index']:03d}.mp4")
                for f in (fo, ft):
                    if f not in files:
                        files[f] = frames(f)
                win = []
                for f, r in ((fo, r_o), (ft, r_t)):
                    start = r[f"videos/{key}/from_timestamp"]
                    stop = r[f"videos/{key}/to_timestamp"]
                    sel = [(t - start, img) for t, img in files[f] if start - 0.5 / 25 <= t < stop - 0.5 / 25]
                    win.append(sel)
                if len(win[0]) != len(win[1]) or any(abs(a[0] - b[0]) > 1e-6 or not np.array_equal(a[1], b[1])
                                                     for a, b in zip(*win)):
                    failures.append(f"{key} episode {r_o['episode_index']}")
                decoded += len(win[0])
            ok = not any(f.startswith(key) for f in failures)
            print(f"video {key}: {'identical' if ok else 'DIFFERENT'} decoded frames ({decoded} per side)")
        so, st = (json.loads((root / "meta/stats.json").read_text()) for root in (ours, theirs))
        bad = [k for k in st if not all(np.allclose(np.asarray(so[k][s], float), np.asarray(st[k][s], float),
                                                    rtol=1e-9, atol=1e-12) for s in st[k] if s in so.get(k, {}))]
        print(f"meta/stats.json: {'identical' if not bad else 'DIFFERENT ' + str(bad)}")
        failures += bad
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("COMPARE OK" if not failures else f"COMPARE FAIL {failures[:10]}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()))
