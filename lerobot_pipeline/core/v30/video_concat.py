"""Concatenate encoded mp4 files by remuxing packets (PyAV): no decoding, no re-encoding.

Every segment's packets are copied with their pts/dts shifted by the frames written before it, so
frame ``k`` of segment ``s`` lands at ``(frames before s + k) / fps`` exactly. Each segment must start
on a keyframe (our encoder starts every episode with one), so an episode inside a concatenated file
still decodes from its own first packet: random access stays as cheap as in the per-episode file.
A segment can also be a leading window of an already concatenated file (the episodes kept when a
later one is replaced): episode boundaries are keyframes, so cutting there is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.stream import VideoStream

from lerobot_pipeline.errors import DatasetError


@dataclass(frozen=True)
class Segment:
    path: Path
    frames: int | None = None  # the first ``frames`` frames of the file; None = all
    label: str = ""  # names the episode in errors


def _ticks_per_frame(stream: VideoStream, fps: int, where: str) -> int:
    if stream.time_base is None:
        raise DatasetError(f"{where}: the video stream has no time base")
    tpf = Fraction(1, fps) / stream.time_base
    if tpf.denominator != 1:
        raise DatasetError(f"{where}: time base {stream.time_base} cannot place frames at k/{fps} exactly")
    return int(tpf)


def _signature(stream: VideoStream) -> tuple[object, ...]:
    cc = stream.codec_context
    return cc.name, cc.width, cc.height, cc.pix_fmt, stream.time_base


def concat_videos(segments: list[Segment], out: Path, fps: int) -> list[int]:
    """Write ``out`` from ``segments`` in order; returns the frames taken from each segment."""
    if not segments:
        raise DatasetError(f"{out}: nothing to concatenate")
    out.parent.mkdir(parents=True, exist_ok=True)
    first = av.open(str(segments[0].path))
    try:
        template = first.streams.video[0]
        signature = _signature(template)
        with av.open(str(out), mode="w", format="mp4", options={"movflags": "faststart"}) as dst:
            ostream = dst.add_stream_from_template(template=template, opaque=True)
            ostream.time_base = template.time_base
            tpf = _ticks_per_frame(template, fps, str(segments[0].path))
            written, counts, last_dts = 0, [], None
            for seg in segments:
                where = f"{seg.label or seg.path}"
                with av.open(str(seg.path)) as src:
                    stream = src.streams.video[0]
                    if _signature(stream) != signature:
                        raise DatasetError(
                            f"{where}: video {seg.path} is {_signature(stream)[:4]} but the file it joins is "
                            f"{signature[:4]} (codec, width, height, pix_fmt); "
                            "one dataset needs one encoding per camera")
                    offset = written * tpf
                    n = 0
                    for packet in src.demux(stream):
                        if packet.dts is None or packet.size == 0:
                            continue
                        if seg.frames is not None and packet.pts is not None and packet.pts >= seg.frames * tpf:
                            continue  # past the kept window (episode boundaries are keyframes)
                        if n == 0 and not packet.is_keyframe:
                            raise DatasetError(f"{where}: {seg.path} does not start with a keyframe; "
                                               "it cannot be joined without re-encoding")
                        packet.pts += offset
                        packet.dts += offset
                        if last_dts is not None and packet.dts <= last_dts:
                            raise DatasetError(f"{where}: packet decode times would not increase across the join "
                                               f"({packet.dts} after {last_dts}); "
                                               "reordered frames at an episode start?")
                        last_dts = packet.dts
                        packet.stream = ostream
                        dst.mux(packet)
                        n += 1
                    if seg.frames is not None and n != seg.frames:
                        raise DatasetError(f"{where}: {seg.path} has {n} frames in its window, expected {seg.frames}")
                counts.append(n)
                written += n
    finally:
        first.close()
    return counts
