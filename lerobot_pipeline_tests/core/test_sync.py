"""Camera synchronisation and the gap policy (core/sync.py), plus their use by align_episode."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_pipeline.core.convert import align_episode
from lerobot_pipeline.core.sync import plan_gaps, sync_cameras
from lerobot_pipeline.errors import EpisodeRejected
from lerobot_pipeline_tests.conftest import MS, T0_NS

PERIOD = 40 * MS


def base_times(n: int) -> np.ndarray:
    return T0_NS + np.arange(n, dtype=np.int64) * PERIOD


def cameras(n: int, **others) -> dict[str, np.ndarray]:
    """The three default cameras, all on the 25 Hz base clock unless given."""
    t = base_times(n)
    return {"cam_left": t, "cam_right": others.get("cam_right", t), "cam_head": others.get("cam_head", t)}


# ----------------------------------------------------------------------------- sync_cameras


def test_downsample_camera_takes_the_nearest_frame_and_drops_its_surplus(make_raw, make_config):
    n = 25  # one second at 25 Hz
    head = T0_NS + np.round(np.arange(30) * 1e9 / 30).astype(np.int64)  # 30 Hz on the same clock
    raw = make_raw(cameras(n, cam_head=head))
    tl = sync_cameras(raw, make_config())
    assert [m.name for m in tl.matches] == ["cam_left", "cam_right", "cam_head"]
    np.testing.assert_array_equal(tl.t_ns, base_times(n))
    m = tl.matches[2]
    # hand-computed for the first base frames: 0 ms -> 0, 40 -> 33.3 (1), 80 -> 66.7 (2), 120 -> 133.3 (4),
    # 160 -> 166.7 (5), 200 -> 200 (6): head frame 3 (100 ms) is never anybody's nearest
    assert m.index[:6].tolist() == [0, 1, 2, 4, 5, 6]
    for k, t in enumerate(tl.t_ns):
        assert m.index[k] == int(np.argmin(np.abs(head - t)))
        assert m.err_ms[k] == pytest.approx(abs(head[m.index[k]] - t) / 1e6)
    # 6 head frames per 5 base frames: one in six is surplus and never chosen
    never = sorted(set(range(30)) - set(m.index.tolist()))
    assert never == [3, 9, 15, 21, 27]
    assert m.valid.all()  # within 20 ms everywhere
    # the base camera matches itself exactly
    assert tl.matches[0].index.tolist() == list(range(n)) and (tl.matches[0].err_ms == 0).all()


def test_sync_camera_tolerance_is_inclusive(make_raw, make_config):
    # one cam_right frame near each even base frame: +20 ms, +20 ms + 1 ns, -20 ms, -20 ms - 1 ns
    t = base_times(8)
    right = t[[0, 2, 4, 6]] + np.array([20 * MS, 20 * MS + 1, -20 * MS, -20 * MS - 1])
    raw = make_raw(cameras(8, cam_right=right))
    tl = sync_cameras(raw, make_config({"sync.tolerance_ms": 20}))
    m = tl.matches[1]
    assert m.index[[0, 2, 4, 6]].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(m.err_ms[[0, 2, 4, 6]], [20.0, 20.000001, 20.0, 20.000001])
    assert m.valid[[0, 2, 4, 6]].tolist() == [True, False, True, False]
    assert tl.valid[[0, 2, 4, 6]].tolist() == [True, False, True, False]
    # a wider tolerance accepts them all
    assert sync_cameras(raw, make_config({"sync.tolerance_ms": 20.001})).matches[1].valid[[0, 2, 4, 6]].all()


def test_missing_camera_rejected_when_all_cameras_required(make_raw, make_config):
    t = base_times(10)
    raw = make_raw({"cam_left": t, "cam_right": t}, missing=("cam_head",))
    with pytest.raises(EpisodeRejected, match="cam_head"):
        sync_cameras(raw, make_config({"filtering.require_all_cameras": True}))


def test_missing_camera_becomes_black_frames_when_allowed(make_raw, make_config):
    t = base_times(10)
    raw = make_raw({"cam_left": t, "cam_right": t}, missing=("cam_head",))
    tl = sync_cameras(raw, make_config({"filtering.require_all_cameras": False}))
    head = tl.matches[2]
    assert head.name == "cam_head"
    assert (head.index == -1).all() and head.valid.all() and np.isnan(head.err_ms).all()
    assert tl.valid.all()


def test_missing_base_camera_is_rejected(make_raw, make_config):
    t = base_times(10)
    raw = make_raw({"cam_right": t, "cam_head": t}, missing=("cam_left",))
    with pytest.raises(EpisodeRejected, match="cam_left"):
        sync_cameras(raw, make_config({"filtering.require_all_cameras": False}))


# ----------------------------------------------------------------------------- plan_gaps


def plan(valid, make_config, reasons=None, **overrides):
    valid = np.asarray(valid, dtype=bool)
    cfg = make_config({"filtering.min_duration_sec": 0, **overrides})
    return plan_gaps(valid, base_times(len(valid)), cfg, "local.episode_0001", reasons or {"cam_head": valid})


def test_ends_are_trimmed_under_every_policy(make_config):
    valid = [False, False, True, True, True, True, False]
    for policy in ("fill", "split", "reject"):
        p = plan(valid, make_config, **{"sync.gap_policy": policy})
        assert [(s.start, s.stop) for s in p.parts] == [(2, 6)]
        assert (p.trimmed_start, p.trimmed_end) == (2, 1)
        assert not p.filled.any() and p.dropped_gaps == 0


def test_fill_keeps_inner_gap_frames_and_flags_them(make_config):
    valid = [False, True, True, False, False, True, True, False]
    p = plan(valid, make_config, **{"sync.gap_policy": "fill"})
    assert [(s.start, s.stop) for s in p.parts] == [(1, 7)]
    assert np.flatnonzero(p.filled).tolist() == [3, 4]
    assert (p.trimmed_start, p.trimmed_end, p.dropped_gaps) == (1, 1, 0)


def test_split_cuts_at_gaps_and_drops_gap_frames(make_config):
    valid = [True, True, True, False, True, True, False, False, True, True]
    p = plan(valid, make_config, **{"sync.gap_policy": "split"})
    assert [(s.start, s.stop) for s in p.parts] == [(0, 3), (4, 6), (8, 10)]
    assert p.dropped_gaps == 3 and not p.filled.any()
    assert any("split at 2 gap(s)" in note for note in p.notes)


def test_reject_names_the_culprit_and_the_frame(make_config):
    n = 10
    head = np.ones(n, bool)
    head[6] = False
    arm = np.ones(n, bool)
    arm[8] = False  # a second gap: frame 7 is valid
    valid = head & arm
    reasons = {"cam_left": np.ones(n, bool), "cam_head": head, "left_master": arm}
    with pytest.raises(EpisodeRejected) as exc:
        plan(valid, make_config, reasons, **{"sync.gap_policy": "reject"})
    msg = str(exc.value)
    assert "frame 6" in msg and "cam_head" in msg and "episode_0001" in msg
    assert "left_master" not in msg and "cam_left" not in msg  # only the first gap's culprits
    assert "t=0.240 s" in msg
    # an arm as culprit
    with pytest.raises(EpisodeRejected, match=r"frame 8 .*left_master"):
        plan(arm, make_config, {"cam_head": np.ones(n, bool), "left_master": arm}, **{"sync.gap_policy": "reject"})


def test_nothing_valid_is_rejected(make_config):
    with pytest.raises(EpisodeRejected, match="no frame"):
        plan([False] * 5, make_config)


def test_min_duration_drops_short_pieces_and_rejects_when_nothing_is_left(make_config):
    # 0.2 s at 25 fps = 5 frames; pieces of 6, 2 and 5 frames
    valid = [True] * 6 + [False] + [True] * 2 + [False] + [True] * 5
    p = plan(valid, make_config, **{"sync.gap_policy": "split", "filtering.min_duration_sec": 0.2})
    assert [(s.start, s.stop) for s in p.parts] == [(0, 6), (10, 15)]
    assert p.dropped_short == 2 and p.dropped_gaps == 2
    with pytest.raises(EpisodeRejected, match="too short"):
        plan([True] * 4, make_config, **{"filtering.min_duration_sec": 0.2})


def test_long_pieces_are_split_below_max_episode_sec(make_config):
    # max 2 s at 25 fps = 50 frames; 120 frames -> 3 equal parts of 40
    p = plan([True] * 120, make_config, **{"sync.max_episode_sec": 2})
    assert [(s.start, s.stop) for s in p.parts] == [(0, 40), (40, 80), (80, 120)]
    assert all(len(s) <= 50 for s in p.parts)
    # exactly 50 frames is one part; 51 are two
    assert len(plan([True] * 50, make_config, **{"sync.max_episode_sec": 2}).parts) == 1
    assert [len(s) for s in plan([True] * 51, make_config, **{"sync.max_episode_sec": 2}).parts] == [26, 25]


def test_max_episode_shorter_than_a_frame_gives_one_frame_parts(make_config):
    # accepted by the config (> 0): must not divide by zero frames
    p = plan([True] * 3, make_config, **{"sync.max_episode_sec": 0.02})
    assert [(s.start, s.stop) for s in p.parts] == [(0, 1), (1, 2), (2, 3)]


# ----------------------------------------------------------------------------- through align_episode


def test_align_episode_applies_camera_gaps_to_the_rows(make_raw, make_arm, make_config):
    n = 50  # 2 s
    t = base_times(n)
    head = np.delete(t, [20, 21, 22])  # a 160 ms hole in cam_head: frames 20..22 have no partner
    right = t[2:]  # cam_right starts 80 ms late: base frames 0 and 1 have no partner (trimmed)
    arm_t = T0_NS - 10 * MS + np.arange(600, dtype=np.int64) * 4 * MS
    arms = [make_arm(arm_t, name=a.name, role=a.role, joints=7) for a in make_config().robot.arms]
    raw = make_raw(cameras(n, cam_head=head, cam_right=right), arms)

    cfg = make_config({"alignment.strategy": "nearest", "filtering.min_duration_sec": 0.2})
    filled = align_episode(raw, cfg)
    (part,) = filled.parts
    assert (part.report.trimmed_start, part.report.trimmed_end, part.report.start_frame) == (2, 0, 2)
    np.testing.assert_array_equal(part.capture_t_ns, t[2:])
    assert part.report.frames_out == 48
    assert part.report.filled_frames == [18, 19, 20]  # rows of the part: base frames 20..22
    assert part.report.filled_by == {"cam_head": 3}
    # head keeps 0..760 ms (frames 0..19), then 920 ms (frame 20), 960 ms (21), ...; filled rows take the
    # nearest anyway: 800 ms -> 760 (19), 840 -> 760/920 tie -> earlier (19), 880 -> 920 (20), 920 -> 20
    assert part.camera_frames["cam_head"][17:22].tolist() == [19, 19, 19, 20, 20]
    np.testing.assert_allclose(filled.timeline.matches[2].err_ms[19:24], [0, 40, 80, 40, 0])
    assert part.camera_frames["cam_right"][:3].tolist() == [0, 1, 2]
    # every arm covers the whole timeline: the state rows are the samples nearest to each capture time
    expected = np.argmin(np.abs(arm_t[None, :] - t[2:, None]), axis=1)
    np.testing.assert_array_equal(part.arrays.state_slave[:, 0], (10.0 * expected).astype(np.float32))

    split = align_episode(raw, make_config({"alignment.strategy": "nearest", "sync.gap_policy": "split",
                                           "filtering.min_duration_sec": 0.2}))
    assert [len(p.capture_t_ns) for p in split.parts] == [18, 27]
    np.testing.assert_array_equal(split.parts[0].capture_t_ns, t[2:20])
    np.testing.assert_array_equal(split.parts[1].capture_t_ns, t[23:])
    assert [p.report.part for p in split.parts] == [0, 1]
    assert all(p.report.n_parts == 2 and p.report.dropped_gaps == 3 for p in split.parts)
    assert [p.report.start_frame for p in split.parts] == [2, 23]
    assert all(p.report.filled_frames == [] for p in split.parts)

    with pytest.raises(EpisodeRejected, match=r"frame 20 .*cam_head"):
        align_episode(raw, make_config({"sync.gap_policy": "reject"}))
