"""Catalog tasks (queue "monitor", see CELERY_TASK_ROUTES)."""

from __future__ import annotations

from celery import shared_task

from catalog.services import catalog_sync


@shared_task(name="catalog.sync", ignore_result=True)
def catalog_sync_task() -> str:
    """Beat runs it every CATALOG_SYNC_INTERVAL_SECONDS. A Novita error is reported, not raised:
    the next run is the retry. Safe to run twice at once (the second is skipped)."""
    return catalog_sync().outcome
