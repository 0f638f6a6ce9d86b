"""Per-source view of streaming conversion: Redis (what was published) joined with the Dagster
instance's run records (what really happened to each conversion)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from lerobot_pipeline.defs.jobs import convert_episode_job, step_failure_text
from lerobot_pipeline.defs.partitions import EPISODE_DIM, STRATEGY_DIM, multi_key
from lerobot_pipeline.defs.stream_sensor import EPISODE_TAG, SOURCE_TAG
from lerobot_pipeline.ids import episode_key
from lerobot_pipeline.streaming.stream import EpisodeStream

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNING = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}
PENDING = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED}
FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
RETRY_TAG = "lerobot_pipeline/retry_of"


@dataclass
class Conversion:
    source: str
    episode_id: str
    strategy: str
    state: str  # pending | running | completed | failed | cleared
    run_id: str | None = None
    error: str | None = None
    updated_at: float = 0.0
    attempts: int = 0


@dataclass
class SourceView:
    source: str
    published: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("pending", "running", "completed", "failed"), 0))
    last_update: float = 0.0
    conversions: list[Conversion] = field(default_factory=list)


def acked_key(stream: EpisodeStream) -> str:
    return stream.settings.key("acked_failed_runs")


def run_error(instance: dg.DagsterInstance, run_id: str) -> str:
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        text = step_failure_text(event.dagster_event)
        if text:
            return text
    return "run failed (see the run's logs in the UI)"


def collect(stream: EpisodeStream, instance: dg.DagsterInstance) -> list[SourceView]:
    acked = stream.client.smembers(acked_key(stream))
    views = []
    for source in sorted(stream.sources()):
        view = SourceView(source, published=stream.published_count(source))
        records = instance.get_run_records(dg.RunsFilter(job_name=convert_episode_job.name, tags={SOURCE_TAG: source}))
        latest: dict[tuple[str, str], dg.RunRecord] = {}
        attempts: dict[tuple[str, str], int] = {}
        for rec in sorted(records, key=lambda r: r.create_timestamp):
            tags = rec.dagster_run.tags
            k = (tags.get(EPISODE_TAG), tags.get("alignment_strategy"))
            latest[k] = rec
            attempts[k] = attempts.get(k, 0) + 1
        for fld, status in stream.get_status(source).items():
            ep, strategy = fld.split("|", 1)
            k = (episode_key(source, ep), strategy)
            rec = latest.get(k)
            conv = Conversion(source, ep, strategy, "pending", updated_at=status.updated_at or 0.0)
            if rec is not None:
                run = rec.dagster_run
                conv.run_id = run.run_id
                conv.updated_at = max(conv.updated_at, rec.update_timestamp.timestamp())
                conv.attempts = attempts[k]
                if run.status == dg.DagsterRunStatus.SUCCESS:
                    conv.state = "completed"
                elif run.status in RUNNING:
                    conv.state = "running"
                elif run.status in FAILED:
                    conv.state = "cleared" if run.run_id in acked else "failed"
                    conv.error = run_error(instance, run.run_id)
            if conv.state in view.counts:
                view.counts[conv.state] += 1
            view.last_update = max(view.last_update, conv.updated_at)
            view.conversions.append(conv)
        views.append(view)
    return views


def format_views(views: list[SourceView], dead_letters, verbose: bool = False) -> str:
    lines = [f"{'source':<14}{'published':>10}{'pending':>9}{'running':>9}{'completed':>11}{'failed':>8}  last update"]
    for v in views:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.last_update)) if v.last_update else "-"
        c = v.counts
        lines.append(f"{v.source:<14}{v.published:>10}{c['pending']:>9}{c['running']:>9}{c['completed']:>11}{c['failed']:>8}  {when}")
        if verbose:
            for conv in v.conversions:
                if conv.state in ("failed", "cleared"):
                    lines.append(f"    {conv.state.upper()} {conv.episode_id} [{conv.strategy}] run {conv.run_id}: {conv.error}")
    if not views:
        lines.append("(nothing published yet)")
    if dead_letters:
        lines.append(f"rejected messages (dead letters): {len(dead_letters)}")
        if verbose:
            for d in dead_letters[:20]:
                lines.append(f"    {d.stream_id}: {d.reason}")
    return "\n".join(lines)


def retry_failed(stream: EpisodeStream, instance: dg.DagsterInstance, views: list[SourceView]) -> list[str]:
    """Re-launch every failed (not cleared) conversion through the run queue; returns new run ids' keys."""
    launched = []
    for v in views:
        for conv in v.conversions:
            if conv.state != "failed":
                continue
            key = episode_key(conv.source, conv.episode_id)
            mk = multi_key(key, conv.strategy)
            tags = {"dagster/partition": str(mk), f"dagster/partition/{EPISODE_DIM}": key,
                    f"dagster/partition/{STRATEGY_DIM}": conv.strategy, SOURCE_TAG: conv.source, EPISODE_TAG: key,
                    "alignment_strategy": conv.strategy, RETRY_TAG: conv.run_id or ""}
            cmd = [str(Path(sys.executable).with_name("dagster")), "job", "launch", "-w", str(REPO_ROOT / "workspace.yaml"),
                   "-l", "lerobot_pipeline", "-j", convert_episode_job.name, "--tags", json.dumps(tags)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=os.environ.copy())
            if proc.returncode != 0:
                raise RuntimeError(f"could not relaunch {key} [{conv.strategy}]: {proc.stderr.strip()[-300:]}")
            stream.client.sadd(acked_key(stream), conv.run_id)
            launched.append(f"{key}|{conv.strategy}")
    return launched


def clear_failed(stream: EpisodeStream, views: list[SourceView]) -> int:
    ids = [c.run_id for v in views for c in v.conversions if c.state == "failed" and c.run_id]
    if ids:
        stream.client.sadd(acked_key(stream), *ids)
    return len(ids)
