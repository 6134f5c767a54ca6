"""Celery tasks of webhook delivery: thin wrappers over webhooks.services."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task

from webhooks.services import (
    deliver_time_limit,
    webhook_deliver,
    webhook_deliveries_wake,
    webhook_sweep,
)

logger = logging.getLogger(__name__)


# An attempt is bounded by WEBHOOK_TIMEOUT_SECONDS whatever the receiver does; the claim's lease
# outlasts this limit (services._lease), so the sweeper never sends it again meanwhile.
@shared_task(
    name="webhooks.deliver",
    time_limit=deliver_time_limit(),
    soft_time_limit=deliver_time_limit() - 10,
)
def deliver(delivery_id: str) -> None:
    """Makes the due attempt of one delivery (a no-op when it is not due or already taken)."""
    try:
        pk = uuid.UUID(str(delivery_id))
    except ValueError:
        logger.error("webhooks.deliver: %r is not a delivery id", delivery_id)
        return
    webhook_deliver(delivery_id=pk)


@shared_task(name="webhooks.sweep")
def sweep() -> int:
    """Sends a wake-up for every due delivery that has none outstanding (beat, every few
    seconds). Returns how many were sent."""
    sent = webhook_deliveries_wake(delivery_ids=webhook_sweep())
    if sent:
        logger.info("webhooks.sweep dispatched %d due deliveries", sent)
    return sent
