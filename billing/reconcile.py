"""Reconciliation: the ledger against Novita's usage bills (docs/novita-api.md §7.2).

One `bill/list` call (hourly cycle, GPU category) for the window gives every owner's rows; for
each instance the ledger billed in the window, its bill (the rows' amounts, 1/10000 USD each,
parsed to USD) is compared with the ledger's cost within the window. A difference over
RECONCILE_DRIFT_PERCENT (1 %) of the bill and over RECONCILE_DRIFT_MIN_USD ($0.01) is a drift:
a `Drift` row (the admin), counted in `novitai_ledger_drifts_total`, and answered, for
instances to record as an event on the instance.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from prometheus_client import Counter

from billing.ledger import usd6
from billing.models import Drift, Segment
from billing.selectors import segment_pieces, segments_overlapping
from novitai.novita.client import NovitaClient

DRIFTS = Counter(
    "novitai_ledger_drifts_total",
    "Instances whose ledger differs from Novita's bill over a reconciled window.",
)


@dataclass(frozen=True)
class Reconciled:
    checked: int
    drifts: list[Drift]


def ledger_reconcile(*, client: NovitaClient, start: datetime, end: datetime) -> Reconciled:
    """Compares the ledger with Novita's bills over [start, end) (at most 31 days)."""
    ledger: dict[str, Decimal] = defaultdict(Decimal)
    owners: dict[str, Segment] = {}
    for segment in segments_overlapping(start, end).exclude(novita_instance_id=""):
        owners.setdefault(segment.novita_instance_id, segment)
        for _, cost in segment_pieces(segment, start, end, now=end, by_day=False):
            ledger[segment.novita_instance_id] += cost
    if not owners:
        return Reconciled(0, [])
    bills = client.list_bills(
        cycle_type="Hour",
        start_time=int(start.timestamp()),
        end_time=int(end.timestamp()),
        product_category="gpu",
    )
    billed: dict[str, Decimal] = defaultdict(Decimal)
    for bill in bills:
        billed[bill.owner_id] += bill.amount_usd
    percent = Decimal(str(settings.RECONCILE_DRIFT_PERCENT)) / 100
    floor = Decimal(str(settings.RECONCILE_DRIFT_MIN_USD))
    drifts: list[Drift] = []
    for owner, segment in owners.items():
        ours, theirs = usd6(ledger[owner]), usd6(billed[owner])
        gap = abs(ours - theirs)
        if gap > floor and gap > theirs * percent:
            drifts.append(
                Drift(
                    instance_id=segment.instance_id,
                    tenant_id=segment.tenant_id,
                    novita_instance_id=owner,
                    window_start=start,
                    window_end=end,
                    ledger_usd=ours,
                    billed_usd=theirs,
                    found_at=end,
                )
            )
    Drift.objects.bulk_create(drifts)
    if drifts:
        DRIFTS.inc(len(drifts))
    return Reconciled(len(owners), drifts)
