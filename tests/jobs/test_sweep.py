"""The sweeper re-sends due jobs and jobs whose worker died; nothing else, and not twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.services import jobs_sweep
from jobs.tasks import sweep
from tests.jobs.conftest import SentTasks
from tests.jobs.test_services import TASK, make_job

pytestmark = pytest.mark.django_db


def test_sweep_resends_due_and_stuck_jobs_only(settings: Any, sent_tasks: SentTasks) -> None:
    settings.JOB_REDISPATCH_SECONDS = 60
    now = timezone.now()
    never_sent = make_job(next_attempt_at=now - timedelta(seconds=1), dispatched_at=None)
    lost = make_job(next_attempt_at=now, dispatched_at=now - timedelta(seconds=61))
    dead_worker = make_job(
        status=JobStatus.RUNNING,
        lease_token="t" * 32,
        lease_expires_at=now - timedelta(seconds=1),
        attempts=1,
    )
    make_job(dispatched_at=now - timedelta(seconds=10))  # sent recently: still on its way
    make_job(next_attempt_at=now + timedelta(seconds=30))  # backing off
    make_job(
        status=JobStatus.RUNNING,
        lease_token="l" * 32,
        lease_expires_at=now + timedelta(seconds=30),
    )
    make_job(status=JobStatus.WAITING)
    make_job(status=JobStatus.SUCCEEDED)
    make_job(status=JobStatus.FAILED)

    assert jobs_sweep() == 3
    assert sorted(sent_tasks.names_and_args) == sorted(
        (TASK, [str(job.pk)]) for job in (never_sent, lost, dead_worker)
    )
    for job in (never_sent, lost, dead_worker):
        assert Job.objects.get(pk=job.pk).dispatched_at is not None

    sent_tasks.clear()
    assert sweep() == 0  # the periodic task: nothing is re-sent before JOB_REDISPATCH_SECONDS
    assert sent_tasks.calls == []


def test_sweep_forgets_a_send_that_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from novitai.celery import app

    job = make_job(dispatched_at=None)

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_task", broker_down)
    assert jobs_sweep() == 0  # none sent
    assert Job.objects.get(pk=job.pk).dispatched_at is None  # the next sweep tries again
