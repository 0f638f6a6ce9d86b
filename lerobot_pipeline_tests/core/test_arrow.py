"""numpy <-> arrow without pandas or pyarrow.compute (core/arrow.py): the same values as pyarrow's own calls,
and a whole conversion that imports neither."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lerobot_pipeline.core.arrow import flatten_lists, list_lengths, numeric_array, read_parquet, to_numpy


@pytest.mark.parametrize("type_", [pa.float32(), pa.float64(), pa.int64(), pa.int32()])
def test_numeric_array_is_what_pa_array_builds(type_):
    values = np.array([0, 1.5, -2.25, 7, 1e6])  # float64, converted to the arrow type's numpy dtype
    built = numeric_array(values, type_)
    assert built.type == type_ and built.null_count == 0
    assert built.equals(pa.array(values.astype(type_.to_pandas_dtype()), type_))


def test_numeric_array_outlives_its_input_and_slices_like_any_array():
    built = numeric_array(np.arange(10)[::2], pa.int64())  # a strided view: copied into a contiguous buffer
    import gc

    gc.collect()
    assert built.to_pylist() == [0, 2, 4, 6, 8]
    assert built.slice(1, 3).to_pylist() == [2, 4, 6]
    assert len(numeric_array(np.empty(0), pa.float32())) == 0


def test_to_numpy_views_chunks_offsets_and_turns_nulls_into_nan():
    """Sliced and multi-chunk columns keep their values; nulls become NaN, or an error with ``strict``."""
    ints = pa.chunked_array([pa.array([1, 2, 3], pa.int64()).slice(1), pa.array([4, 5], pa.int64())])
    assert to_numpy(ints, strict=True).tolist() == [2, 3, 4, 5]
    floats = pa.chunked_array([pa.array([0.5, 1.25, -2.0], pa.float32()).slice(1, 2)])
    out = to_numpy(floats)
    assert out.dtype == np.float32 and out.tolist() == [1.25, -2.0]
    assert to_numpy(pa.array([3, 4], pa.int32()).slice(1)).tolist() == [4]  # a plain array, offset kept
    with_null = pa.chunked_array([pa.array([1.5, None, 2.5], pa.float64())])
    got = to_numpy(with_null)
    assert got[0] == 1.5 and np.isnan(got[1]) and got[2] == 2.5
    with pytest.raises(ValueError, match="null"):
        to_numpy(pa.chunked_array([pa.array([1, None], pa.int64())]), strict=True)
    with pytest.raises(ValueError):
        to_numpy(pa.chunked_array([pa.array(["1", "2"])]), strict=True)
    assert to_numpy(pa.chunked_array([], pa.float32())).shape == (0,)


LISTS = pa.array([[1, 2], [3], [], [4, 5, 6], [7]], pa.list_(pa.int64()))
LIST_CASES = {
    "list": LISTS,
    "sliced list": LISTS.slice(1, 3),
    "one empty list": LISTS.slice(2, 1),
    "no lists": LISTS.slice(5, 0),
    "large list, sliced": pa.array([[1], [2, 3], [4, 5, 6]], pa.large_list(pa.int64())).slice(1),
    "fixed size, sliced": pa.array([[1, 2], [3, 4], [5, 6], [7, 8]], pa.list_(pa.int64(), 2)).slice(1, 2),
    "nested, sliced": pa.array([[[1.0, 2.0]], [[3.0], [4.0, 5.0]], [[6.0]]], pa.list_(pa.list_(pa.float32()))).slice(1),
}


@pytest.mark.parametrize("case", list(LIST_CASES))
def test_list_lengths_and_flatten_are_what_pyarrow_compute_gives(case):
    import pyarrow.compute as pc

    lists = LIST_CASES[case]
    assert list_lengths(lists).tolist() == pc.list_value_length(lists).to_pylist()
    flat = flatten_lists(lists)
    assert flat.type == lists.flatten().type and flat.to_pylist() == lists.flatten().to_pylist()


def test_flatten_skips_null_lists_as_pyarrow_does():
    """A null list may own a non-empty range of the values (the format allows it): offsets alone would keep it."""
    offsets, values = pa.array([0, 2, 4, 5], pa.int32()), pa.array([1, 2, 9, 9, 3], pa.int64())
    lists = pa.ListArray.from_arrays(offsets, values, mask=pa.array([False, True, False]))
    assert lists.to_pylist() == [[1, 2], None, [3]]
    assert flatten_lists(lists).to_pylist() == lists.flatten().to_pylist() == [1, 2, 3]


def test_read_parquet_is_read_table_with_its_metadata(tmp_path):
    table = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "b": pa.array([[1.0, 2.0]] * 3, pa.list_(pa.float32()))})
    table = table.replace_schema_metadata({"pandas": '{"index_columns": []}', "x": "y"})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2)  # two row groups: two chunks
    got = read_parquet(path)
    assert got.equals(pq.read_table(path)) and got.schema.metadata == pq.read_table(path).schema.metadata
    assert read_parquet(path, columns=["b"]).column_names == ["b"]


def test_a_whole_conversion_never_imports_pandas_or_pyarrow_compute(tmp_path):
    """pyarrow imports pandas on its first ``pa.array``/``to_numpy``/``read_table`` (0.3-0.45 s of CPU), and
    ``pyarrow.compute`` on a cast or ``flatten`` (0.12 s), taken from the video encoders in every converting
    process. read, align, parquet (chunking's nested lists too), videos, stats, assembly and the conformance
    check all run without them."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    made = subprocess.run([sys.executable, "-m", "lerobot_pipeline", "sample-data", str(raw), "--episodes", "2",
                           "--seconds", "1", "--size", "64x48"], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    code = ("import sys; from lerobot_pipeline.cli import main; "
            f"rc = main(['convert', '--input', {str(raw)!r}, '--output', {str(out)!r}, '--strategy', 'chunking']); "
            "print('rc', rc, 'pandas', 'pandas' in sys.modules, 'compute', 'pyarrow.compute' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-6:] == ["rc", "0", "pandas", "False", "compute", "False"], done.stdout[-2000:]
    assert (out / "meta" / "info.json").is_file()
