"""Video encoding and read-back with PyAV: frames stream in one at a time, pts = k at time base 1/fps.

Any encoder PyAV offers can be used (libx264/``h264``, ``libsvtav1``, ``hevc``/libx265, ``mpeg4``, ...);
``codec``, ``crf``, ``gop``, ``preset`` and ``pix_fmt`` come from config. The default (h264, GOP 2, no
B-frames) gives frame-accurate random access for training, as LeRobot's own AV1 GOP-2 default does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import cv2
import numpy as np
import numpy.typing as npt
from av.video.stream import VideoStream

from lerobot_pipeline.config import VideoConfig
from lerobot_pipeline.errors import ConfigError

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner on every file otherwise (1 = errors)

_Uint8Array = npt.NDArray[np.uint8]  # what cv2.cvtColor returns for a uint8 image
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
        # one encoder thread: cameras and episodes already run in parallel processes (one per core)
        opts["threads"] = "1"
    if name == "libx264":
        # no macroblock-tree rate control: with it, re-encoding the same frames gave a different file about
        # once in 1,000 (5 in 1,500 through swscale), which broke re-runs' identical output; 0 in 5,000
        # without it. Costs ~7 % more bytes at +0.25 dB PSNR at GOP 2 (224x224 real recordings)
        opts["x264-params"] = "mbtree=0"
    if name == "mpeg4":  # no CRF: fix the quantiser instead (its 'qscale' option and property are ignored)
        q = str(max(1, min(31, cfg.crf // 2)))
        opts["qmin"], opts["qmax"] = q, q
    opts.update(cfg.extra_options)
    return opts


class VideoEncoder:
    """Encode frames into an mp4 at ``path`` (written to a temporary name by the caller).

    :meth:`add_bgr` is the fast path for decoded JPEGs: with ``pix_fmt`` yuv420p and even sizes, OpenCV
    converts BGR straight to planar I420 (BT.601, limited range: what swscale produces from RGB, luma within
    one level), so the encoder gets its own pixel format and swscale never runs. :meth:`add` takes RGB.
    """

    def __init__(self, path: Path, fps: int, width: int, height: int, cfg: VideoConfig):
        self.fps = fps
        self._i420 = cfg.pix_fmt == "yuv420p" and width % 2 == 0 and height % 2 == 0
        self._container = av.open(str(path), mode="w", format="mp4")
        try:
            stream = cast(VideoStream, self._container.add_stream(encoder_name(cfg.codec), rate=fps,
                                                                   options=encoder_options(cfg)))
            stream.width, stream.height = width, height
            stream.pix_fmt = cfg.pix_fmt
        except Exception:
            self._container.close()
            raise
        self._stream = stream
        self._time_base = Fraction(1, fps)
        self._k = 0

    def add(self, rgb: np.ndarray) -> None:
        self._encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"))

    def add_bgr(self, bgr: np.ndarray) -> None:
        if self._i420:
            i420 = cast(_Uint8Array, cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))
            self._encode(av.VideoFrame.from_ndarray(i420, format="yuv420p"))
        else:
            rgb = cast(_Uint8Array, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            self._encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"))

    def _encode(self, frame: av.VideoFrame) -> None:
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
    fps: float  # the stream's average rate; 0.0 if it has none
    frames: int  # counted by demuxing packets (or decoding, with decode=True)
    first_pts_s: float | None
    has_audio: bool
    times: tuple[float, ...] = ()  # presentation times in seconds, sorted
    missing_pts: int = 0  # packets/frames without a pts
    wrong_size_frames: int = 0  # decoded frames whose size differs from the stream's (decode=True only)
    video_streams: int = 1

    def info_block(self, fps: int) -> dict[str, Any]:
        """The ``info`` entry LeRobot stores for a video feature."""
        return {
            "video.height": self.height, "video.width": self.width, "video.codec": self.codec,
            "video.pix_fmt": self.pix_fmt, "video.is_depth_map": False, "video.fps": fps,
            "video.channels": 3, "has_audio": self.has_audio,
        }


def probe_video(path: str | Path, *, decode: bool = False) -> VideoProbe:
    """Header fields and every frame's time, by demuxing packets (fast) or decoding every frame."""
    with av.open(str(path)) as c:
        if not c.streams.video:
            raise ValueError("the file has no video stream")
        s = c.streams.video[0]
        cc = s.codec_context
        times: list[float] = []
        missing = wrong_size = 0
        if decode:
            for frame in c.decode(s):
                if frame.pts is None or frame.time_base is None:
                    missing += 1
                    continue
                times.append(float(frame.pts * frame.time_base))
                wrong_size += (frame.width, frame.height) != (cc.width, cc.height)
        else:
            tb = float(s.time_base)
            for packet in c.demux(s):
                if packet.size == 0:
                    continue  # the flush packet
                if packet.pts is None:
                    missing += 1
                else:
                    times.append(packet.pts * tb)
        times.sort()
        return VideoProbe(
            codec=cc.codec.canonical_name if cc.codec else cc.name, pix_fmt=cc.pix_fmt or s.format.name,
            width=cc.width, height=cc.height, fps=float(s.average_rate) if s.average_rate else 0.0,
            frames=len(times) + missing, first_pts_s=times[0] if times else None,
            has_audio=len(c.streams.audio) > 0, times=tuple(times), missing_pts=missing,
            wrong_size_frames=wrong_size, video_streams=len(c.streams.video),
        )


def decode_frames(path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_s, rgb)`` for every frame in presentation order."""
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            yield float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24")
