"""Novita's bills from the sandbox's own clock and history (novita-api.md §7.1, §7.2).

What is charged (state.Sandbox.usages_locked turns instances and volumes into Usage pieces):

- compute: the product's unit price (`price`, or `spotPrice` for spot) x cards x time, to the
  second, while the instance is in a billed status (from `pulling` until it is `exited`, or until
  its delete is accepted);
- a stopped instance's local disk: `exitedLocalStoragePrice` x its rootfsSize GB x time while it
  is `exited`, until it starts again or is deleted;
- network storage: its cluster's price x its size GB x time from create to delete;
- a monthly instance: its monthly price x cards, once, when it is created.

Units never mix: prices are integers of 1/100000 USD (per card-hour, per GB-day); bill money
(`amount`, `payAmount`, `voucherAmount`, the balance) is integers of 1/10000 USD. Each row's
amount is rounded half up on its own; quantities and prices are exact fractions until then.

Everything here is pure: timelines in, rows out. A timeline is a list of (at, value), sorted by
`at`, each value in effect from its `at` until the next one's (the first from the beginning).
"""

from __future__ import annotations

import calendar
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, TypeVar

T = TypeVar("T")
Timeline = list[tuple[float, T]]

HOUR = 3600
DAY = 86400
WEEK = 7 * DAY
MONDAY = 4 * DAY  # 1970-01-05, the first Monday after the epoch: weeks start on Mondays (UTC)
CYCLES = ("Hour", "Day", "Week", "Month")
PRICE_PRECISION = 5  # discountPrice0 is in 1/10^5 USD per unit, like the product prices
PRICE_TO_MONEY = 10  # 1/100000 USD -> 1/10000 USD
MAX_WINDOW_S = 31 * DAY

GPU = "gpu"
CLOUD_STORAGE = "cloud_storage"
NETWORK_STORAGE_PRODUCT = "Network Storage"


def value_at(timeline: Sequence[tuple[float, T]], at: float) -> T:
    value = timeline[0][1]
    for start, candidate in timeline:
        if start > at:
            break
        value = candidate
    return value


def pieces(
    start: float, end: float, *timelines: Sequence[tuple[float, Any]]
) -> Iterator[tuple[float, float, tuple[Any, ...]]]:
    """[start, end) cut where any timeline changes: (a, b, (value of each timeline))."""
    cuts = sorted({at for timeline in timelines for at, _ in timeline if start < at < end})
    bounds = [start, *cuts, end]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            yield a, b, tuple(value_at(timeline, a) for timeline in timelines)


def bucket(at: float, cycle: str) -> tuple[float, float]:
    """The cycle period holding `at`, UTC: [start, end)."""
    if cycle == "Hour":
        start = math.floor(at / HOUR) * HOUR
        return start, start + HOUR
    if cycle == "Day":
        start = math.floor(at / DAY) * DAY
        return start, start + DAY
    if cycle == "Week":
        start = math.floor((at - MONDAY) / WEEK) * WEEK + MONDAY
        return start, start + WEEK
    moment = datetime.fromtimestamp(at, UTC)
    first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    return first.timestamp(), first.timestamp() + days * DAY


@dataclass(frozen=True)
class Usage:
    """A piece of chargeable use with one unit price: `per_second` units a second over
    [start, end), or `lump` units at `start` (a monthly subscription)."""

    owner_id: str
    product_name: str
    category: str
    billing_method: str
    unit_price: int  # 1/100000 USD per unit (card-hour, GB-day, card-month)
    start: float
    end: float
    per_second: Fraction = Fraction(0)
    lump: Fraction = Fraction(0)


@dataclass
class Row:
    owner_id: str
    product_name: str
    category: str
    billing_method: str
    unit_price: int
    start: float
    end: float
    quantity: Fraction = field(default=Fraction(0))

    @property
    def amount(self) -> int:
        """1/10000 USD, rounded half up."""
        exact = self.unit_price * self.quantity / PRICE_TO_MONEY
        return math.floor(exact + Fraction(1, 2))

    def wire(self) -> dict[str, Any]:
        amount = self.amount
        return {
            "ownerID": self.owner_id,
            "productName": self.product_name,
            "category": self.category,
            "startTime": str(int(self.start)),
            "endTime": str(int(self.end)),
            "billingMethod": self.billing_method,
            "billNum0": round(float(self.quantity), 6),
            "discountPrice0": self.unit_price,
            "amount": amount,
            "payAmount": amount,
            "voucherAmount": 0,
            "pricePrecision": PRICE_PRECISION,
        }


def rows(usages: Iterable[Usage], cycle: str, start: float, end: float) -> list[Row]:
    """Usage within [start, end), one row per cycle period, owner, product, method and price."""
    table: dict[tuple[Any, ...], Row] = {}

    def add(period: tuple[float, float], usage: Usage, quantity: Fraction) -> None:
        lo, hi = max(period[0], start), min(period[1], end)
        key = (
            lo,
            usage.owner_id,
            usage.product_name,
            usage.category,
            usage.billing_method,
            usage.unit_price,
        )
        row = table.get(key)
        if row is None:
            row = table[key] = Row(
                usage.owner_id,
                usage.product_name,
                usage.category,
                usage.billing_method,
                usage.unit_price,
                lo,
                hi,
            )
        row.quantity += quantity

    for usage in usages:
        if usage.lump:
            if start <= usage.start < end:
                add(bucket(usage.start, cycle), usage, usage.lump)
            continue
        a, b = max(usage.start, start), min(usage.end, end)
        while a < b:
            period = bucket(a, cycle)
            cut = min(b, period[1])
            add(period, usage, usage.per_second * (Fraction(cut) - Fraction(a)))
            a = cut
    return sorted(
        (row for row in table.values() if row.quantity),
        key=lambda r: (r.start, r.owner_id, r.category, r.product_name, r.unit_price),
    )


def total(usages: Iterable[Usage], end: float) -> int:
    """What was billed up to `end`, 1/10000 USD: the sum of the hourly rows (each rounded)."""
    return sum(row.amount for row in rows(usages, "Hour", 0.0, end))


def cost_ceil(unit_price: int, units: int) -> int:
    """`units` at `unit_price`, 1/10000 USD rounded up (what a create needs in the balance)."""
    return math.ceil(Fraction(unit_price * units, PRICE_TO_MONEY))
