"""Reads of the ledger: an instance's cost now, a tenant's spend and rate, and cost reports cut
by instance, tenant, product, region or day (exact sums; each row rounded to the micro-dollar
and the total the sum of the rows, so that they always add up)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Q, QuerySet

from billing import ledger
from billing.models import Account, Phase, Segment
from billing.models import OnExhausted as OnExhausted  # re-exported: the import rule
from billing.services import AccountState, state_of
from tenants.selectors import Tenant

GROUPS = ("instance", "product", "region", "day", "tenant")


def month_start(now: datetime) -> datetime:
    """The first instant of `now`'s month, UTC."""
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def cost_at(state: AccountState, now: datetime) -> Decimal:
    """Accrued up to `now`: the closed segments and the open one's part."""
    if state.since is None:
        return Decimal(state.accrued_usd)
    hours = ledger.seconds_between(state.since, now) / ledger.HOUR
    return Decimal(state.accrued_usd) + Decimal(state.rate_usd_per_hour) * hours


def accounts_in_phase(phase: str) -> int:
    return Account.objects.filter(phase=phase).count()


def account_states(*, instance_ids: list[uuid.UUID]) -> dict[uuid.UUID, AccountState]:
    return {a.instance_id: state_of(a) for a in Account.objects.filter(pk__in=instance_ids)}


@dataclass(frozen=True)
class TenantSpend:
    tenant: str
    spent_usd: Decimal  # ever
    rate_usd_per_hour: Decimal  # now


def spend_by_tenant(*, now: datetime) -> list[TenantSpend]:
    """Every tenant's spend so far and rate now (one query over the accounts)."""
    spent: dict[str, Decimal] = defaultdict(Decimal)
    rate: dict[str, Decimal] = defaultdict(Decimal)
    for account in Account.objects.select_related("tenant").only("tenant__name", *_STATE_FIELDS):
        state = state_of(account)
        spent[account.tenant.name] += cost_at(state, now)
        rate[account.tenant.name] += state.rate_usd_per_hour
    return [TenantSpend(name, spent[name], rate[name]) for name in sorted(spent)]


_STATE_FIELDS = (
    "phase",
    "phase_since",
    "accrued_usd",
    "compute_price",
    "gpu_num",
    "disk_price",
    "disk_gb",
)


def tenant_rate(*, tenant: Tenant | None) -> Decimal:
    """What the tenant's instances (None: everyone's) cost an hour right now."""
    accounts = Account.objects.exclude(phase=Phase.NONE)
    if tenant is not None:
        accounts = accounts.filter(tenant=tenant)
    return sum((state_of(a).rate_usd_per_hour for a in accounts.only(*_STATE_FIELDS)), Decimal(0))


def segments_overlapping(start: datetime, end: datetime) -> QuerySet[Segment]:
    return Segment.objects.filter(started_at__lt=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=start)
    )


def tenant_spent(
    *, tenant: Tenant | None, start: datetime, end: datetime, now: datetime
) -> Decimal:
    """Exact cost of the tenant's (None: everyone's) segments within [start, end) (open ones
    up to `now`)."""
    total = Decimal(0)
    segments = segments_overlapping(start, end)
    if tenant is not None:
        segments = segments.filter(tenant=tenant)
    for segment in segments:
        for _, cost in segment_pieces(segment, start, end, now=now, by_day=False):
            total += cost
    return total


def segment_pieces(
    segment: Segment, start: datetime, end: datetime, *, now: datetime, by_day: bool
) -> Iterator[tuple[datetime, Decimal]]:
    """The segment within [start, end) (an open one up to `now`): (day it starts, cost), cut at
    each UTC midnight when by_day."""
    lo = max(segment.started_at, start)
    hi = min(segment.ended_at or now, end)
    while lo < hi:
        cut = hi
        if by_day:
            midnight = datetime(lo.year, lo.month, lo.day, tzinfo=UTC) + timedelta(days=1)
            cut = min(hi, midnight)
        seconds = ledger.seconds_between(lo, cut)
        yield lo, ledger.cost_usd(segment.phase, segment.unit_price, segment.units, seconds)
        lo = cut


@dataclass(frozen=True)
class CostRow:
    key: str
    cost_usd: Decimal  # rounded to the micro-dollar


@dataclass(frozen=True)
class CostReport:
    start: datetime
    end: datetime
    group_by: str
    rows: list[CostRow]
    total_usd: Decimal  # the sum of the rows, exactly


def _key(segment: Segment, group_by: str, day: datetime) -> str:
    if group_by == "instance":
        return str(segment.instance_id)
    if group_by == "product":
        return segment.product_name
    if group_by == "region":
        return segment.region
    if group_by == "tenant":
        return segment.tenant.name
    return day.date().isoformat()


def cost_report(
    *, tenant: Tenant | None, start: datetime, end: datetime, group_by: str, now: datetime
) -> CostReport:
    """Costs within [start, end) (open segments up to `now`), one row per group, most first."""
    segments = segments_overlapping(start, end)
    if tenant is not None:
        segments = segments.filter(tenant=tenant)
    if group_by == "tenant":
        segments = segments.select_related("tenant")
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for segment in segments:
        for day, cost in segment_pieces(segment, start, end, now=now, by_day=group_by == "day"):
            sums[_key(segment, group_by, day)] += cost
    rows = [CostRow(key, ledger.usd6(cost)) for key, cost in sums.items()]
    if group_by == "day":
        rows.sort(key=lambda r: r.key)
    else:
        rows.sort(key=lambda r: (-r.cost_usd, r.key))
    return CostReport(start, end, group_by, rows, sum((r.cost_usd for r in rows), Decimal(0)))
