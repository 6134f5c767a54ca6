"""Instances' side of the cost ledger (billing/): what each instance is created at, and what
its upstream status says it is billed for, told to billing as it is observed; billing's answer
(accrued, rate, since) copied onto the instance for its representation.

Observations are the monitoring pass's (each upstream status change, at the listing's time),
and the end of an instance (terminated, or a failed one released: nothing left upstream).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from billing import ledger
from billing.services import AccountState, Observation, Prices, account_prices_capture
from billing.services import ledger_observe as billing_observe
from catalog.selectors import Offer, product_storage_price
from instances.bulk import rows_update
from instances.models import Instance


def prices_of(instance: Instance) -> Prices:
    """The instance's prices as its row has them (its offer's hourly price for its GPUs; the
    disk price unknown): for an instance whose create was sent before the ledger existed."""
    hourly = Decimal(instance.price_per_hour or 0)
    per_card = ledger.usd_units(hourly / max(instance.gpu_num, 1)) if hourly else 0
    return Prices(
        product_name=instance.product_name,
        region=instance.region,
        billing_mode=instance.billing_mode,
        compute_price=per_card,
        gpu_num=instance.gpu_num,
        disk_price=0,
        disk_gb=instance.rootfs_size,
    )


def prices_capture(instance: Instance, offer: Offer, *, at: datetime) -> None:
    """At the create: the offer's prices (per card-hour; the product's disk price)."""
    account_prices_capture(
        instance_id=instance.pk,
        tenant=instance.tenant,
        prices=Prices(
            product_name=offer.product_name,
            region=offer.region_code,
            billing_mode=instance.billing_mode,
            compute_price=ledger.usd_units(offer.price_per_gpu_hour),
            gpu_num=instance.gpu_num,
            disk_price=product_storage_price(product_pk=offer.product_pk),
            disk_gb=instance.rootfs_size,
        ),
        at=at,
    )


def _observation(row: Instance, phase: str) -> Observation:
    return Observation(
        instance_id=row.pk,
        tenant_id=row.tenant_id,
        novita_instance_id=row.novita_instance_id,
        phase=phase,
        fallback=prices_of(row),
    )


def _copy(rows: Sequence[Instance], states: dict[uuid.UUID, AccountState]) -> None:
    """Billing's answer onto the rows, one statement."""
    from instances.money import money_due_at_of

    values: dict[uuid.UUID, dict[str, object]] = {}
    for row in rows:
        state = states.get(row.pk)
        if state is None:
            continue
        row.cost_accrued_usd = state.accrued_usd
        row.cost_rate_usd_per_hour = state.rate_usd_per_hour
        row.cost_since = state.since
        # The spend cap's due time moves with the rate.
        row.money_due_at = money_due_at_of(row)
        values[row.pk] = {
            "cost_accrued_usd": row.cost_accrued_usd,
            "cost_rate_usd_per_hour": row.cost_rate_usd_per_hour,
            "cost_since": row.cost_since,
            "money_due_at": row.money_due_at,
        }
    rows_update(Instance.objects.all(), values)


def ledger_observe(rows: Sequence[Instance], *, at: datetime) -> None:
    """Rows whose upstream status (row.upstream_status, as listed at `at`) changed."""
    # A spot instance's upstream status reads "<status>/<spotStatus>" (decisions.observed).
    observations = [
        _observation(row, ledger.phase_of(row.upstream_status.partition("/")[0])) for row in rows
    ]
    _copy(rows, billing_observe(observations=observations, at=at))


def ledger_close(rows: Sequence[Instance], *, at: datetime) -> None:
    """Rows with nothing left upstream: nothing is billed from `at` on."""
    observations = [_observation(row, "") for row in rows]
    _copy(rows, billing_observe(observations=observations, at=at, closing=True))
