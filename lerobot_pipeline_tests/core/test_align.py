"""Joint alignment strategies (core/align.py) on small hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_pipeline.config import AlignmentConfig
from lerobot_pipeline.core.align import align_arm, frame_arrays
from lerobot_pipeline_tests.conftest import MS, T0_NS


def ms(*values) -> np.ndarray:
    """Absolute ns times for offsets in ms (integers or exact floats) after a realistic ROS time."""
    return np.array([T0_NS + int(round(v * MS)) for v in values], dtype=np.int64)


# 10 samples every 4 ms: t = 0, 4, ..., 36 ms; joint 0 = 10*i, joint 1 = 10*i + 1
GRID = ms(*range(0, 40, 4))


# ----------------------------------------------------------------------------- nearest


def test_nearest_tolerance_edges(make_arm):
    arm = make_arm(ms(0, 100))
    cfg = AlignmentConfig(strategy="nearest", tolerance_ms=20)
    # 20 ms after the first sample: exactly at tolerance; 1 ns later: beyond; 100 ms: on the second sample
    t = np.array([T0_NS + 20 * MS, T0_NS + 20 * MS + 1, T0_NS + 100 * MS, T0_NS - 20 * MS - 1])
    a = align_arm(arm, t, cfg)
    assert a.valid.tolist() == [True, False, True, False]
    np.testing.assert_allclose(a.err_ms, [20.0, 20.000001, 0.0, 20.000001])
    # invalid frames still carry the nearest value (used under gap_policy=fill)
    np.testing.assert_array_equal(a.state[:, 0], [0.0, 0.0, 10.0, 0.0])
    assert a.chunk is None and a.chunk_padded is None


def test_nearest_tie_goes_to_the_earlier_sample(make_arm):
    arm = make_arm(GRID)
    a = align_arm(arm, ms(2, 6, 34, 38), AlignmentConfig(strategy="nearest"))
    # 2 ms is halfway between samples 0 and 1, 6 ms between 1 and 2, 34 between 8 and 9; 38 is past the end
    np.testing.assert_array_equal(a.state[:, 0], [0.0, 10.0, 80.0, 90.0])
    np.testing.assert_allclose(a.err_ms, [2.0, 2.0, 2.0, 2.0])


def test_unequal_arm_clocks_give_each_arm_its_own_nearest(make_arm):
    # arm A: 4 ms period from 0; arm B: its own clock, 1.5 ms later and a 5 ms period
    arm_a = make_arm(ms(0, 4, 8, 12, 16, 20), name="a")
    arm_b = make_arm(ms(1.5, 6.5, 11.5, 16.5, 21.5), name="b")
    t = ms(3, 9, 14, 19)
    cfg = AlignmentConfig(strategy="nearest", tolerance_ms=5)
    a, b = align_arm(arm_a, t, cfg), align_arm(arm_b, t, cfg)
    # A: 3 -> 4 (idx 1), 9 -> 8 (2), 14 -> 12/16 tie -> 12 (3), 19 -> 20 (5)
    np.testing.assert_array_equal(a.state[:, 0], [10.0, 20.0, 30.0, 50.0])
    np.testing.assert_allclose(a.err_ms, [1.0, 1.0, 2.0, 1.0])
    # B: 3 -> 1.5 (0), 9 -> 6.5/11.5 tie -> 6.5 (1), 14 -> 11.5/16.5 tie -> 11.5 (2), 19 -> 16.5/21.5 -> 16.5 (3)
    np.testing.assert_array_equal(b.state[:, 0], [0.0, 10.0, 20.0, 30.0])
    np.testing.assert_allclose(b.err_ms, [1.5, 2.5, 2.5, 2.5])


# ----------------------------------------------------------------------------- window


def test_window_mean_on_hand_computed_values(make_arm):
    values = np.array([[1.0], [2.0], [4.0], [8.0], [16.0], [32.0]])
    arm = make_arm(ms(0, 4, 8, 12, 16, 20), values)
    cfg = AlignmentConfig(strategy="window", window_ms=4, aggregation="mean")
    a = align_arm(arm, ms(8, 10, 20), cfg)
    # 8: |t-8|<=4 -> samples at 4, 8, 12 (edges inclusive) = (2+4+8)/3; 10: 8, 12 = 6; 20: 16, 20 = 24
    np.testing.assert_allclose(a.state[:, 0], [14 / 3, 6.0, 24.0])
    assert a.valid.all()


def test_window_median_odd_and_even_counts(make_arm):
    values = np.array([[1.0], [2.0], [4.0], [8.0], [100.0], [32.0]])
    arm = make_arm(ms(0, 4, 8, 12, 16, 20), values)
    cfg = AlignmentConfig(strategy="window", window_ms=4, aggregation="median")
    a = align_arm(arm, ms(8, 10, 12, 14), cfg)
    # 8: {2, 4, 8} -> 4; 10: {4, 8} -> 6 (even count: mean of the middle two);
    # 12: {4, 8, 100} -> 8; 14: {8, 100} -> 54
    np.testing.assert_allclose(a.state[:, 0], [4.0, 6.0, 8.0, 54.0])


def test_window_without_samples_is_invalid_and_falls_back_to_nearest(make_arm):
    arm = make_arm(ms(0, 4, 50), np.array([[1.0], [3.0], [7.0]]))
    for aggregation in ("mean", "median"):
        cfg = AlignmentConfig(strategy="window", window_ms=5, aggregation=aggregation)
        a = align_arm(arm, ms(2, 30, 44.999999, 45), cfg)
        # 2: {0, 4} -> 2; 30: nothing within 5 ms -> invalid, nearest is 50 (20 ms) -> 7;
        # 44.999999 ms: 5.000001 ms from 50 -> invalid, nearest 50; 45: exactly 5 ms -> valid, {50}
        assert a.valid.tolist() == [True, False, False, True]
        np.testing.assert_allclose(a.state[:, 0], [2.0, 7.0, 7.0, 7.0])


# ----------------------------------------------------------------------------- chunking


def test_chunking_index_step_takes_consecutive_samples(make_arm):
    master = make_arm(GRID, role="master")
    cfg = AlignmentConfig(strategy="chunking", chunk_size=3)
    a = align_arm(master, ms(5, 17), cfg)
    # 5 ms -> nearest sample 1 (4 ms): chunk = samples 1, 2, 3; 17 -> sample 4: 4, 5, 6
    np.testing.assert_array_equal(a.chunk[:, :, 0], [[10, 20, 30], [40, 50, 60]])
    np.testing.assert_array_equal(a.chunk[:, :, 1], [[11, 21, 31], [41, 51, 61]])
    assert not a.chunk_padded.any()
    # state is the nearest sample, every frame valid
    np.testing.assert_array_equal(a.state[:, 0], [10.0, 40.0])
    assert a.valid.all()


def test_chunking_step_ms_picks_every_other_sample(make_arm):
    master = make_arm(GRID, role="master")
    cfg = AlignmentConfig(strategy="chunking", chunk_size=4, chunk_step_ms=8)
    a = align_arm(master, ms(1, 9), cfg)
    # 1 ms -> sample 0, then 8, 16, 24 ms = samples 0, 2, 4, 6; 9 ms -> sample 2: 2, 4, 6, 8
    np.testing.assert_array_equal(a.chunk[:, :, 0], [[0, 20, 40, 60], [20, 40, 60, 80]])
    assert not a.chunk_padded.any()


@pytest.mark.parametrize("padding_mode, fill", [("repeat", 90.0), ("zeros", 0.0)])
def test_chunking_padding_past_the_end(make_arm, padding_mode, fill):
    master = make_arm(GRID, role="master")
    cfg = AlignmentConfig(strategy="chunking", chunk_size=4, padding_mode=padding_mode)
    a = align_arm(master, ms(32, 36, 60), cfg)
    # 32 ms -> sample 8: 8, 9, pad, pad; 36 -> 9: 9, pad x3; 60 (past the data) -> 9 as well
    np.testing.assert_array_equal(a.chunk_padded, [[False, False, True, True], [False, True, True, True],
                                                   [False, True, True, True]])
    np.testing.assert_array_equal(a.chunk[:, :, 0], [[80, 90, fill, fill], [90, fill, fill, fill],
                                                     [90, fill, fill, fill]])
    # all joints are padded the same way
    assert (a.chunk[:, :, 1][a.chunk_padded] == (91.0 if padding_mode == "repeat" else 0.0)).all()


@pytest.mark.parametrize("padding_mode, fill", [("repeat", 90.0), ("zeros", 0.0)])
def test_chunking_step_ms_padding_past_the_end(make_arm, padding_mode, fill):
    master = make_arm(GRID, role="master")
    cfg = AlignmentConfig(strategy="chunking", chunk_size=4, chunk_step_ms=8, padding_mode=padding_mode)
    a = align_arm(master, ms(24), cfg)
    # targets 24, 32, 40, 48 ms; the data ends at 36 ms
    np.testing.assert_array_equal(a.chunk_padded, [[False, False, True, True]])
    np.testing.assert_array_equal(a.chunk[0, :, 0], [60, 80, fill, fill])


def test_chunking_slaves_have_no_chunk_and_action_is_2d(make_arm):
    cfg = AlignmentConfig(strategy="chunking", chunk_size=3)
    t = ms(5, 17)
    aligned = (align_arm(make_arm(GRID, name="s", role="slave"), t, cfg),
               align_arm(make_arm(GRID, name="m", role="master"), t, cfg))
    assert aligned[0].chunk is None
    arrays = frame_arrays(aligned, np.arange(2), "chunking")
    assert arrays.action.shape == (2, 3, 2) and arrays.action.dtype == np.float32
    assert arrays.state_slave.shape == arrays.state_master.shape == (2, 2)
    # the first action of each chunk is the master's state at that frame
    np.testing.assert_array_equal(arrays.action[:, 0, :], arrays.state_master)


# ----------------------------------------------------------------------------- utilisation


def test_used_samples_per_strategy(make_arm):
    # 20 samples every 4 ms (0..76 ms); frames at 9 and 41 ms -> nearest samples 2 and 10
    t_s = ms(*range(0, 80, 4))
    t = ms(9, 41)
    near = align_arm(make_arm(t_s), t, AlignmentConfig(strategy="nearest"))
    assert near.used_samples(np.arange(2)) == 2
    assert near.used_samples(np.array([1])) == 1
    # window 5 ms: 9 -> {4, 8, 12}, 41 -> {36, 40, 44}
    win = align_arm(make_arm(t_s), t, AlignmentConfig(strategy="window", window_ms=5))
    assert win.used_samples(np.arange(2)) == 6
    # chunking, 3 per chunk: master {2, 3, 4} + {10, 11, 12}; 10 per chunk: 2..11 and 10..19 overlap -> 18
    c3 = align_arm(make_arm(t_s, role="master"), t, AlignmentConfig(strategy="chunking", chunk_size=3))
    assert c3.used_samples(np.arange(2)) == 6
    c10 = align_arm(make_arm(t_s, role="master"), t, AlignmentConfig(strategy="chunking", chunk_size=10))
    assert c10.used_samples(np.arange(2)) == 18
    assert c10.used_samples(np.array([0])) == 10
    # a slave under chunking only contributes its nearest sample
    slave = align_arm(make_arm(t_s, role="slave"), t, AlignmentConfig(strategy="chunking", chunk_size=10))
    assert slave.used_samples(np.arange(2)) == 2
    # padded chunk steps use no sample: frame at 72 ms -> samples 18, 19 and 8 padded steps
    end = align_arm(make_arm(t_s, role="master"), ms(72), AlignmentConfig(strategy="chunking", chunk_size=10))
    assert end.used_samples(np.array([0])) == 2


def test_window_utilisation_counts_nearest_for_frames_without_samples(make_arm):
    a = align_arm(make_arm(ms(0, 4, 50)), ms(2, 30), AlignmentConfig(strategy="window", window_ms=5))
    # frame 2 ms uses {0, 4}; frame 30 ms is invalid and falls back to the nearest sample (50 ms)
    assert a.used_samples(np.arange(2)) == 3
    assert a.used_samples(np.array([1])) == 1


# ----------------------------------------------------------------------------- scale


def test_million_samples_align_vectorised_and_match_brute_force(make_arm):
    rng = np.random.default_rng(0)
    n = 1_000_000
    # 4 ms +- 0.3 ms on a realistic clock, 66 min of samples; 30,000 frames at ~25 Hz within and beyond them
    t_s = T0_NS + np.cumsum(rng.integers(3_700_000, 4_300_000, n)).astype(np.int64)
    values = rng.normal(size=(n, 7))
    arm = make_arm(t_s, values, role="master")
    t = np.sort(rng.integers(t_s[0] - 50 * MS, t_s[-1] + 50 * MS, 30_000)).astype(np.int64)
    near = align_arm(arm, t, AlignmentConfig(strategy="nearest"))
    win = align_arm(arm, t, AlignmentConfig(strategy="window", window_ms=10, aggregation="median"))
    mean = align_arm(arm, t, AlignmentConfig(strategy="window", window_ms=10, aggregation="mean"))
    assert near.state.shape == win.state.shape == mean.state.shape == (30_000, 7)
    for k in rng.choice(len(t), 200, replace=False):
        d = np.abs(t_s - t[k])
        i = int(np.argmin(d))  # argmin returns the first (earlier) of equal distances
        np.testing.assert_array_equal(near.state[k], values[i])
        assert near.err_ms[k] == pytest.approx(d[i] / 1e6)
        inside = d <= 10 * MS
        if inside.any():
            np.testing.assert_allclose(win.state[k], np.median(values[inside], axis=0))
            np.testing.assert_allclose(mean.state[k], values[inside].mean(axis=0), rtol=1e-9, atol=1e-9)
        else:
            np.testing.assert_array_equal(win.state[k], values[i])
            np.testing.assert_array_equal(mean.state[k], values[i])
        assert win.valid[k] == inside.any()



def test_chunking_state_must_lie_within_tolerance(make_arm):
    # samples at 0..36 ms; 56 ms is exactly 20 ms after the last one (valid), 57 ms is not: its state
    # would be the stale sample 9 (domain.md §4) -- invalid, though its chunk is still computed (padded)
    for role in ("slave", "master"):
        arm = make_arm(GRID, role=role)
        a = align_arm(arm, ms(-20, -21, 36, 56, 57), AlignmentConfig(strategy="chunking", chunk_size=2))
        np.testing.assert_array_equal(a.valid, [True, False, True, True, False])
        np.testing.assert_allclose(a.err_ms, [20, 21, 0, 20, 21])


def test_part_report_reads_old_report_files_without_the_new_fields():
    from lerobot_pipeline.core.report import ErrorStats, PartReport

    old = dict(episode_key="local.e", source="local", episode_id="e", task="t", strategy="chunking",
               config_digest="x", part=0, n_parts=1, fps=25, frames_in=3, frames_out=3, start_frame=0,
               capture_start_ns=0, capture_end_ns=1, trimmed_start=0, trimmed_end=0, dropped_gaps=0,
               dropped_short=0, filled_frames=[], filled_by={}, camera_error_ms={"c": None},
               arm_error_ms={"a": {"mean_ms": 1.0, "p95_ms": 1.0, "max_ms": 1.0}}, utilisation={"a": 1.0},
               utilisation_total=1.0, nan_filled={"a": 0}, warnings=[], notes=[])
    r = PartReport.from_dict(old)
    assert (r.padded_steps, r.bad_images, r.long_gaps) == ({}, {}, 0)
    assert r.arm_error_ms["a"] == ErrorStats(1.0, 1.0, 1.0)
    new = PartReport.from_dict({**r.to_dict(), "padded_steps": {"a": [2, 1]}, "long_gaps": 1})
    assert new.padded_steps == {"a": [2, 1]} and new.long_gaps == 1
