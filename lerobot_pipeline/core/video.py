"""Video encoding and read-back with PyAV: frames stream in one at a time, pts = k at time base 1/fps.

Any encoder PyAV offers can be used (libx264/``h264``, ``libsvtav1``, ``hevc``/libx265, ``mpeg4``, ...);
``codec``, ``crf``, ``gop``, ``preset`` and ``pix_fmt`` come from config. The default (h264, GOP 2, no
B-frames) gives frame-accurate random access for training, as LeRobot's own AV1 GOP-2 default does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from lerobot_pipeline.config import VideoConfig
from lerobot_pipeline.errors import ConfigError

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner on every file otherwise (1 = errors)

CODEC_ALIASES = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}


def encoder_name(codec: str) -> str:
    name = CODEC_ALIASES.get(codec, codec)
    if name not in av.codecs_available:
        raise ConfigError("video.codec", f"encoder {codec!r} is not available in this PyAV build")
    return name


def encoder_options(cfg: VideoConfig) -> dict[str, str]:
    name = encoder_name(cfg.codec)
    opts: dict[str, str] = {"g": str(cfg.gop)}
    if name in ("libx264", "libx265", "libsvtav1", "libaom-av1"):
        opts["crf"] = str(cfg.crf)
    if cfg.preset is not None:
        if name == "libsvtav1" and not str(cfg.preset).isdigit():
            opts["preset"] = "8"  # SVT-AV1 presets are numbers (LeRobot's encoder default is 8)
        elif name in ("libx264", "libx265", "libsvtav1"):
            opts["preset"] = str(cfg.preset)
    if name == "libx265":
        opts["x265-params"] = "log-level=error"
    if name in ("libx264", "libx265"):
        opts["bf"] = "0"  # no B-frames: every frame decodes from the preceding keyframe
    if name == "mpeg4":  # no CRF: fix the quantiser instead (its 'qscale' option and property are ignored)
        q = str(max(1, min(31, cfg.crf // 2)))
        opts["qmin"], opts["qmax"] = q, q
    opts.update(cfg.extra_options)
    return opts


class VideoEncoder:
    """Encode RGB frames into an mp4 at ``path`` (written to a temporary name by the caller)."""

    def __init__(self, path: Path, fps: int, width: int, height: int, cfg: VideoConfig):
        self.fps = fps
        self._container = av.open(str(path), mode="w", format="mp4")
        try:
            stream = self._container.add_stream(encoder_name(cfg.codec), rate=fps, options=encoder_options(cfg))
            stream.width, stream.height = width, height
            stream.pix_fmt = cfg.pix_fmt
        except Exception:
            self._container.close()
            raise
        self._stream = stream
        self._time_base = Fraction(1, fps)
        self._k = 0

    def add(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self._k
        frame.time_base = self._time_base
        self._k += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> int:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._k

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - best effort on an already failing path
            pass


@dataclass(frozen=True)
class VideoProbe:
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int  # counted by demuxing packets
    first_pts_s: float | None
    has_audio: bool

    def info_block(self, fps: int) -> dict:
        """The ``info`` entry LeRobot stores for a video feature."""
        return {
            "video.height": self.height, "video.width": self.width, "video.codec": self.codec,
            "video.pix_fmt": self.pix_fmt, "video.is_depth_map": False, "video.fps": fps,
            "video.channels": 3, "has_audio": self.has_audio,
        }


def probe_video(path: str | Path) -> VideoProbe:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, first = 0, None
        for packet in c.demux(s):
            if packet.size == 0:
                continue
            frames += 1
            if packet.pts is not None:
                t = float(packet.pts * packet.time_base)
                first = t if first is None else min(first, t)
        return VideoProbe(
            codec=s.codec_context.codec.canonical_name, pix_fmt=s.codec_context.pix_fmt or s.format.name,
            width=s.codec_context.width, height=s.codec_context.height,
            fps=float(s.average_rate) if s.average_rate else 0.0, frames=frames, first_pts_s=first,
            has_audio=len(c.streams.audio) > 0,
        )


def decode_frames(path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_s, rgb)`` for every frame in presentation order."""
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            yield float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24")
