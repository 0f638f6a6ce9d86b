"""Video checks: stream header vs info.json, frame count vs rows, frame times at start + k/fps."""

from __future__ import annotations

import numpy as np

from lerobot_pipeline.core.features import INFO_PATH
from lerobot_pipeline.core.validate.context import (
    RATE_TOLERANCE,
    TIMESTAMP_TOLERANCE_S,
    VIDEO_PTS_TOLERANCE_S,
    Context,
    Feature,
)
from lerobot_pipeline.core.validate.report import first_true, one_line
from lerobot_pipeline.core.video import VideoProbe, probe_video


def read_probe(ctx: Context, where: str, rel: str, decode: bool) -> VideoProbe | None:
    """Probe ``rel`` (packets, or every decoded frame); a file PyAV cannot read is a Problem."""
    try:
        probe = probe_video(ctx.root / rel, decode=decode)
    except Exception as e:  # noqa: BLE001 - PyAV raises many error types for damaged files
        ctx.problems.error(where, f"{rel} cannot be read with PyAV: {type(e).__name__}: {one_line(e, 200)}")
        return None
    ctx.videos_checked += 1
    return probe


def check_videos(ctx: Context, episodes: list[int], *, decode: bool) -> None:
    """v2.1: one mp4 per episode and video key, frame k at k/fps."""
    if ctx.video_path is None:
        return
    for key in ctx.video_keys:
        first_probe: VideoProbe | None = None
        for ep in episodes:
            rel = ctx.video_rel(ep, key)
            assert rel is not None  # video_path is set
            if not (ctx.root / rel).is_file():
                continue  # reported by check_files
            if ctx.trusted(ep):
                continue  # checked when it was written, linked unchanged
            where = f"episode {ep} / {key}"
            probe = read_probe(ctx, where, rel, decode)
            if probe is None:
                continue
            with ctx.stage(where):
                rate_ok = check_video_header(ctx, where, rel, ctx.features[key], probe)
                check_frame_times(ctx, where, rel, list(probe.times), probe.missing_pts, 0.0, ctx.rows.get(ep), rate_ok)
            if first_probe is None and ep == 0:
                first_probe = probe
        if first_probe is not None:
            compare_video_info_block(ctx, key, first_probe)


def check_video_header(ctx: Context, where: str, rel: str, feature: Feature, probe: VideoProbe) -> bool:
    """Streams, size, pix_fmt, frame rate vs info.json; returns whether the average rate is right."""
    p = ctx.problems
    if probe.video_streams > 1:
        p.warn(where, f"{rel} has {probe.video_streams} video streams; lerobot reads the first")
    height, width = feature.shape[0], feature.shape[1]
    if (probe.width, probe.height) != (width, height):
        p.error(where, f"{rel} is {probe.width}x{probe.height} but info.json shape says {width}x{height}")
    if probe.wrong_size_frames:
        p.error(where, f"{rel}: {probe.wrong_size_frames} decoded frames differ from the stream size")
    if probe.pix_fmt != "yuv420p":
        p.warn(where, f"{rel} has pix_fmt {probe.pix_fmt} (lerobot writes yuv420p)")
    if probe.missing_pts:
        p.error(where, f"{rel}: {probe.missing_pts} frames without a pts")
    fps = ctx.fps
    if not probe.fps:
        p.error(where, f"{rel} has no average frame rate (lerobot converts timestamps to frame indices with it)")
    elif fps is not None and abs(probe.fps - fps) > RATE_TOLERANCE:
        p.error(where, f"{rel} average frame rate {probe.fps:.4f} != fps {fps} (lerobot converts "
                       "timestamps to frame indices with it)")
    else:
        return True
    return False


def check_frame_times(
    ctx: Context, where: str, rel: str, times: list[float], missing: int, start_s: float, rows: int | None,
    rate_ok: bool,
) -> None:
    """One episode's frames (sorted times in seconds) must be ``rows`` frames at ``start_s + k/fps``."""
    p = ctx.problems
    n = len(times) + missing
    at = f" from {start_s:.6f} s" if start_s else ""
    if rows is not None:
        if n < rows:
            p.error(where, f"{rel} has {n} frames{at} but the episode has {rows} rows "
                           "(lerobot fails at the first missing frame)")
        elif n > rows:
            p.warn(where, f"{rel} has {n} frames{at} but the episode has {rows} rows (extra frames are ignored)")
    fps = ctx.fps
    if not times or fps is None:
        return
    first = times[0] - start_s
    if abs(first) > VIDEO_PTS_TOLERANCE_S:
        p.error(where, f"{rel}: first frame at pts {times[0]:.6f} s, must be {start_s:.6f} (lerobot looks frame k "
                       f"up at {'from_timestamp + ' if start_s else ''}k/fps)")
        return
    rel_times = np.asarray(times) - start_s
    dev = np.abs(rel_times - np.arange(len(rel_times)) / fps)
    if dev.max() > VIDEO_PTS_TOLERANCE_S:
        if not rate_ok:
            return  # the wrong average rate reported above already explains the shifted frames
        i = first_true(dev > VIDEO_PTS_TOLERANCE_S)
        p.error(where, f"{rel}: {int((dev > VIDEO_PTS_TOLERANCE_S).sum())} frames are not at k/fps (first: frame {i} "
                       f"at {times[i]:.6f} s instead of {start_s + i / fps:.6f} s); dropped or re-timed frames?")
    elif dev.max() >= TIMESTAMP_TOLERANCE_S:
        p.warn(where, f"{rel}: frame times deviate from k/fps by up to {dev.max() * 1e3:.3f} ms; lerobot's default "
                      f"tolerance_s is {TIMESTAMP_TOLERANCE_S} s")


def compare_video_info_block(ctx: Context, key: str, probe: VideoProbe) -> None:
    """info.json's video 'info' block describes episode 0's file; the loader never reads it (warnings only)."""
    block = ctx.info.get("features", {}).get(key, {}).get("info") if ctx.info else None
    if not isinstance(block, dict):
        return
    actual = {"video.height": probe.height, "video.width": probe.width, "video.codec": probe.codec,
              "video.pix_fmt": probe.pix_fmt, "video.fps": round(probe.fps, 3) if probe.fps else None}
    for field_name, value in actual.items():
        if field_name in block and value is not None and block[field_name] != value:
            ctx.problems.warn(f"{INFO_PATH}: features.{key}.info",
                              f"{field_name} is {block[field_name]!r} but episode 0's video has {value!r}")
