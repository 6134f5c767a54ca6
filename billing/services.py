"""Writes of the ledger: prices captured at create, phases opened and closed as instances
observe their upstream statuses. Callers (instances) hold the ids; billing holds the money.

`ledger_observe` takes a batch of observations and writes them in a constant number of
statements (a lock, one UPDATE closing segments, one INSERT opening them, one bulk UPDATE of the
accounts), so that a monitoring pass's cost grows with batches, not instances.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from billing import ledger
from billing.models import Account, Phase, Segment
from tenants.selectors import Tenant


@dataclass(frozen=True)
class Prices:
    """What an instance is created at (1/100000 USD per card-hour, per GB-day)."""

    product_name: str
    region: str
    billing_mode: str
    compute_price: int
    gpu_num: int
    disk_price: int
    disk_gb: int


@dataclass(frozen=True)
class Observation:
    """An instance's upstream status as observed (its phase: ledger.phase_of), and the prices to
    open an account at when none was captured (an instance older than the ledger)."""

    instance_id: uuid.UUID
    tenant_id: uuid.UUID
    novita_instance_id: str
    phase: str
    fallback: Prices


@dataclass(frozen=True)
class AccountState:
    """What an instance's representation shows of its cost: accrued in closed segments, and the
    open phase's rate since when."""

    accrued_usd: Decimal
    rate_usd_per_hour: Decimal
    since: datetime | None


def account_prices_capture(
    *, instance_id: uuid.UUID, tenant: Tenant, prices: Prices, at: datetime
) -> None:
    """The prices a create is sent at. A later create of the same instance (a spot instance
    provisioned anew) captures its own; segments keep the price they were opened at."""
    fields = {
        "tenant": tenant,
        "product_name": prices.product_name,
        "region": prices.region,
        "billing_mode": prices.billing_mode,
        "compute_price": prices.compute_price,
        "gpu_num": prices.gpu_num,
        "disk_price": prices.disk_price,
        "disk_gb": prices.disk_gb,
        "captured_at": at,
    }
    Account.objects.update_or_create(instance_id=instance_id, defaults=fields)


def _account_of(obs: Observation, at: datetime) -> Account:
    p = obs.fallback
    return Account(
        instance_id=obs.instance_id,
        tenant_id=obs.tenant_id,
        product_name=p.product_name,
        region=p.region,
        billing_mode=p.billing_mode,
        compute_price=p.compute_price,
        gpu_num=p.gpu_num,
        disk_price=p.disk_price,
        disk_gb=p.disk_gb,
        captured_at=at,
    )


def _unit(account: Account, phase: str) -> tuple[int, int]:
    if phase == Phase.COMPUTE:
        return account.compute_price, account.gpu_num
    return account.disk_price, account.disk_gb


def state_of(account: Account) -> AccountState:
    price, units = _unit(account, account.phase)
    return AccountState(
        accrued_usd=account.accrued_usd,
        rate_usd_per_hour=ledger.rate_usd_per_hour(account.phase, price, units),
        since=account.phase_since if account.phase else None,
    )


def ledger_observe(
    *, observations: Sequence[Observation], at: datetime, closing: bool = False
) -> dict[uuid.UUID, AccountState]:
    """Each instance's phase from `at` on: where it changed (or the upstream instance did), the
    open segment is closed at `at` and its cost added to the account, and the new phase's
    segment opened. `closing`: the instances are gone (nothing more will be billed). Answers
    the new state of the accounts that changed."""
    by_id = {obs.instance_id: obs for obs in observations}
    if not by_id:
        return {}
    changed: dict[uuid.UUID, AccountState] = {}
    with transaction.atomic():
        accounts = {
            a.instance_id: a
            for a in Account.objects.select_for_update().filter(pk__in=list(by_id)).order_by("pk")
        }
        missing = [_account_of(obs, at) for i, obs in by_id.items() if i not in accounts]
        if missing and not closing:
            Account.objects.bulk_create(missing, ignore_conflicts=True)
            accounts.update({a.instance_id: a for a in missing})
        closed: list[uuid.UUID] = []
        opened: list[Segment] = []
        for instance_id, obs in by_id.items():
            account = accounts.get(instance_id)
            if account is None:
                continue
            same_upstream = account.novita_instance_id == obs.novita_instance_id
            if account.phase == obs.phase and same_upstream and not closing:
                continue
            if account.phase and account.phase_since is not None:
                price, units = _unit(account, account.phase)
                seconds = ledger.seconds_between(account.phase_since, at)
                account.accrued_usd += ledger.cost_usd(account.phase, price, units, seconds)
                closed.append(instance_id)
            account.phase = obs.phase
            account.phase_since = at if obs.phase else None
            account.novita_instance_id = obs.novita_instance_id
            account.closed_at = at if closing else None
            if obs.phase:
                price, units = _unit(account, obs.phase)
                opened.append(_segment(account, obs.phase, price, units, at))
            changed[instance_id] = state_of(account)
        if closed:
            Segment.objects.filter(account_id__in=closed, ended_at__isnull=True).update(ended_at=at)
        Segment.objects.bulk_create(opened)
        Account.objects.bulk_update(
            [accounts[i] for i in changed],
            ["phase", "phase_since", "accrued_usd", "novita_instance_id", "closed_at"],
        )
    return changed


def _segment(account: Account, phase: str, price: int, units: int, at: datetime) -> Segment:
    return Segment(
        account=account,
        tenant_id=account.tenant_id,
        instance_id=account.instance_id,
        novita_instance_id=account.novita_instance_id,
        phase=phase,
        product_name=account.product_name,
        region=account.region,
        billing_mode=account.billing_mode,
        unit_price=price,
        units=units,
        started_at=at,
    )
