"""Encoder options reach the encoder: quality (crf) and GOP change the files PyAV writes."""

from __future__ import annotations

import av
import numpy as np
import pytest

from lerobot_pipeline.config import VideoConfig
from lerobot_pipeline.core.video import VideoEncoder, probe_video

# detailed frames (quality shows in the size) and smoothly moving ones (no scene cuts to force keyframes)
FRAMES = [np.random.default_rng(i).integers(0, 256, (96, 128, 3), dtype=np.uint8) // 8 * 8 for i in range(12)]

def _smooth(k: int) -> np.ndarray:
    img = np.broadcast_to(np.arange(128, dtype=np.uint8)[None, :, None], (96, 128, 3)).copy()
    img[40:52, 10 + 2 * k:22 + 2 * k] = 255  # a small square moving 2 px per frame
    return img


SMOOTH = [_smooth(k) for k in range(12)]


def _encode(path, cfg: VideoConfig, frames=FRAMES) -> int:
    enc = VideoEncoder(path, 25, 128, 96, cfg)
    for img in frames:
        enc.add(img)
    assert enc.close() == len(frames)
    return path.stat().st_size


@pytest.mark.parametrize("codec", ["h264", "hevc", "mpeg4"])
def test_crf_controls_quality(tmp_path, codec):
    fine = _encode(tmp_path / "fine.mp4", VideoConfig(codec=codec, crf=4))
    coarse = _encode(tmp_path / "coarse.mp4", VideoConfig(codec=codec, crf=50))
    assert fine > 1.5 * coarse, (codec, fine, coarse)
    assert probe_video(tmp_path / "coarse.mp4").frames == len(FRAMES)


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_gop_sets_the_keyframe_interval(tmp_path, codec):
    path = tmp_path / "v.mp4"
    _encode(path, VideoConfig(codec=codec, gop=3), SMOOTH)
    with av.open(str(path)) as c:
        keys = [p.is_keyframe for p in c.demux(video=0) if p.size]
    assert keys == [k % 3 == 0 for k in range(len(FRAMES))]


def _pool_kind_in_daemonic_child(queue) -> None:
    from lerobot_pipeline.core.camera_videos import _inline, pool_for

    queue.put(pool_for(4) is _inline)


def test_a_daemonic_process_encodes_inline():
    """Celery's prefork workers are daemonic and may not start processes: the video pool falls back to inline."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_pool_kind_in_daemonic_child, args=(queue,), daemon=True)
    child.start()
    assert queue.get(timeout=60) is True
    child.join(timeout=30)


OWNER = """
import time
def main():
    from lerobot_pipeline.core.camera_videos import video_pool
    pool = video_pool(2)
    for f in [pool.submit(time.sleep, 0.2) for _ in range(4)]:
        f.result()
    print(" ".join(map(str, sorted(pool._processes))), flush=True)  # both workers are up
    time.sleep(600)
if __name__ == "__main__":
    main()
"""


def test_video_workers_end_when_their_owner_is_sigkilled(tmp_path):
    """A run worker SIGKILLed mid-step must not leave its encoder processes behind: each holds its own task
    queue's write end, so without the parent-death signal it would wait on that queue for ever."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert pids and all(psutil.pid_exists(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            time.sleep(0.1)
        assert not [p for p in pids if _running(p)], "encoder processes outlived their SIGKILLed owner"
    finally:
        owner.kill()


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
