"""Stage 2b of the episode store: one mp4 per part and camera, the chosen JPEGs streamed into the encoder.

Per frame: read the file, decode to BGR (OpenCV/libjpeg-turbo), convert to the encoder's planar I420 and
encode (PyAV); every stats-sampled frame also feeds :class:`ImageStatsAccumulator`. Nothing holds more
than one decoded frame per camera. Cameras (and, in ``convert --jobs``, episodes) run in parallel worker
processes: the per-frame work is C code, but numpy/PyAV glue still holds the GIL, so threads do not scale.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import cv2
import numpy as np
import psutil  # type: ignore[import-untyped]  # no stubs installed

from lerobot_pipeline.config import PipelineConfig, VideoConfig
from lerobot_pipeline.core import features as F
from lerobot_pipeline.core.forkserver import forkserver_context, usable_cpus
from lerobot_pipeline.core.fsutil import atomic_path, durable_writes, write_json_atomic
from lerobot_pipeline.core.raw import CameraFrames
from lerobot_pipeline.core.stats import ImageStatsAccumulator
from lerobot_pipeline.core.video import VideoEncoder
from lerobot_pipeline.errors import RawDataError, UndecodableImage, WorkerCrashed

if TYPE_CHECKING:  # annotations only: the workers (forkserver preload) need not import the writer
    from lerobot_pipeline.core.episode_writer import PartData

_P = ParamSpec("_P")
_T = TypeVar("_T")

cv2.setNumThreads(1)  # parallelism comes from one process per camera; OpenCV's pool would oversubscribe


def read_bgr(path: Path, episode: str, camera: str) -> np.ndarray:
    """BGR uint8 image; :class:`UndecodableImage` naming the file if it cannot be decoded."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise UndecodableImage(episode, camera, str(path), e.strerror or "unreadable") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise UndecodableImage(episode, camera, str(path), "empty file" if not data.size else "not a decodable JPEG")
    return bgr


def decode_jpeg(path: Path, episode: str, camera: str = "") -> np.ndarray:
    """RGB uint8 image (thumbnails, tests)."""
    return cv2.cvtColor(read_bgr(path, episode, camera), cv2.COLOR_BGR2RGB)


def frame_size(frames: CameraFrames, episode: str) -> tuple[int, int]:
    """(height, width) of a camera, from its first usable frame (bad frames are never written)."""
    return read_bgr(frames.path(int(frames.good_index()[0])), episode, frames.name).shape[:2]


@dataclass(frozen=True)
class CameraJob:
    """One mp4 to write: which JPEG each row shows (-1 = black), with what settings. Picklable."""

    out: Path
    camera: str
    frames: CameraFrames | None
    index: np.ndarray
    size: tuple[int, int]  # (height, width)
    video: VideoConfig
    fps: int
    episode: str
    durable: bool = True  # fsync the mp4 (False for the CLI's throw-away staging store)


def encode_camera(job: CameraJob) -> tuple[dict[str, Any], int]:
    """Stream the chosen JPEGs into ``job.out``; returns (image stats, frames written)."""
    h, w = job.size
    acc = ImageStatsAccumulator(len(job.index))
    black = np.zeros((h, w, 3), dtype=np.uint8)
    with atomic_path(job.out, fsync=job.durable) as tmp:
        enc = VideoEncoder(tmp, job.fps, w, h, job.video)
        try:
            last_i, img = None, black
            for k, i in enumerate(job.index.tolist()):
                if i != last_i:
                    if i < 0:
                        img = black
                    else:
                        assert job.frames is not None  # an index >= 0 names a frame of this camera
                        path = job.frames.path(i)
                        img = read_bgr(path, job.episode, job.camera)
                        if img.shape[:2] != (h, w):
                            raise RawDataError(
                                job.episode, f"image is {img.shape[1]}x{img.shape[0]}, camera's first frame is "
                                f"{w}x{h}", file=str(path), field=job.camera,
                            )
                    last_i = i
                acc.add_bgr(k, img)
                enc.add_bgr(img)
            written = enc.close()
        except BaseException:
            enc.abort()
            raise
    return acc.result(), written


def camera_jobs(version_dir: Path, config: PipelineConfig, parts: Sequence[PartData],
                cameras: dict[str, CameraFrames]) -> list[list[CameraJob]]:
    """The jobs of every part, one per camera (a camera missing from the recording shows black)."""
    from lerobot_pipeline.core.episode_writer import part_dir

    if not parts:
        return []
    episode = parts[0].report.episode_key
    base_size = frame_size(cameras[config.base_camera.name], episode)
    sizes = {c.name: frame_size(cameras[c.name], episode) if c.name in cameras else base_size for c in config.cameras}
    return [
        [CameraJob(part_dir(version_dir, k) / "videos" / f"{cam}.mp4", cam, cameras.get(cam), idx, sizes[cam],
                   config.video, config.fps, episode, durable_writes())
         for cam, idx in data.camera_frames.items()]
        for k, data in enumerate(parts)
    ]


class PendingVideos:
    """Videos of one episode submitted to a pool; :meth:`wait` checks them and writes the image stats."""

    def __init__(self, plan: list[list[CameraJob]], parts: Sequence[PartData], pool: Executor) -> None:
        self._parts = parts
        self._futures = [[(job, pool.submit(encode_camera, job)) for job in part_jobs] for part_jobs in plan]

    def wait(self) -> list[Path]:
        out = []
        try:
            for part_jobs, data in zip(self._futures, self._parts):
                n = len(data.capture_t_ns)
                image_stats = {}
                for job, fut in part_jobs:
                    try:
                        stats, written = fut.result()
                    except BrokenExecutor as e:
                        raise WorkerCrashed(f"episode '{job.episode}': the video worker encoding {job.camera} died "
                                            f"({e}); the next attempt starts new workers") from None
                    if written != n:  # cannot happen unless the encoder drops frames; never let it pass silently
                        raise RawDataError(job.episode, f"encoder wrote {written} frames for {n} rows",
                                           field=job.camera)
                    image_stats[F.video_key(job.camera)] = stats
                    out.append(job.out)
                write_json_atomic(part_jobs[0][0].out.parent.parent / "image_stats.json", image_stats, indent=None)
        except BaseException:
            self.cancel()
            raise
        return out

    def cancel(self) -> None:
        """Cancel the jobs not yet started and wait for the ones running: afterwards nothing writes into the
        version directory, so the caller may remove it (a running encoder would otherwise re-create it)."""
        futures = [fut for part_jobs in self._futures for _, fut in part_jobs]
        for fut in futures:
            fut.cancel()
        wait_futures(futures)


def submit_videos(version_dir: Path, config: PipelineConfig, parts: Sequence[PartData],
                  cameras: dict[str, CameraFrames], pool: Executor) -> PendingVideos:
    return PendingVideos(camera_jobs(version_dir, config, parts, cameras), parts, pool)


def write_videos(
    version_dir: Path, config: PipelineConfig, parts: Sequence[PartData], cameras: dict[str, CameraFrames],
    jobs: int | None = None, pool: Executor | None = None,
) -> list[Path]:
    """Encode one mp4 per part and camera on ``pool`` (default: ``jobs`` worker processes, one per camera
    up to the core count); image stats beside them."""
    return submit_videos(version_dir, config, parts, cameras, pool or pool_for(jobs or default_jobs(config))).wait()


def pool_for(jobs: int) -> Executor:
    """The shared process pool of ``jobs`` workers; one job runs in this process (no pool to start).

    A daemonic process (a Celery prefork worker, a multiprocessing pool worker) may not start children:
    there the videos encode inline and parallelism comes from the worker pool itself.
    """
    if jobs <= 1 or mp.current_process().daemon:
        return _inline
    return shared_video_pool(jobs)


class _InlineExecutor(Executor):
    """Runs each job in the calling thread (``jobs=1``): no process to start, same code path."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        fut: Future[_T] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - delivered through the future, like a pool would
            fut.set_exception(e)
        return fut


_inline = _InlineExecutor()


def default_jobs(config: PipelineConfig) -> int:
    return max(1, min(len(config.cameras), usable_cpus()))


def _end_with_owner(owner_pid: int, owner_started: float) -> None:
    """Pool worker initializer: exit once the process that owns the pool is gone. A worker whose owner was
    SIGKILLed (a run worker killed mid-step) would otherwise wait on its task queue for ever: it holds that
    queue's write end itself, so it never sees end-of-file, and it keeps the forkserver alive with it (the
    forkserver lives while any process holds its liveness pipe, and its workers do)."""
    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                owner = psutil.Process(owner_pid)  # a zombie is dead: killed, not yet reaped
                alive = owner.create_time() == owner_started and owner.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                alive = False
            if not alive:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="end-with-owner").start()


def video_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for :func:`encode_camera` (forkserver: safe to start from a threaded process such as a
    Dagster step; the server preloads this module, so each worker starts without re-importing PyAV/OpenCV).
    Workers end with their owner (:func:`_end_with_owner`)."""
    me = os.getpid()
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=forkserver_context(),
                               initializer=_end_with_owner, initargs=(me, psutil.Process(me).create_time()))


def prestart_video_pool(jobs: int) -> Executor:
    """``pool_for(jobs)``, its worker processes started in the background: the first submit to a new pool
    blocks until the forkserver has imported this module, which would otherwise hold up the first episode's
    read and alignment instead of overlapping them."""
    pool = pool_for(jobs)
    if isinstance(pool, ProcessPoolExecutor):
        def start() -> None:
            try:
                for fut in [pool.submit(os.getpid) for _ in range(jobs)]:
                    fut.result()
            except BaseException:  # noqa: BLE001 - a pool that cannot start fails the real submit, loudly
                pass
        threading.Thread(target=start, daemon=True, name="video-pool-start").start()
    return pool


_shared: dict[int, ProcessPoolExecutor] = {}


def shared_video_pool(workers: int) -> Executor:
    """One process pool per size for the life of this process (CLI, Dagster run worker, test session): an
    episode's videos start encoding at once instead of waiting for workers to start. A pool broken by a
    killed worker is replaced."""
    pool = _shared.get(workers)
    if pool is None or getattr(pool, "_broken", False):
        pool = _shared[workers] = video_pool(workers)
    return pool


@atexit.register
def _shutdown_shared() -> None:
    for pool in _shared.values():
        pool.shutdown(wait=False, cancel_futures=True)
