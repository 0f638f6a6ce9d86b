"""Property-based tests (hypothesis) of the alignment core: core/sync.py + core/align.py via align_episode.

Random camera and joint timelines with jitter, drops, long gaps, late/early arms, bad frames and every
strategy and gap policy. The oracle is brute force (distance matrices), never the code under test:

- rows = frames of every camera's video = capture times, which are consecutive base frames (no hole
  longer than ``sync.max_fill_ms`` inside a part), and the parquet's ``timestamp`` is ``i / fps``;
- a camera partner is never a bad frame, and lies within ``sync.tolerance_ms`` unless the row is a
  reported fill; filled runs are at most ``sync.max_fill_ms`` long;
- nearest/chunking state = the raw sample nearest in time, within ``alignment.tolerance_ms`` unless
  the row is a reported fill; window state = mean/median of the samples in the window;
- chunking action = the raw samples the chunk steps land on, or a pad exactly where the data ends,
  counted in ``padded_steps``; no NaN anywhere.

Values encode the sample they come from (``7 * i + j``, exact in float32), so every output value can be
traced back to its sample.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings, strategies as st

from lerobot_pipeline.config import apply_overrides, load_config
from lerobot_pipeline.core.convert import align_episode
from lerobot_pipeline.core.episode_writer import part_dir, write_parquets
from lerobot_pipeline.core.raw import ArmSamples, CameraFrames, EpisodeRef, RawEpisode
from lerobot_pipeline.errors import EpisodeRejected

T0 = 1_764_143_235_000_000_000
MS = 1_000_000
J = 7
PROPERTY_SETTINGS = settings(max_examples=int(__import__("os").environ.get("HYPOTHESIS_EXAMPLES", 60)), deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


def _camera(rng, name: str, fps: float, start_ms: float, stop_ms: float, drop: float, gap, n_bad: int) -> CameraFrames:
    period = 1000.0 / fps
    t = np.arange(start_ms, stop_ms, period)
    t = t + rng.uniform(-2, 2, len(t))
    keep = rng.random(len(t)) >= drop
    if gap is not None:
        g0, g_len = gap
        keep &= ~((t >= g0) & (t < g0 + g_len))
    t_ns = np.unique((T0 + t[keep] * MS).astype(np.int64))
    bad = {int(i): "zero bytes" for i in rng.choice(len(t_ns), size=min(n_bad, len(t_ns)), replace=False)}
    return CameraFrames(name, Path("/nonexistent") / name, t_ns, (".jpg",) * len(t_ns), 0, 0, bad)


def _arm(rng, name: str, role: str, start_ms: float, stop_ms: float, gap) -> ArmSamples:
    t = np.arange(start_ms, max(stop_ms, start_ms + 4.0), 4.0)
    t = t + rng.uniform(-0.5, 0.5, len(t))
    if gap is not None:
        g0, g_len = gap
        t = np.concatenate([t[:1], t[1:][~((t[1:] >= g0) & (t[1:] < g0 + g_len))]])  # the reader never gives 0 rows
    t_ns = np.unique((T0 + t * MS).astype(np.int64))
    values = 7.0 * np.arange(len(t_ns))[:, None] + np.arange(J)[None, :]
    return ArmSamples(name, role, t_ns, values, 0, 0, False)


@st.composite
def episodes(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    seconds = draw(st.floats(1.0, 3.0))
    stop = seconds * 1000
    gap = st.none() | st.tuples(st.floats(100, stop - 100), st.floats(40, 1000))
    arm_gap = st.none() | st.tuples(st.floats(100, stop - 100), st.floats(10, 300))
    cams = (
        _camera(rng, "cam_left", 25, 0, stop, draw(st.sampled_from([0, 0.05, 0.2])), draw(gap),
                draw(st.integers(0, 3))),
        _camera(rng, "cam_right", 25, draw(st.floats(-150, 150)), stop, draw(st.sampled_from([0, 0.1])), draw(gap),
                draw(st.integers(0, 3))),
        _camera(rng, "cam_head", 30, draw(st.floats(-150, 150)), stop, draw(st.sampled_from([0, 0.1, 0.3])), draw(gap),
                draw(st.integers(0, 2))),
    )
    arms = tuple(
        _arm(rng, name, role, draw(st.floats(-100, 300)), stop - draw(st.floats(-100, 400)), draw(arm_gap))
        for name, role in (("left_slave", "slave"), ("left_master", "master"),
                           ("right_slave", "slave"), ("right_master", "master"))
    )
    ref = EpisodeRef("local", "task", "episode_0001", Path("/nonexistent/j"), Path("/nonexistent/i"))
    raw = RawEpisode(ref, arms, {c.name: c for c in cams if len(c.t_ns)}, ())
    overrides = {
        "alignment.strategy": draw(st.sampled_from(["nearest", "chunking", "window"])),
        "alignment.tolerance_ms": draw(st.sampled_from([10, 20, 30])),
        "alignment.window_ms": draw(st.sampled_from([6, 20])),
        "alignment.aggregation": draw(st.sampled_from(["mean", "median"])),
        "alignment.chunk_size": draw(st.integers(1, 6)),
        "alignment.chunk_step_ms": draw(st.sampled_from([None, 4, 10, 40])),
        "alignment.padding_mode": draw(st.sampled_from(["repeat", "zeros"])),
        "sync.gap_policy": draw(st.sampled_from(["fill", "split", "reject"])),
        "sync.tolerance_ms": draw(st.sampled_from([15, 20])),
        "sync.max_fill_ms": draw(st.sampled_from([0, 40, 120])),
        "sync.long_gap_policy": draw(st.sampled_from(["split", "reject"])),
        "filtering.min_duration_sec": draw(st.sampled_from([0, 0.2])),
        "filtering.require_all_cameras": False,
    }
    return raw, load_config(overrides=overrides)


def _nearest(ts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Brute force: index of the nearest sample (ties to the earlier one)."""
    d = np.abs(ts[None, :].astype(np.float64) - t[:, None].astype(np.float64))
    return np.argmin(d, axis=1)


def _runs(mask: np.ndarray) -> list[int]:
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return (edges[1::2] - edges[0::2]).tolist()


def _parts(raw, cfg) -> tuple:
    try:
        return align_episode(raw, cfg).parts
    except EpisodeRejected:
        return ()  # a configured refusal (reject, too short, nothing valid) is a correct outcome


def _filled(part) -> np.ndarray:
    mask = np.zeros(part.report.frames_out, bool)
    mask[part.report.filled_frames] = True
    return mask


def _arm_columns(cfg, role: str) -> list[str]:
    return [a.name for a in cfg.robot.arms if a.role == role]


@PROPERTY_SETTINGS
@given(episodes())
def test_rows_frames_and_capture_times_agree(ep):
    raw, cfg = ep
    parts = _parts(raw, cfg)
    base = raw.cameras["cam_left"].t_ns if "cam_left" in raw.cameras else None
    period_ms = 1000 / cfg.fps
    with tempfile.TemporaryDirectory() as d:
        write_parquets(Path(d), cfg, list(parts))
        for k, part in enumerate(parts):
            r = part.report
            n = r.frames_out
            np.testing.assert_array_equal(part.capture_t_ns, base[r.start_frame : r.start_frame + n])
            missing = np.rint(np.diff(part.capture_t_ns) * cfg.fps / 1e9) - 1
            assert (missing * period_ms <= cfg.sync.max_fill_ms + 1e-9).all()  # no hidden long hole
            assert all(len(idx) == n for idx in part.camera_frames.values())
            assert len(part.arrays.state_slave) == len(part.arrays.action) == n
            table = pq.read_table(part_dir(Path(d), k) / "data.parquet", columns=["timestamp"])
            np.testing.assert_array_equal(table.column("timestamp").to_numpy(),
                                          (np.arange(n) / cfg.fps).astype(np.float32))
            filled = _filled(part)
            assert all(length * period_ms <= cfg.sync.max_fill_ms + 1e-9 for length in _runs(filled))
            for cam, idx in part.camera_frames.items():
                frames = raw.cameras.get(cam)
                if frames is None:
                    assert (idx == -1).all()
                    continue
                assert not set(idx.tolist()) & set(frames.bad), f"{cam}: a bad frame was chosen"
                err_ms = np.abs(frames.t_ns[idx] - part.capture_t_ns) / 1e6
                assert (err_ms[~filled] <= cfg.sync.tolerance_ms).all()
                good = frames.good_index()
                np.testing.assert_array_equal(idx, good[_nearest(frames.t_ns[good], part.capture_t_ns)])


@PROPERTY_SETTINGS
@given(episodes())
def test_nearest_and_chunking_state_is_a_raw_sample_within_tolerance(ep):
    raw, cfg = ep
    a = cfg.alignment
    for part in _parts(raw, cfg):
        t = part.capture_t_ns
        filled = _filled(part)
        for role, state in (("slave", part.arrays.state_slave), ("master", part.arrays.state_master)):
            assert np.isfinite(state).all()
            for i, name in enumerate(_arm_columns(cfg, role)):
                arm = raw.arm(name)
                got = state[:, i * J : (i + 1) * J].astype(np.float64)
                near = _nearest(arm.t_ns, t)
                err_ms = np.abs(arm.t_ns[near] - t) / 1e6
                if a.strategy in ("nearest", "chunking"):
                    np.testing.assert_array_equal(got, arm.values[near].astype(np.float32))
                    assert (err_ms[~filled] <= a.tolerance_ms).all(), f"{name}: stale state in an unfilled row"
                    continue
                d = np.abs(arm.t_ns[None, :] - t[:, None])
                inside = d <= int(round(a.window_ms * MS))
                has = inside.any(axis=1)
                assert has[~filled].all()
                vals = np.where(inside[:, :, None], arm.values[None, :, :], np.nan)
                agg = np.nanmean(vals[has], axis=1) if a.aggregation == "mean" else np.nanmedian(vals[has], axis=1)
                np.testing.assert_allclose(got[has], agg, rtol=1e-6, atol=1e-3)
                np.testing.assert_array_equal(got[~has], arm.values[near[~has]].astype(np.float32))  # fills


@PROPERTY_SETTINGS
@given(episodes())
def test_chunking_action_is_raw_samples_or_a_reported_pad(ep):
    raw, cfg = ep
    a = cfg.alignment
    if a.strategy != "chunking":  # every example exercises the chunks
        cfg = apply_overrides(cfg, {"alignment.strategy": "chunking"})
        a = cfg.alignment
    for part in _parts(raw, cfg):
        t = part.capture_t_ns
        action = part.arrays.action
        assert action.shape == (len(t), a.chunk_size, J * 2) and np.isfinite(action).all()
        for i, name in enumerate(_arm_columns(cfg, "master")):
            arm = raw.arm(name)
            got = action[:, :, i * J : (i + 1) * J]
            near = _nearest(arm.t_ns, t)
            steps = np.arange(a.chunk_size)
            if a.chunk_step_ms is None:
                idx = near[:, None] + steps
                padded = idx >= len(arm.t_ns)
            else:
                target = arm.t_ns[near][:, None] + steps * int(round(a.chunk_step_ms * MS))
                padded = target > arm.t_ns[-1]
                idx = _nearest(arm.t_ns, target.reshape(-1)).reshape(target.shape)
            idx = np.minimum(idx, len(arm.t_ns) - 1)
            expected = arm.values[idx].astype(np.float32)
            if a.padding_mode == "zeros":
                expected[padded] = 0.0
            else:
                expected[padded] = arm.values[-1].astype(np.float32)
            np.testing.assert_array_equal(got, expected)
            hist = np.bincount(padded.sum(axis=1), minlength=a.chunk_size + 1).tolist()
            assert part.report.padded_steps[name] == hist



@PROPERTY_SETTINGS
@given(st.integers(0, 2**32 - 1), st.floats(0, 0.6), st.integers(0, 3), st.sampled_from([10, 20, 30]))
def test_nan_filling_interpolates_short_holes_and_drops_long_runs(seed, nan_rate, n_runs, tol_ms):
    from lerobot_pipeline.core.joints import fill_nans_by_time

    rng = np.random.default_rng(seed)
    n = 300
    t = T0 + np.cumsum(rng.integers(3 * MS, 5 * MS, n))
    values = np.tile(np.arange(n, dtype=np.float64)[:, None], (1, 3)) + np.arange(3)  # linear in the row
    values[rng.random((n, 3)) < nan_rate * 0.2] = np.nan
    for _ in range(n_runs):
        s = int(rng.integers(0, n))
        values[s : s + int(rng.integers(1, 60)), int(rng.integers(0, 3))] = np.nan
    max_hole = 2 * tol_ms * MS
    out, filled, empty, drop = fill_nans_by_time(t, values, max_hole)
    bad = ~np.isfinite(values)
    keep = ~drop
    cols = [j for j in range(3) if j not in empty]
    assert filled == int(bad[keep][:, cols].sum())  # every NaN of a kept row was filled, and counted
    assert np.isfinite(out[keep][:, cols]).all()
    np.testing.assert_array_equal(out[~bad], values[~bad])  # finite values untouched
    tr = (t - t[0]).astype(np.float64)
    for j in cols:
        ok = np.flatnonzero(~bad[:, j])
        for i in np.flatnonzero(bad[:, j] & keep):  # a filled value: its finite neighbours are close
            prev, nxt = ok[ok < i], ok[ok > i]
            if len(prev) and len(nxt):
                assert t[nxt[0]] - t[prev[-1]] <= max_hole
                expected = np.interp(tr[i], tr[[prev[-1], nxt[0]]], values[[prev[-1], nxt[0]], j])
                assert abs(out[i, j] - expected) < 1e-9
            else:
                edge = prev[-1] if len(prev) else nxt[0]
                assert 2 * abs(int(t[i]) - int(t[edge])) <= max_hole and out[i, j] == values[edge, j]
