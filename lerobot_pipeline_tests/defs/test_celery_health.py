"""The Celery health pieces on a real Redis broker/backend and a real Celery app, no worker running."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from lerobot_pipeline.defs import celery_health
from lerobot_pipeline.defs.executors import ExecutorSettings
from lerobot_pipeline.streaming.embedded import start_embedded

GHOST = "ghost@nowhere"


@pytest.fixture
def app():
    with start_embedded(db=0) as server:
        app = celery_health.celery_app(ExecutorSettings("celery", server.url, server.url))
        yield app
        app.close()


def _record_started(app, host: str = GHOST, queue: str = "video") -> str:
    """A STARTED record exactly as a worker writes it with task_track_started + result_extended."""
    task_id = str(uuid.uuid4())
    request = SimpleNamespace(task="execute_plan", args=[], kwargs={"execute_step_args_packed": {"x": 1}},
                              hostname=host, retries=0, delivery_info={"routing_key": f"{queue}.execute_plan"},
                              group=None, parent_id=None, root_id=None, chord=None, ignore_result=False)
    app.backend.store_result(task_id, {"pid": 4242, "hostname": host}, "STARTED", request=request)
    return task_id


def test_started_records_name_their_worker_and_arguments(app):
    task_id = _record_started(app)
    found = dict(celery_health.started_tasks(app))
    assert set(found) == {task_id}
    meta = found[task_id]
    assert meta["result"]["hostname"] == GHOST and meta["name"] == "execute_plan"
    assert meta["queue"] == "video.execute_plan" and meta["kwargs"] == {"execute_step_args_packed": {"x": 1}}


def test_a_worker_that_does_not_exist_answers_no_ping(app):
    assert celery_health.unanswered(app, {GHOST}, tries=2, timeout=0.3) == {GHOST}
    assert celery_health.unanswered(app, set()) == set()


def test_a_lost_task_is_sent_again_under_its_id_then_failed_after_the_limit(app):
    task_id = _record_started(app)
    meta = dict(celery_health.started_tasks(app))[task_id]
    client = app.backend.client
    assert celery_health.redeliver(app, task_id, meta) is True
    assert app.AsyncResult(task_id).state == "RETRY"  # not ready: the run process keeps waiting on it
    assert celery_health.started_tasks(app) == []  # the next check does not send it twice
    assert client.llen("video") == 1  # the message is back in its queue, with the same id
    assert celery_health.redeliver(app, task_id, meta) is True
    assert celery_health.redeliver(app, task_id, meta) is False  # third loss: MAX_REDELIVERIES is 2
    result = app.AsyncResult(task_id)
    assert result.state == "FAILURE" and "stopped answering pings" in str(result.result)
    assert client.llen("video") == 2


def test_a_task_not_to_resend_is_only_marked_failed(app):
    task_id = _record_started(app, queue="dagster")
    meta = dict(celery_health.started_tasks(app))[task_id]
    assert celery_health.redeliver(app, task_id, meta, resend=False) is False
    assert app.AsyncResult(task_id).state == "FAILURE"
    assert app.backend.client.llen("dagster") == 0
