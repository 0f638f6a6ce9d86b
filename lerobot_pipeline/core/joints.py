"""Read one arm's joint parquet file: timestamps, the configured columns, NaNs filled where the hole is short.

Split from raw.py (which re-exports :class:`ArmSamples`, :func:`read_arm` and :func:`fill_nans_by_time`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_pipeline.config import ArmConfig, PipelineConfig, RobotConfig
from lerobot_pipeline.core.arrow import to_numpy
from lerobot_pipeline.errors import RawDataError

if TYPE_CHECKING:
    from lerobot_pipeline.core.raw import EpisodeRef


@dataclass(frozen=True)
class ArmSamples:
    """One arm's joint samples, sorted by time, NaNs already filled."""

    name: str
    role: str
    t_ns: np.ndarray  # (n,) int64, strictly increasing
    values: np.ndarray  # (n, joints) float64
    nan_filled: int  # number of values filled from time neighbours
    duplicates_dropped: int
    reordered: bool
    nan_dropped: int = 0  # samples inside NaN runs too long to fill (absent: frames there have no state)


def _neighbours(finite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the previous and next finite value for every position (-1 / n when there is none)."""
    n = len(finite)
    idx = np.arange(n)
    prev = np.maximum.accumulate(np.where(finite, idx, -1))
    nxt = np.minimum.accumulate(np.where(finite, idx, n)[::-1])[::-1]
    return prev, nxt


def fill_nans_by_time(
    t_ns: np.ndarray, values: np.ndarray, max_hole_ns: float = np.inf, *, inplace: bool = False,
) -> tuple[np.ndarray, int, list[int], np.ndarray]:
    """Fill non-finite values per column by linear interpolation between time neighbours.

    Only short holes are filled: the finite neighbours around a NaN run must lie at most
    ``max_hole_ns`` apart (before the first / after the last finite value: the NaN at most half of
    that from it, taking its value). A longer run is no data: its rows are returned in the drop mask,
    so the samples are absent and the frames there have no state (tolerance, gap policy) instead of
    a line drawn across the hole. Returns the filled array, the number of filled values, the indices
    of columns without any finite value, and the (n,) bool mask of rows to drop. ``inplace``: fill
    ``values`` itself (float64, owned by the caller) instead of a copy.
    """
    out = values if inplace and values.dtype == np.float64 else values.astype(np.float64, copy=True)
    filled_mask = np.zeros(out.shape, dtype=bool)
    empty_columns: list[int] = []
    drop = np.zeros(len(t_ns), dtype=bool)
    # relative times: absolute ROS ns (~1.8e18) are only exact to 256 ns as float64
    t = (t_ns - t_ns[0]).astype(np.float64) if len(t_ns) else t_ns.astype(np.float64)
    n = len(t)
    for j in range(out.shape[1]):
        col = out[:, j]
        bad = ~np.isfinite(col)
        n_bad = int(bad.sum())
        if n_bad == 0:
            continue
        if n_bad == len(col):
            empty_columns.append(j)
            continue
        prev, nxt = _neighbours(~bad)
        t_prev = t[np.maximum(prev, 0)]
        t_next = t[np.minimum(nxt, n - 1)]
        hole = np.where(prev < 0, 2 * (t_next - t), np.where(nxt >= n, 2 * (t - t_prev), t_next - t_prev))
        fillable = bad & (hole <= max_hole_ns)
        drop |= bad & ~fillable
        col[fillable] = np.interp(t[fillable], t[~bad], col[~bad])
        filled_mask[:, j] = fillable
    return out, int(filled_mask[~drop].sum()), empty_columns, drop  # values of dropped rows do not count


def _read_columns(path: Path, ep: str, robot: RobotConfig) -> tuple[np.ndarray, np.ndarray]:
    """(t_ns int64, values float64 (n, joints)) of one joint file, read one column at a time: the decoded
    file is never in memory at once, only the arrays kept from it (a 20-minute arm is ~300k rows)."""
    wanted = [robot.timestamp_sec_column, robot.timestamp_nanosec_column, *robot.joint_columns]
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise RawDataError(ep, "joint file is missing", file=str(path)) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RawDataError(ep, f"not a readable parquet file ({e})", file=str(path)) from None
    with pf:
        names = pf.schema_arrow.names
        for col in wanted:
            if col not in names:
                raise RawDataError(ep, "column is missing", file=str(path), field=col)
        n = pf.metadata.num_rows
        if n == 0:
            raise RawDataError(ep, "joint file has no rows", file=str(path))

        def column(name: str) -> pa.ChunkedArray[Any]:
            try:
                return pf.read(columns=[name]).column(0)
            except (pa.ArrowInvalid, OSError) as e:
                raise RawDataError(ep, f"cannot read parquet data ({e})", file=str(path)) from None

        try:
            t_ns = to_numpy(column(wanted[0]), strict=True).astype(np.int64) * 1_000_000_000
            t_ns += to_numpy(column(wanted[1]), strict=True).astype(np.int64)
        except (pa.ArrowInvalid, ValueError, TypeError) as e:
            raise RawDataError(ep, f"timestamps are not integers ({e})", file=str(path), field=wanted[0]) from None
        values = np.empty((n, len(robot.joint_columns)), dtype=np.float64)
        for j, col in enumerate(robot.joint_columns):
            try:
                values[:, j] = to_numpy(column(col)).astype(np.float64)
            except (ValueError, TypeError, pa.ArrowInvalid) as e:
                raise RawDataError(ep, f"values are not numeric ({e})", file=str(path), field=col) from None
    return t_ns, values


def read_arm(ref: EpisodeRef, arm: ArmConfig, config: PipelineConfig) -> ArmSamples:
    robot = config.robot
    path = ref.joints_dir / arm.file
    ep = ref.key
    t_ns, values = _read_columns(path, ep, robot)

    reordered = bool(np.any(np.diff(t_ns) < 0))
    if reordered:
        order = np.argsort(t_ns, kind="stable")
        t_ns, values = t_ns[order], values[order]
    keep = np.ones(len(t_ns), dtype=bool)
    keep[1:] = np.diff(t_ns) > 0
    duplicates = int((~keep).sum())
    if duplicates:
        t_ns, values = t_ns[keep], values[keep]

    max_hole_ns = 2 * config.alignment.tolerance_ms * 1e6  # what a nearest look-up would bridge anyway
    values, filled, empty, drop = fill_nans_by_time(t_ns, values, max_hole_ns, inplace=True)
    if empty:
        raise RawDataError(ep, "column has no finite value at all", file=str(path), field=robot.joint_columns[empty[0]])
    if drop.all():
        raise RawDataError(ep, "no sample has every used column finite (NaN runs too long to fill)", file=str(path))
    if drop.any():
        t_ns, values = t_ns[~drop], values[~drop]
    return ArmSamples(arm.name, arm.role, t_ns, values, filled, duplicates, reordered, int(drop.sum()))
