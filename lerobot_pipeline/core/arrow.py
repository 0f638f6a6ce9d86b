"""numpy <-> arrow and parquet reading without pandas.

pyarrow imports pandas, when it is installed, the first time ``pa.array``, ``Array.to_numpy``,
``pq.read_table`` (through ``pyarrow.dataset``) or ``to_pylist`` runs: 0.3-0.45 s of CPU, plus 0.2 s for
``pyarrow.dataset``, in every process that converts, on a 2-core machine taken straight from the video
encoders beside it. Nothing here needs pandas: null-free numeric columns are plain buffers, and a single
parquet file is read by ``ParquetFile``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def numeric_array(values: np.ndarray, type_: pa.DataType) -> pa.Array[Any]:
    """A null-free arrow array of ``type_`` holding ``values`` (converted to its numpy dtype; the arrow buffer
    keeps the numpy array alive), as ``pa.array(values, type_)`` would build it."""
    arr = np.ascontiguousarray(values, dtype=type_.to_pandas_dtype())
    return pa.Array.from_buffers(type_, len(arr), [None, pa.py_buffer(arr.data)])


def is_plain_number(chunk: pa.Array[Any]) -> bool:
    return chunk.null_count == 0 and (pa.types.is_integer(chunk.type) or pa.types.is_floating(chunk.type))


def numeric_view(chunk: pa.Array[Any]) -> np.ndarray:
    """The values of a null-free integer or float array as a read-only numpy view (no copy)."""
    dtype = np.dtype(chunk.type.to_pandas_dtype())
    data = chunk.buffers()[1]
    assert data is not None  # a fixed-width array always has its data buffer
    return np.frombuffer(memoryview(data), dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)


def to_numpy(column: pa.Array[Any] | pa.ChunkedArray[Any], *, strict: bool = False) -> np.ndarray:
    """A column's values as numpy: null-free numeric chunks are viewed in place; anything else goes through
    pyarrow's ``to_numpy`` (nulls become NaN), or, with ``strict``, raises ValueError."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        if is_plain_number(chunk):
            parts.append(numeric_view(chunk))
        elif strict:
            raise ValueError(f"{chunk.type} with {chunk.null_count} null(s) is not a plain number column")
        else:
            parts.append(chunk.to_numpy(zero_copy_only=False))
    if not parts:
        return np.empty(0, np.dtype(column.type.to_pandas_dtype()) if pa.types.is_primitive(column.type) else None)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def list_lengths(lists: pa.Array[Any]) -> np.ndarray:
    """The length of each list of a null-free list, large-list or fixed-size-list array, from its offsets
    (``pyarrow.compute.list_value_length`` without importing ``pyarrow.compute``: 0.12 s)."""
    if pa.types.is_fixed_size_list(lists.type):
        return np.full(len(lists), lists.type.list_size, np.int64)
    return np.diff(to_numpy(lists.offsets))  # type: ignore[attr-defined]  # a (large) list array


def flatten_lists(lists: pa.Array[Any]) -> pa.Array[Any]:
    """The values of a list array's lists, in order: ``Array.flatten``, which imports ``pyarrow.compute`` (0.12 s),
    only where null lists must be skipped; a null-free array is sliced by its offsets."""
    if lists.null_count:
        return lists.flatten()  # type: ignore[attr-defined,no-any-return]  # a list array
    if pa.types.is_fixed_size_list(lists.type):
        size = lists.type.list_size
        return lists.values.slice(lists.offset * size, len(lists) * size)  # type: ignore[attr-defined,no-any-return]
    offsets = to_numpy(lists.offsets)  # type: ignore[attr-defined]
    first = int(offsets[0]) if len(offsets) else 0
    return lists.values.slice(first, int(offsets[-1]) - first if len(offsets) else 0)  # type: ignore[attr-defined,no-any-return]


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One parquet file as a table, schema metadata included (``pq.read_table`` without ``pyarrow.dataset``)."""
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)
