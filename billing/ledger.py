"""The ledger's arithmetic, pure: which upstream statuses bill what, and what a stretch costs.

Units never mix: prices are integers of 1/100000 USD (per card-hour for compute, per GB-day for
a stopped instance's disk), as the catalog holds them; Novita's bills are in 1/10000 USD
(novitai.novita.parsing turns them into USD). Everything here is USD as exact Decimals, rounded
only where a figure is shown (`usd6`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from billing.models import Phase

PRICE_UNITS_PER_USD = Decimal(100_000)
HOUR = Decimal(3600)
DAY = Decimal(86400)
MICRO = Decimal("0.000001")
# Upstream statuses Novita bills compute in: from pulling until a stop completes (exited) or a
# delete is accepted (docs/novita-api.md §7.1). `exited` bills the local disk instead.
COMPUTE_STATUSES = frozenset(
    {"pulling", "running", "toStop", "stopping", "toRestart", "restarting", "starting"}
)
DISK_STATUSES = frozenset({"exited"})


def phase_of(upstream_status: str) -> str:
    if upstream_status in COMPUTE_STATUSES:
        return Phase.COMPUTE
    if upstream_status in DISK_STATUSES:
        return Phase.DISK
    return Phase.NONE


def seconds_between(start: datetime, end: datetime) -> Decimal:
    """Exact (to the microsecond), never negative."""
    delta = end - start
    micro = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return max(Decimal(micro) / 1_000_000, Decimal(0))


def period(phase: str) -> Decimal:
    """Seconds in the unit a price is quoted per: an hour for compute, a day for disk."""
    return HOUR if phase == Phase.COMPUTE else DAY


def cost_usd(phase: str, unit_price: int, units: int, seconds: Decimal) -> Decimal:
    if phase == Phase.NONE:
        return Decimal(0)
    return Decimal(unit_price) * units * seconds / period(phase) / PRICE_UNITS_PER_USD


def rate_usd_per_hour(phase: str, unit_price: int, units: int) -> Decimal:
    return cost_usd(phase, unit_price, units, HOUR)


def usd6(value: Decimal | int) -> Decimal:
    """USD to the micro-dollar, half up: how costs are shown and reported."""
    return Decimal(value).quantize(MICRO, rounding=ROUND_HALF_UP)


def usd_units(value: Decimal) -> int:
    """USD as the catalog's 1/100000 units (exact for a catalog price)."""
    return int((value * PRICE_UNITS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def money_text(value: Decimal | int) -> str:
    """A figure as a fixed six-decimal string ("0.012345")."""
    return format(usd6(value), "f")
