"""Spend caps and lifetimes, enforced by the money sweep.

An instance may carry `max_spend_usd` (with `on_max_spend`: stop or delete) and `expires_at`
(with `on_expire`: delete or stop; `ttl_seconds` in a request is turned into it, counted from the
request). Each is acted on once; the `instance.expiring` webhook goes out EXPIRY_WARNING_SECONDS
before the expiry. `money_due_at` (`money_due_at_of`) is when the sweep must next look at a row:
the warning, the expiry, or when the cost reaches the cap at the current rate (recomputed each
time the rate or the settings change: instances/ledger.py, creates, PATCH).

    instances_money_sweep()   # beat, every MONEY_SWEEP_INTERVAL_SECONDS (instances.money_sweep)

finds the due rows in SQL (one indexed query whatever the number of instances), and handles each
with its row locked and judged again under the lock, as the idle stop does: the warning or the
cap or the expiry is claimed by its marker (`expiry_warned_at`, `spend_limit_reached_at`,
`expired_at`), so that two sweeps at once act once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.ledger import MICRO, money_text
from instances.lifecycle import instance_event_record
from instances.models import Instance, InstanceStatus, OnExpire, OnMaxSpend
from instances.selectors import instance_cost_usd, instance_representation
from instances.services import ACTIONS, Action, instance_action_request, instance_delete_request
from novitai.errors import Conflict, NotFound
from webhooks.services import webhook_event_record

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
ACTOR = "system"
# Where a stop or a delete still means something (not on its way out already).
ACTIONABLE = tuple(
    s
    for s in InstanceStatus.values
    if s not in (InstanceStatus.TERMINATING, InstanceStatus.TERMINATED)
)


def warning_delta() -> timedelta:
    return timedelta(seconds=float(settings.EXPIRY_WARNING_SECONDS))


def spend_cap_at(instance: Instance) -> datetime | None:
    """When the cost reaches max_spend_usd at the current rate (None: never, at this rate)."""
    cap = instance.max_spend_usd
    if cap is None or instance.spend_limit_reached_at is not None:
        return None
    left = Decimal(cap) - Decimal(instance.cost_accrued_usd)
    since = instance.cost_since
    if left <= 0:
        return since or timezone.now()
    rate = Decimal(instance.cost_rate_usd_per_hour)
    if rate <= 0 or since is None:
        return None
    return since + timedelta(hours=float(left / rate))


def money_due_at_of(instance: Instance) -> datetime | None:
    """When the money sweep must next look at the instance."""
    if instance.status not in ACTIONABLE:
        return None
    candidates: list[datetime] = []
    if instance.expires_at is not None and instance.expired_at is None:
        if instance.expiry_warned_at is None:
            candidates.append(instance.expires_at - warning_delta())
        candidates.append(instance.expires_at)
    cap_at = spend_cap_at(instance)
    if cap_at is not None:
        candidates.append(cap_at)
    return min(candidates) if candidates else None


def instances_money_due(*, now: datetime, limit: int = BATCH_SIZE) -> list[uuid.UUID]:
    return list(
        Instance.objects.filter(money_due_at__lte=now, status__in=ACTIONABLE)
        .order_by("money_due_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


@dataclass
class SweepReport:
    due: int = 0
    warned: int = 0
    capped: int = 0
    expired: int = 0
    budget_actions: int = 0


def _webhook(instance: Instance, event_type: str, now: datetime) -> None:
    if instance.webhook_url:
        webhook_event_record(
            tenant=instance.tenant,
            url=instance.webhook_url,
            event_type=event_type,
            data=instance_representation(instance),
            instance_id=instance.pk,
            occurred_at=now,
        )


def _act(instance: Instance, *, delete: bool, reason: str, message: str) -> bool:
    """Stops or deletes it (a job, sent on commit). A stop asked of an instance that cannot
    be stopped now (in transit) is not made: False, and the sweep comes back."""
    if delete:
        instance_delete_request(
            instance_id=instance.pk, tenant=None, actor=ACTOR, reason=reason, message=message
        )
        return True
    allowed, _ = ACTIONS[Action.STOP]
    if instance.status in (InstanceStatus.STOPPED, InstanceStatus.STOPPING):
        return True  # nothing more to stop
    if instance.status not in allowed:
        return False
    instance_action_request(
        instance_id=instance.pk,
        tenant=None,
        action=Action.STOP,
        actor=ACTOR,
        reason=reason,
        message=message,
    )
    return True


def _warn(instance: Instance, now: datetime) -> bool:
    if instance.expires_at is None or instance.expired_at is not None:
        return False
    if instance.expiry_warned_at is not None or instance.expires_at - warning_delta() > now:
        return False
    instance.expiry_warned_at = now
    instance_event_record(
        instance=instance,
        reason="expiring",
        message=f"Expires at {instance.expires_at.isoformat()}: it will be "
        f"{'deleted' if instance.on_expire == OnExpire.DELETE else 'stopped'}.",
        data={"expires_at": instance.expires_at.isoformat()},
    )
    _webhook(instance, "instance.expiring", now)
    return True


def _cap(instance: Instance, now: datetime) -> bool:
    cap = instance.max_spend_usd
    if cap is None or instance.spend_limit_reached_at is not None:
        return False
    cost = instance_cost_usd(instance, now)
    if cost + MICRO < cap:
        return False
    message = f"Spent ${money_text(cost)} of its max_spend_usd ${cap}."
    if not _act(
        instance,
        delete=instance.on_max_spend == OnMaxSpend.DELETE,
        reason="max_spend_reached",
        message=message,
    ):
        return False
    instance.spend_limit_reached_at = now
    instance_event_record(
        instance=instance,
        reason="spend_limit_reached",
        message=message,
        data={"max_spend_usd": str(cap), "cost_usd": money_text(cost)},
        at=now,
    )
    _webhook(instance, "instance.spend_limit_reached", now)
    return True


def _expire(instance: Instance, now: datetime) -> bool:
    if instance.expires_at is None or instance.expired_at is not None:
        return False
    if instance.expires_at > now:
        return False
    if not _act(
        instance,
        delete=instance.on_expire == OnExpire.DELETE,
        reason="expired",
        message=f"Expired at {instance.expires_at.isoformat()}.",
    ):
        return False
    instance.expired_at = now
    return True


def instance_money_check(*, instance_id: uuid.UUID, now: datetime, report: SweepReport) -> None:
    """One due instance, its row locked: the warning, the cap, the expiry, as they are due."""
    with transaction.atomic():
        instance = (
            Instance.objects.select_for_update(of=("self",))
            .select_related("tenant", "current_job")
            .filter(pk=instance_id)
            .first()
        )
        if instance is None or instance.status not in ACTIONABLE:
            return
        warned = _warn(instance, now)
        capped = _cap(instance, now)
        expired = (
            False
            if capped and instance.on_max_spend == OnMaxSpend.DELETE
            else _expire(instance, now)
        )
        fresh = Instance.objects.select_related("tenant").get(pk=instance.pk)
        for name in ("expiry_warned_at", "spend_limit_reached_at", "expired_at"):
            setattr(fresh, name, getattr(instance, name))
        due = money_due_at_of(fresh)
        if due is not None and due <= now:
            # Not actionable yet (a stop asked of an instance in transit): next sweep.
            due = now + timedelta(seconds=float(settings.MONEY_SWEEP_INTERVAL_SECONDS))
        Instance.objects.filter(pk=instance.pk).update(
            expiry_warned_at=instance.expiry_warned_at,
            spend_limit_reached_at=instance.spend_limit_reached_at,
            expired_at=instance.expired_at,
            money_due_at=due,
        )
    report.warned += warned
    report.capped += capped
    report.expired += expired


def instances_money_sweep(now: datetime | None = None, *, limit: int = BATCH_SIZE) -> SweepReport:
    """Handles every instance due by `now` (a batch at most)."""
    from instances.budget import budgets_enforce

    now = now or timezone.now()
    report = SweepReport()
    report.budget_actions = budgets_enforce(now=now)
    for instance_id in instances_money_due(now=now, limit=limit):
        report.due += 1
        try:
            instance_money_check(instance_id=instance_id, now=now, report=report)
        except (Conflict, NotFound) as exc:
            logger.info("instance %s: money sweep skipped (%s)", instance_id, exc.message)
    return report


def ledger_reconcile_run(
    *, start: datetime | None = None, end: datetime | None = None
) -> list[uuid.UUID]:
    """Reconciles the ledger with Novita's bills over the window (default: the last
    RECONCILE_WINDOW_SECONDS, ending RECONCILE_LAG_SECONDS ago) and records each drift as an
    event on its instance. Answers the instances that drifted."""
    from billing.ledger import money_text as text
    from billing.reconcile import ledger_reconcile
    from novitai.novita.client import get_client

    now = timezone.now()
    end = end or now - timedelta(seconds=float(settings.RECONCILE_LAG_SECONDS))
    start = start or end - timedelta(seconds=float(settings.RECONCILE_WINDOW_SECONDS))
    result = ledger_reconcile(client=get_client(), start=start, end=end)
    instances = {
        i.pk: i for i in Instance.objects.filter(pk__in=[d.instance_id for d in result.drifts])
    }
    for drift in result.drifts:
        instance = instances.get(drift.instance_id)
        if instance is None:
            continue
        instance_event_record(
            instance=instance,
            reason="ledger_drift",
            message=f"Novita billed ${text(drift.billed_usd)} from {start.isoformat()} to "
            f"{end.isoformat()}; the ledger says ${text(drift.ledger_usd)}.",
            data={
                "billed_usd": text(drift.billed_usd),
                "ledger_usd": text(drift.ledger_usd),
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
            },
        )
    logger.info(
        "reconciliation: %d instance(s) checked, %d drift(s)", result.checked, len(result.drifts)
    )
    return [d.instance_id for d in result.drifts]
