"""Instances' side of tenant budgets (billing/budgets.py): what the tenant's instances commit
an hour (for the admission rule, read with the tenant row locked), and `on_exhausted` applied
to the tenant's billing instances by the money sweep.

An instance commits the rate it was admitted at (`admission_rate_usd_per_hour`: the dearest
offer its request could get) while it is on its way to bill or billing compute, or what the
ledger says it costs now if that is more; otherwise (stopped: its disk) the ledger's rate.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, Sum
from django.db.models.functions import Greatest

from billing.budgets import budget_admission_check, budgets_check
from billing.selectors import OnExhausted
from instances.models import Instance, InstanceStatus
from instances.services import ACTIONS, Action, instance_action_request, instance_delete_request
from novitai.errors import Conflict, NotFound
from tenants.selectors import Tenant

logger = logging.getLogger(__name__)

S = InstanceStatus
COMMITTED = (
    S.PENDING,
    S.PROVISIONING,
    S.STARTING,
    S.HEALTH_CHECKING,
    S.READY,
    S.RESTARTING,
    S.STOPPING,
)
REASON = "budget_exhausted"
ACTOR = "system"


def committed_usd_per_hour(*, tenant: Tenant) -> Decimal:
    """One aggregate query over the tenant's instances."""
    active = Q(status__in=COMMITTED)
    totals = (
        Instance.objects.filter(tenant=tenant)
        .exclude(status=S.TERMINATED)
        .aggregate(
            active=Sum(
                Greatest("admission_rate_usd_per_hour", "cost_rate_usd_per_hour"), filter=active
            ),
            rest=Sum("cost_rate_usd_per_hour", filter=~active),
        )
    )
    return Decimal(totals["active"] or 0) + Decimal(totals["rest"] or 0)


def budget_admit(*, tenant: Tenant, usd_per_hour: Decimal, now: datetime) -> None:
    """The admission rule for one more instance at `usd_per_hour` (402 budget_exhausted when
    not admitted). Call it with the tenant row locked (instance_create, a start)."""
    budget_admission_check(
        tenant=tenant,
        committed=lambda: committed_usd_per_hour(tenant=tenant),
        new_usd_per_hour=usd_per_hour,
        now=now,
    )


def budgets_enforce(*, now: datetime) -> int:
    """Budgets' thresholds (their webhooks), and on_exhausted for the exhausted ones: each
    billing instance of the tenant stopped (stop) or deleted (delete), reason budget_exhausted.
    Answers how many were asked to stop or go."""
    acted = 0
    for tenant, action in budgets_check(now=now):
        if action == OnExhausted.DELETE:
            statuses: tuple[str, ...] = tuple(
                s for s in S.values if s not in (S.TERMINATING, S.TERMINATED)
            )
        else:
            statuses = ACTIONS[Action.STOP][0]
        ids = list(
            Instance.objects.filter(tenant=tenant, status__in=statuses).values_list("pk", flat=True)
        )
        for instance_id in ids:
            acted += _apply(instance_id, action)
    return acted


def _apply(instance_id: uuid.UUID, action: str) -> bool:
    message = f"The tenant's monthly budget is spent: {action}."
    try:
        if action == OnExhausted.DELETE:
            instance_delete_request(
                instance_id=instance_id, tenant=None, actor=ACTOR, reason=REASON, message=message
            )
        else:
            instance_action_request(
                instance_id=instance_id,
                tenant=None,
                action=Action.STOP,
                actor=ACTOR,
                reason=REASON,
                message=message,
            )
    except (Conflict, NotFound) as exc:
        logger.info("instance %s: budget %s skipped (%s)", instance_id, action, exc.message)
        return False
    return True
