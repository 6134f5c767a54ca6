"""Tenant budgets: a monthly limit (UTC months), alert thresholds, what exhaustion does, and the
admission rule that keeps spend within the limit.

**Admission** (creates and starts, checked with the tenant row locked, as the quota is): a new
instance is admitted when

    spent this month + 1 hour x (the hourly rates of the tenant's instances that bill or are on
    their way to + the new one's rate) <= monthly_limit_usd

so that with a limit of five hours of one instance's rate and nothing spent, five are admitted
and no more, however many creates race (the lock serialises them). Once spent reaches the limit
nothing is admitted (402 `budget_exhausted`). The rates of instances not yet billed are the
ones they were admitted at (instances passes them in: billing knows no instances).

**Thresholds**: each `alert_thresholds` percentage of the limit reached in a month sends one
`budget.threshold_reached` webhook to the budget's webhook_url (the webhook outbox, signed with
the tenant's secret); a `BudgetAlert` row per (tenant, month, threshold) is the claim, so it is
sent once whoever checks (the money sweep, or a PUT that sets a limit already crossed).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from rest_framework import status

from billing.ledger import HOUR, money_text, seconds_between, usd6
from billing.models import Budget, BudgetAlert, OnExhausted
from billing.selectors import month_start, tenant_rate, tenant_spent
from novitai.errors import ServiceError
from tenants.selectors import Tenant
from webhooks.services import webhook_event_record

DEFAULT_THRESHOLDS = [50, 80, 100]


class BudgetExhausted(ServiceError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    code = "budget_exhausted"
    message = "The tenant's monthly budget does not allow this."


def month_end(now: datetime) -> datetime:
    start = month_start(now)
    days = calendar.monthrange(start.year, start.month)[1]
    return datetime.fromtimestamp(start.timestamp() + days * 86400, UTC)


def month_text(now: datetime) -> str:
    return month_start(now).strftime("%Y-%m")


def budget_of(*, tenant: Tenant) -> Budget:
    """The tenant's budget (unsaved, without a limit, when it has none)."""
    budget = Budget.objects.filter(tenant=tenant).first()
    return budget or Budget(tenant=tenant, alert_thresholds=list(DEFAULT_THRESHOLDS))


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    spent_usd: Decimal
    projected_usd: Decimal
    remaining_usd: Decimal | None


def budget_status(*, tenant: Tenant, now: datetime) -> BudgetStatus:
    budget = budget_of(tenant=tenant)
    spent = tenant_spent(tenant=tenant, start=month_start(now), end=now, now=now)
    hours_left = seconds_between(now, month_end(now)) / HOUR
    projected = spent + tenant_rate(tenant=tenant) * hours_left
    limit = budget.monthly_limit_usd
    remaining = None if limit is None else max(Decimal(limit) - spent, Decimal(0))
    return BudgetStatus(budget, spent, projected, remaining)


def budget_representation(state: BudgetStatus, now: datetime) -> dict[str, Any]:
    budget = state.budget
    limit = budget.monthly_limit_usd
    return {
        "monthly_limit_usd": None if limit is None else f"{Decimal(limit):.2f}",
        "alert_thresholds": list(budget.alert_thresholds),
        "on_exhausted": budget.on_exhausted,
        "webhook_url": budget.webhook_url or None,
        "month": month_text(now),
        "spent_this_month_usd": money_text(state.spent_usd),
        "projected_month_usd": money_text(state.projected_usd),
        "remaining_usd": None if state.remaining_usd is None else money_text(state.remaining_usd),
    }


def budget_put(
    *,
    tenant: Tenant,
    monthly_limit_usd: Decimal | None,
    alert_thresholds: Sequence[int],
    on_exhausted: str,
    webhook_url: str | None,
    now: datetime,
) -> Budget:
    """Sets the budget; thresholds already crossed this month fire at once (once each)."""
    budget, _ = Budget.objects.update_or_create(
        tenant=tenant,
        defaults={
            "monthly_limit_usd": monthly_limit_usd,
            "alert_thresholds": list(alert_thresholds),
            "on_exhausted": on_exhausted,
            "webhook_url": webhook_url or "",
        },
    )
    budget_alerts_check(budget=budget, now=now)
    return budget


def budget_alerts_check(*, budget: Budget, now: datetime) -> list[int]:
    """The thresholds reached this month and not yet sent: recorded and sent. Answers them."""
    limit = budget.monthly_limit_usd
    if limit is None:
        return []
    tenant = budget.tenant
    spent = tenant_spent(tenant=tenant, start=month_start(now), end=now, now=now)
    month = month_text(now)
    fired: list[int] = []
    for threshold in budget.alert_thresholds:
        if spent < Decimal(limit) * threshold / 100:
            continue
        try:
            with transaction.atomic():
                BudgetAlert.objects.create(
                    tenant=tenant,
                    month=month,
                    threshold=threshold,
                    spent_usd=usd6(spent),
                    limit_usd=limit,
                    at=now,
                )
                if budget.webhook_url:
                    webhook_event_record(
                        tenant=tenant,
                        url=budget.webhook_url,
                        event_type="budget.threshold_reached",
                        data={
                            "threshold": threshold,
                            "spent_usd": money_text(spent),
                            "limit_usd": f"{Decimal(limit):.2f}",
                            "month": month,
                        },
                        occurred_at=now,
                    )
        except IntegrityError:
            continue  # sent already (this month)
        fired.append(threshold)
    return fired


def budgets_check(*, now: datetime) -> list[tuple[Tenant, str]]:
    """Every budget's thresholds; answers the exhausted budgets whose on_exhausted acts (stop or
    delete), for instances to apply. One query for the budgets, then one per budgeted tenant."""
    exhausted: list[tuple[Tenant, str]] = []
    budgets = Budget.objects.filter(monthly_limit_usd__isnull=False).select_related("tenant")
    for budget in budgets:
        budget_alerts_check(budget=budget, now=now)
        if budget.on_exhausted == OnExhausted.NOTIFY:
            continue
        spent = tenant_spent(tenant=budget.tenant, start=month_start(now), end=now, now=now)
        if budget.monthly_limit_usd is not None and spent >= budget.monthly_limit_usd:
            exhausted.append((budget.tenant, budget.on_exhausted))
    return exhausted


def budget_admission_check(
    *,
    tenant: Tenant,
    committed: Callable[[], Decimal],
    new_usd_per_hour: Decimal,
    now: datetime,
) -> None:
    """The admission rule (the module's docstring); call it with the tenant row locked.
    Raises BudgetExhausted (402) when the instance is not admitted. `committed` (the USD an hour
    of what the tenant runs) is asked only when the tenant has a limit: a tenant without one
    pays nothing for the rule, under the lock every create of the tenant waits on."""
    budget = Budget.objects.filter(tenant=tenant, monthly_limit_usd__isnull=False).first()
    if budget is None or budget.monthly_limit_usd is None:
        return
    committed_usd_per_hour = committed()
    limit = Decimal(budget.monthly_limit_usd)
    spent = tenant_spent(tenant=tenant, start=month_start(now), end=now, now=now)
    needed = spent + committed_usd_per_hour + new_usd_per_hour
    if spent < limit and needed <= limit:
        return
    raise BudgetExhausted(
        f"The monthly budget of ${limit:.2f} is {'spent' if spent >= limit else 'too close'}: "
        f"${money_text(spent)} spent, and an hour of what runs and this instance needs "
        f"${money_text(committed_usd_per_hour + new_usd_per_hour)} more.",
        details={
            "monthly_limit_usd": f"{limit:.2f}",
            "spent_this_month_usd": money_text(spent),
            "committed_usd_per_hour": money_text(committed_usd_per_hour),
            "requested_usd_per_hour": money_text(new_usd_per_hour),
        },
    )
