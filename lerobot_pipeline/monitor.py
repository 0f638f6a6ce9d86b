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
from lerobot_pipeline.shipped import workspace_file
from lerobot_pipeline.streaming.stream import EpisodeStream

RUNNING = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}
PENDING = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED}
FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
RETRY_TAG = "lerobot_pipeline/retry_of"
STALL_ENV = "LEROBOT_PIPELINE_STALL_SECONDS"
DEFAULT_STALL_SECONDS = 300.0


def stall_seconds() -> float:
    """Threshold past which a running conversion without progress is flagged: env, else 300 s."""
    return float(os.environ.get(STALL_ENV) or DEFAULT_STALL_SECONDS)


@dataclass
class Conversion:
    source: str
    episode_id: str
    strategy: str
    state: str  # pending | running | stalled | completed | failed | cleared
    run_id: str | None = None
    error: str | None = None
    updated_at: float = 0.0
    attempts: int = 0


@dataclass
class SourceView:
    source: str
    published: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("pending", "running", "stalled", "completed", "failed"), 0))
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


def waiting_for_slots(instance: dg.DagsterInstance) -> dict[str, tuple[str, float]]:
    """run id -> (pool, since when) for steps queued on a pool slot and not yet given one."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    out: dict[str, tuple[str, float]] = {}
    for pool in sorted(storage.get_concurrency_keys()):
        for step in storage.get_concurrency_info(pool).pending_steps:
            if step.assigned_timestamp is None:
                since = step.enqueued_timestamp.timestamp()
                out[step.run_id] = min(out.get(step.run_id, (pool, since)), (pool, since), key=lambda x: x[1])
    return out


def run_health(instance: dg.DagsterInstance, run_id: str, now: float, threshold: float,
               waiting: dict[str, tuple[str, float]] | None = None) -> str | None:
    """Why an in-flight run is not healthy, or None: waiting on a pool slot, or no new event, for longer
    than ``threshold`` seconds. A slot held by a dead run (issue 8) shows up as the first."""
    waiting = waiting_for_slots(instance) if waiting is None else waiting
    if run_id in waiting and now - waiting[run_id][1] > threshold:
        pool, since = waiting[run_id]
        return f"blocked: waiting {now - since:.0f} s for a '{pool}' pool slot"
    last = instance.get_records_for_run(run_id, limit=1, ascending=False).records
    last_t = last[0].timestamp if last else None
    if last_t is not None and now - last_t > threshold:
        return f"stalled: no progress (no new event) for {now - last_t:.0f} s"
    return None


def collect(stream: EpisodeStream, instance: dg.DagsterInstance, stall_after: float | None = None) -> list[SourceView]:
    """``stall_after``: seconds without progress before a running conversion is flagged (:func:`stall_seconds`)."""
    threshold = stall_seconds() if stall_after is None else stall_after
    now = time.time()
    waiting = waiting_for_slots(instance)
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
                    conv.error = run_health(instance, run.run_id, now, threshold, waiting)
                    conv.state = "stalled" if conv.error else "running"
                elif run.status in FAILED:
                    conv.state = "cleared" if run.run_id in acked else "failed"
                    conv.error = run_error(instance, run.run_id)
            if conv.state in view.counts:
                view.counts[conv.state] += 1
            view.last_update = max(view.last_update, conv.updated_at)
            view.conversions.append(conv)
        views.append(view)
    return views


def format_views(
    views: list[SourceView], dead_letters, verbose: bool = False, dead_letter_total: int | None = None,
) -> str:
    """``dead_letter_total``: every rejection ever counted (the record itself is capped)."""
    lines = [f"{'source':<14}{'published':>10}{'pending':>9}{'running':>9}{'completed':>11}{'failed':>8}"
             f"{'stalled':>9}  last update"]
    for v in views:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.last_update)) if v.last_update else "-"
        c = v.counts
        lines.append(f"{v.source:<14}{v.published:>10}{c['pending']:>9}{c['running']:>9}{c['completed']:>11}{c['failed']:>8}"
                     f"{c['stalled']:>9}  {when}")
        for conv in v.conversions:  # a stalled run is always named: it needs someone to look
            if conv.state == "stalled":
                lines.append(f"    STALLED {conv.episode_id} [{conv.strategy}] run {conv.run_id}: {conv.error}")
        if verbose:
            for conv in v.conversions:
                if conv.state in ("failed", "cleared"):
                    lines.append(f"    {conv.state.upper()} {conv.episode_id} [{conv.strategy}] "
                                 f"run {conv.run_id}: {conv.error}")
    if not views:
        lines.append("(nothing published yet)")
    if dead_letters:
        total = max(dead_letter_total or 0, len(dead_letters))
        lines.append(f"rejected messages (dead letters): {total}"
                     + (f" (newest {len(dead_letters)} shown)" if total > len(dead_letters) else ""))
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
            cmd = [str(Path(sys.executable).with_name("dagster")), "job", "launch", "-w", str(workspace_file()),
                   "-l", "lerobot_pipeline", "-j", convert_episode_job.name, "--tags", json.dumps(tags)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
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
