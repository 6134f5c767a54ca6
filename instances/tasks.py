"""Celery tasks of instances: thin, ids only, each one service call."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from instances.idempotency import idempotency_keys_purge


@shared_task(name="instances.provision", ignore_result=True)
def provision(job_id: str) -> None:
    """Creates the instance on Novita (offers in order; unknown outcomes resolved by name)."""
    from instances.provisioning import instance_provision_run

    instance_provision_run(job_id=job_id)


@shared_task(name="instances.action", ignore_result=True)
def action(job_id: str) -> None:
    """Asks Novita to start, stop, restart or delete the instance; the monitor follows."""
    from instances.actions import instance_action_run

    instance_action_run(job_id=job_id)


@shared_task(name="instances.monitor", ignore_result=True, soft_time_limit=120, time_limit=150)
def monitor() -> None:
    """One monitoring pass over every instance in transit (beat, every MONITOR_INTERVAL)."""
    from instances.monitoring import monitor_pass

    if monitor_pass().again:
        monitor.apply_async(expires=max(settings.MONITOR_INTERVAL_SECONDS * 2, 5))


@shared_task(name="instances.capacity_sweep", ignore_result=True)
def capacity_sweep() -> None:
    """Tries instances waiting for capacity again, oldest first (beat, every
    CAPACITY_SWEEP_INTERVAL); with more due than one sweep tries, the next one is sent at once."""
    from instances.capacity import instances_capacity_sweep

    if instances_capacity_sweep().more:
        capacity_sweep.apply_async(expires=max(settings.CAPACITY_SWEEP_INTERVAL_SECONDS * 2, 5))


@shared_task(name="instances.idle_stop", ignore_result=True)
def idle_stop() -> int:
    """Stops ready instances idle past their timeout (beat, every IDLE_CHECK_INTERVAL); a full
    batch sends the next run at once."""
    from instances.idle import BATCH_SIZE, instances_idle_stop

    stopped = instances_idle_stop()
    if stopped >= BATCH_SIZE:
        idle_stop.apply_async(expires=max(settings.IDLE_CHECK_INTERVAL_SECONDS * 2, 5))
    return stopped


@shared_task(name="instances.access_details_read", ignore_result=True)
def access_details_read() -> int:
    """Reads where to ssh for ready instances that lack it (beat, every
    ACCESS_DETAILS_INTERVAL_SECONDS); a full batch sends the next run at once."""
    from instances.access import instances_access_details_read

    read = instances_access_details_read()
    if read >= settings.ACCESS_DETAILS_BATCH_SIZE:
        access_details_read.apply_async(
            expires=max(settings.ACCESS_DETAILS_INTERVAL_SECONDS * 2, 5)
        )
    return read


@shared_task(name="instances.money_sweep", ignore_result=True)
def money_sweep() -> int:
    """Acts on due spend caps and expiries (beat, every MONEY_SWEEP_INTERVAL_SECONDS); a full
    batch sends the next run at once."""
    from instances.money import BATCH_SIZE, instances_money_sweep

    report = instances_money_sweep()
    if report.due >= BATCH_SIZE:
        money_sweep.apply_async(expires=max(settings.MONEY_SWEEP_INTERVAL_SECONDS * 2, 5))
    return report.due


@shared_task(name="instances.reconcile", ignore_result=True)
def reconcile() -> int:
    """Compares the ledger with Novita's bills (beat, every RECONCILE_INTERVAL_SECONDS)."""
    from instances.money import ledger_reconcile_run

    return len(ledger_reconcile_run())


@shared_task(name="instances.idempotency_keys_purge", ignore_result=True)
def idempotency_keys_purge_task() -> int:
    return idempotency_keys_purge()
