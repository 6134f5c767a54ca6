"""The bench database between scenarios: emptied of instances, and its statistics fresh."""

from __future__ import annotations


def clear_instances() -> None:
    """Empties the tables provisioning writes (between sizes, and before scenario 1)."""
    from django.db import connection

    from instances.models import IdempotencyKey, Instance, InstanceEvent
    from jobs.models import Job
    from webhooks.models import DeliveryAttempt, WebhookDelivery

    tables = [
        m._meta.db_table
        for m in (DeliveryAttempt, WebhookDelivery, IdempotencyKey, InstanceEvent, Instance, Job)
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
