"""Job rows: create, claim, hand over, retry, defer, finish — every change conditional."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from jobs.metrics import JOB_OUTCOMES
from jobs.models import Job, JobStatus
from jobs.services import (
    job_cancel,
    job_claim,
    job_complete,
    job_create,
    job_defer,
    job_fail,
    job_retry,
    job_retry_hook_register,
    job_retry_later,
    job_wait,
)
from novitai.errors import Conflict, NotFound
from tests.jobs.conftest import SentTasks

pytestmark = pytest.mark.django_db

TASK = "tests.jobs.noop"


def make_job(**fields: Any) -> Job:
    defaults: dict[str, Any] = {
        "kind": "probe",
        "task_name": TASK,
        "subject_type": "thing",
        "subject_id": uuid.uuid4(),
    }
    return Job.objects.create(**{**defaults, **fields})


def test_create_sends_the_task_after_commit(
    sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(
            kind="probe", task_name=TASK, subject_type="thing", subject_id=uuid.uuid4()
        )
        assert sent_tasks.calls == []  # not before the commit
    assert job.status == JobStatus.PENDING
    assert job.attempts == 0
    assert sent_tasks.names_and_args == [(TASK, [str(job.pk)])]


def test_create_rolled_back_sends_nothing(
    sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    def create_then_fail() -> None:
        with transaction.atomic():
            job_create(kind="probe", task_name=TASK, subject_type="thing", subject_id=uuid.uuid4())
            raise RuntimeError("rollback")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        create_then_fail()
    assert Job.objects.count() == 0
    assert sent_tasks.calls == []


def test_claim_takes_a_due_pending_job_once() -> None:
    job = make_job()
    claimed = job_claim(job_id=job.pk)
    assert claimed is not None
    assert claimed.status == JobStatus.RUNNING
    assert claimed.attempts == 1
    assert claimed.lease_token
    assert claimed.lease_expires_at is not None
    assert claimed.lease_expires_at > timezone.now()
    assert job_claim(job_id=job.pk) is None  # a second copy of the task does nothing
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_claim_refuses_what_is_not_due_or_not_runnable() -> None:
    later = make_job(next_attempt_at=timezone.now() + timedelta(minutes=1))
    waiting = make_job(status=JobStatus.WAITING)
    done = make_job(status=JobStatus.SUCCEEDED)
    leased = make_job(
        status=JobStatus.RUNNING,
        lease_token="x" * 32,
        lease_expires_at=timezone.now() + timedelta(minutes=1),
        attempts=1,
    )
    for job in (later, waiting, done, leased):
        assert job_claim(job_id=job.pk) is None
    assert job_claim(job_id="not-a-uuid") is None
    assert job_claim(job_id=uuid.uuid4()) is None
    assert Job.objects.get(pk=leased.pk).lease_token == "x" * 32


def test_claim_takes_over_a_job_whose_lease_ran_out() -> None:
    job = make_job(
        status=JobStatus.RUNNING,
        lease_token="dead" * 8,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        attempts=1,
    )
    claimed = job_claim(job_id=job.pk)
    assert claimed is not None
    assert claimed.attempts == 2
    assert claimed.lease_token != "dead" * 8


def test_a_stale_claim_changes_nothing() -> None:
    job = make_job()
    first = job_claim(job_id=job.pk)
    assert first is not None
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = job_claim(job_id=job.pk)
    assert second is not None
    assert job_wait(job=first) is False
    assert job_retry_later(job=first, error="late") is False
    row = Job.objects.get(pk=job.pk)
    assert row.status == JobStatus.RUNNING
    assert row.lease_token == second.lease_token
    assert row.last_error == ""
    assert job_wait(job=second) is True
    assert Job.objects.get(pk=job.pk).status == JobStatus.WAITING


def test_exhausted_after_more_claims_than_allowed(settings: Any) -> None:
    job = make_job(max_attempts=2, attempts=2)
    claimed = job_claim(job_id=job.pk)
    assert claimed is not None
    assert claimed.exhausted


def test_retry_later_backs_off_and_keeps_the_error(
    settings: Any, sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    settings.JOB_RETRY_BACKOFF_BASE_SECONDS = 30.0
    settings.JOB_RETRY_BACKOFF_CAP_SECONDS = 60.0
    job = make_job()
    claimed = job_claim(job_id=job.pk)
    assert claimed is not None
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert job_retry_later(job=claimed, error="Novita 503") is True
    row = Job.objects.get(pk=job.pk)
    assert row.status == JobStatus.PENDING
    assert row.attempts == 1
    assert row.last_error == "Novita 503"
    assert row.lease_token == ""
    assert before + timedelta(seconds=30) <= row.next_attempt_at <= before + timedelta(seconds=61)
    assert row.dispatched_at is None  # the sweeper sends it when due
    assert sent_tasks.calls == []
    assert job_claim(job_id=job.pk) is None  # not due yet


def test_retry_later_soon_is_sent_with_a_short_countdown(
    settings: Any, sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    settings.JOB_RETRY_BACKOFF_BASE_SECONDS = 1.0
    settings.JOB_RETRY_BACKOFF_CAP_SECONDS = 1.0
    claimed = job_claim(job_id=make_job().pk)
    assert claimed is not None
    with django_capture_on_commit_callbacks(execute=True):
        job_retry_later(job=claimed, error="429", retry_after=3.0)
    ((name, args, options),) = sent_tasks.calls
    assert (name, args) == (TASK, [str(claimed.pk)])
    assert 2.0 <= options["countdown"] <= 3.0
    assert Job.objects.get(pk=claimed.pk).dispatched_at is not None


def test_defer_gives_the_attempt_back() -> None:
    claimed = job_claim(job_id=make_job().pk)
    assert claimed is not None
    until = timezone.now() + timedelta(seconds=60)
    assert job_defer(job=claimed, until=until, reason="waiting for a grace period") is True
    row = Job.objects.get(pk=claimed.pk)
    assert (row.status, row.attempts, row.next_attempt_at) == (JobStatus.PENDING, 0, until)


def test_finish_from_any_active_status_once() -> None:
    before = JOB_OUTCOMES.labels(kind="probe", outcome="succeeded")._value.get()
    pending, waiting = make_job(), make_job(status=JobStatus.WAITING)
    assert job_complete(job=pending) is True
    assert job_complete(job=waiting) is True
    assert job_complete(job=waiting) is False  # already finished
    assert job_fail(job=waiting, error="late") is False
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=waiting.pk).finished_at is not None
    failed, cancelled = make_job(), make_job()
    assert job_fail(job=failed, error="no capacity") is True
    assert job_cancel(job=cancelled, reason="superseded") is True
    assert Job.objects.get(pk=failed.pk).last_error == "no capacity"
    assert Job.objects.get(pk=cancelled.pk).status == JobStatus.CANCELLED
    # counted after commit (the test transaction never commits: nothing counted yet)
    assert JOB_OUTCOMES.labels(kind="probe", outcome="succeeded")._value.get() == before


def test_outcomes_are_counted_on_commit(django_capture_on_commit_callbacks: Any) -> None:
    counter = JOB_OUTCOMES.labels(kind="probe", outcome="failed")
    before = counter._value.get()
    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job=make_job(), error="boom")
    assert counter._value.get() == before + 1


def test_operator_retry_restarts_a_failed_job(
    sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_job(status=JobStatus.FAILED, attempts=5, last_error="gave up")
    seen: list[tuple[uuid.UUID, str]] = []
    job_retry_hook_register(task_name=TASK, hook=lambda j, actor: seen.append((j.pk, actor)))
    with django_capture_on_commit_callbacks(execute=True):
        retried = job_retry(job_id=job.pk, actor="staff:ops")
    assert seen == [(job.pk, "staff:ops")]
    assert (retried.status, retried.attempts, retried.finished_at) == (JobStatus.PENDING, 0, None)
    assert sent_tasks.names_and_args == [(TASK, [str(job.pk)])]


def test_operator_retry_refused(
    sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    running = make_job(
        status=JobStatus.RUNNING, lease_token="t" * 32, lease_expires_at=timezone.now()
    )
    refused = make_job(kind="refused", task_name="tests.jobs.refused", status=JobStatus.FAILED)

    def refuse(job: Job, actor: str) -> None:
        raise Conflict("not now", code="nope")

    job_retry_hook_register(task_name="tests.jobs.refused", hook=refuse)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(Conflict) as running_error:
            job_retry(job_id=running.pk)
        with pytest.raises(Conflict) as hook_error:
            job_retry(job_id=refused.pk)
        with pytest.raises(NotFound):
            job_retry(job_id=uuid.uuid4())
    assert running_error.value.code == "job_not_retryable"
    assert hook_error.value.code == "nope"
    assert Job.objects.get(pk=refused.pk).status == JobStatus.FAILED
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING
    assert sent_tasks.calls == []
