"""Celery tasks of the jobs app (thin: one service call each)."""

from __future__ import annotations

from celery import shared_task

from jobs.services import jobs_sweep


@shared_task(name="jobs.sweep", ignore_result=True)
def sweep() -> int:
    """Re-sends due jobs and jobs whose worker died (beat, every SWEEP_INTERVAL_SECONDS)."""
    return jobs_sweep()
