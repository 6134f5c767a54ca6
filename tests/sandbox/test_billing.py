"""Novita's bills and balance (novita-api.md §7.1, §7.2), from the sandbox's own clock.

Prices are 1/100000 USD (per card-hour, per GB-day); bill money is 1/10000 USD. The clock is
frozen and moved by hand, so every figure is exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from novita_sandbox.control import SandboxControlError
from tests.sandbox.helpers import VALID_CREATE, Api, frozen_at, http, instant_timing

HOUR, DAY = 3600, 86400
CYCLES = "cycleType must be one of Hour, Day, Week, Month"


def bills(api: Api, start: float, end: float, cycle: str = "Hour", **params: Any) -> Any:
    answer = api.core_get(
        "/billing/bill/list", cycleType=cycle, startTime=int(start), endTime=int(end), **params
    )
    assert answer.status == 200, answer
    return answer.body["data"]


def row(owner: str, start: float, end: float, **fields: Any) -> dict[str, Any]:
    amount = fields.pop("amount")
    return {
        "ownerID": owner,
        "productName": "RTX 4090 24GB",
        "category": "gpu",
        "startTime": str(int(start)),
        "endTime": str(int(end)),
        "billingMethod": "onDemand",
        "amount": amount,
        "payAmount": amount,
        "voucherAmount": 0,
        "pricePrecision": 5,
        **fields,
    }


@pytest.fixture
def hour(api: Api) -> float:
    """Statuses pass at once; the clock is frozen one minute into an hour."""
    instant_timing(api.control)
    api.post("/networkstorage/delete", {"storageId": "ns-7f3c21"})  # the seed volume bills too
    return frozen_at(api.control, HOUR, past=60)


def test_ninety_seconds_of_two_cards(api: Api, hour: float) -> None:
    iid = api.create(gpuNum=2)  # RTX 4090: 34000 per card-hour = $0.34
    api.control.advance_clock(90)
    api.action("stop", iid)
    api.control.advance_clock(60)
    start = hour - 60
    # 34000 x 2 cards x 90 s / 3600 = 1700 (1/100000 USD) = 170 (1/10000 USD) = $0.017
    assert bills(api, start, start + HOUR, ownerId=iid) == [
        row(iid, start, start + HOUR, billNum0=0.05, discountPrice0=34000, amount=170),
        # stopped: 60 GB of local disk for 60 s at 500 per GB-day
        row(
            iid,
            start,
            start + HOUR,
            productName="RTX 4090 24GB Local Storage",
            billNum0=0.041667,  # 60 GB x 60 s / 86400
            discountPrice0=500,
            amount=2,  # 500 x 60 x 60 / 86400 / 10 = 2.08
        ),
    ]


def test_spot_is_billed_at_the_spot_price_per_hour(api: Api, hour: float) -> None:
    iid = api.create(billingMode="spot")  # spotPrice "17000"
    api.control.advance_clock(HOUR)
    api.action("delete", iid)
    start = hour - 60
    hourly = bills(api, start, start + 2 * HOUR, ownerId=iid)
    # 59 minutes in the first hour, 1 in the next; each row is rounded on its own
    assert [
        (r["startTime"], r["billingMethod"], r["discountPrice0"], r["amount"]) for r in hourly
    ] == [
        (str(int(start)), "spot", 17000, 1672),  # 1700 x 59/60 = 1671.67
        (str(int(start + HOUR)), "spot", 17000, 28),  # 1700 x 1/60 = 28.33
    ]
    [daily] = bills(api, start, start + 2 * HOUR, "Day", ownerId=iid)
    assert (daily["billNum0"], daily["amount"]) == (1, 1700)


def test_billing_starts_at_pulling_and_stops_at_exited(api: Api, hour: float) -> None:
    instant_timing(api.control, to_create=10, creating=20, pulling=30, to_stop=5, stopping=15)
    iid = api.create()
    api.control.advance_clock(100)  # running since 60 s
    api.action("stop", iid)  # billed while toStop and stopping: 20 s more
    api.control.advance_clock(30)
    [compute, disk] = bills(api, hour - 60, hour + HOUR, ownerId=iid)
    assert compute["billNum0"] == round(90 / 3600, 6)  # from pulling (30 s in) to exited (120 s)
    assert compute["amount"] == 85  # 34000 x 90 / 36000
    assert disk["billNum0"] == round(60 * 10 / 86400, 6)  # exited for the last 10 s


def test_hour_and_day_cycles_bucket_the_same_use(api: Api) -> None:
    instant_timing(api.control)
    day = frozen_at(api.control, DAY, past=23 * HOUR + 30 * 60)  # 23:30 UTC
    iid = api.create(gpuNum=4)
    api.control.advance_clock(HOUR)  # until 00:30 the next day
    api.action("delete", iid)
    compute = {"productName": "RTX 4090 24GB", "category": "gpu"}
    hourly = [r for r in bills(api, day - 23.5 * HOUR, day + 2 * HOUR) if r["ownerID"] == iid]
    assert [(r["startTime"], r["billNum0"], r["amount"]) for r in hourly] == [
        (str(int(day - 30 * 60)), 2, 6800),
        (str(int(day + 30 * 60)), 2, 6800),
    ]
    daily = bills(api, day - 23.5 * HOUR, day + 0.5 * HOUR + DAY, "Day", ownerId=iid)
    assert [(r["startTime"], r["endTime"], r["amount"]) for r in daily] == [
        (str(int(day - 23.5 * HOUR)), str(int(day + 0.5 * HOUR)), 6800),
        (str(int(day + 0.5 * HOUR)), str(int(day + 0.5 * HOUR + DAY)), 6800),
    ]
    assert all(r.items() >= compute.items() for r in daily)


def test_a_price_change_is_billed_from_then_on(api: Api, hour: float) -> None:
    iid = api.create()
    api.control.advance_clock(30 * 60)
    prices = api.control.set_prices("4090.16c62g.sim", price=40000)
    assert prices["products"][0] == {
        "productId": "4090.16c62g.sim",
        "price": 40000,
        "spotPrice": 17000,
        "exitedLocalStoragePrice": 500,
    }
    [product] = api.get("/products", productName="4090").body["data"]
    assert product["price"] == 40000
    api.control.advance_clock(15 * 60)
    rows = bills(api, hour - 60, hour - 60 + HOUR, ownerId=iid)
    assert [(r["discountPrice0"], r["billNum0"], r["amount"]) for r in rows] == [
        (34000, 0.5, 1700),
        (40000, 0.25, 1000),
    ]
    assert api.control.set_prices("4090.16c62g.sim", price=34000)["products"][0]["price"] == 34000


def test_a_monthly_instance_is_billed_once_at_create(api: Api, hour: float) -> None:
    iid = api.create(billingMode="monthly", month=1, gpuNum=2)
    api.control.advance_clock(2 * HOUR)
    rows = bills(api, hour - 60, hour + 2 * HOUR, ownerId=iid)
    assert [
        (r["billingMethod"], r["billNum0"], r["discountPrice0"], r["amount"]) for r in rows
    ] == [
        ("monthly", 2, 21500000, 4300000)  # $215 a card
    ]


def test_network_storage_is_billed_per_gb_day(api: Api) -> None:
    instant_timing(api.control)
    api.post("/networkstorage/delete", {"storageId": "ns-7f3c21"})
    day = frozen_at(api.control, DAY)
    storage_id = api.post(
        "/networkstorage/create", {"clusterId": "eu-nl-1", "storageName": "ds", "storageSize": 50}
    ).body
    api.control.advance_clock(12 * HOUR)
    api.post("/networkstorage/update", {"storageId": storage_id, "storageSize": 100})
    api.control.advance_clock(6 * HOUR)
    api.control.set_storage_price("eu-nl-1", 400)
    api.control.advance_clock(6 * HOUR)
    api.post("/networkstorage/delete", {"storageId": storage_id})
    api.control.advance_clock(HOUR)
    rows = bills(api, day, day + DAY + HOUR, "Day", productCategory="cloud_storage")
    volume = {
        "ownerID": storage_id,
        "productName": "Network Storage",
        "category": "cloud_storage",
        "startTime": str(int(day)),
        "endTime": str(int(day + DAY)),
        "billingMethod": "onDemand",
        "voucherAmount": 0,
        "pricePrecision": 5,
    }
    assert rows == [
        # 50 GB x 12 h + 100 GB x 6 h = 50 GB-days at 200: $0.10
        {**volume, "billNum0": 50.0, "discountPrice0": 200, "amount": 1000, "payAmount": 1000},
        # 100 GB x 6 h at the new price
        {**volume, "billNum0": 25.0, "discountPrice0": 400, "amount": 1000, "payAmount": 1000},
    ]
    assert bills(api, day, day + DAY, "Day", productCategory="gpu") == []


def test_filters_and_the_empty_bill(api: Api, hour: float) -> None:
    a = api.create()
    b = api.create(productId="4080s.12c46g.sim")
    api.control.advance_clock(HOUR)
    window = (hour - 60, hour - 60 + HOUR)
    assert {r["ownerID"] for r in bills(api, *window)} == {a, b}
    assert [r["ownerID"] for r in bills(api, *window, productName="4080 super")] == [b]
    assert bills(api, *window, ownerId="0000000000000000") == []
    assert bills(api, hour - 60 - DAY, hour - 60 - DAY + HOUR) == []  # before anything ran


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"startTime": 0, "endTime": 3600}, CYCLES),
        ({"cycleType": "Year", "startTime": 0, "endTime": 3600}, CYCLES),
        ({"cycleType": "Hour", "endTime": 3600}, "startTime is required"),
        ({"cycleType": "Hour", "startTime": "x", "endTime": 3600}, "startTime must be an integer"),
        (
            {"cycleType": "Hour", "startTime": 7200, "endTime": 3600},
            "endTime must be after startTime",
        ),
        (
            {"cycleType": "Day", "startTime": 0, "endTime": 31 * DAY + 1},
            "the time window must be at most 2678400 seconds",
        ),
    ],
)
def test_bad_bill_queries_are_validator_param(
    api: Api, params: dict[str, Any], message: str
) -> None:
    answer = api.core_get("/billing/bill/list", **params)
    assert (answer.status, answer.body["reason"]) == (400, "VALIDATOR_PARAM")
    assert answer.body["message"] == message


def test_a_window_of_31_days_is_allowed(api: Api) -> None:
    answer = api.core_get("/billing/bill/list", cycleType="Month", startTime=0, endTime=31 * DAY)
    assert (answer.status, answer.body) == (200, {"data": []})


def test_the_core_surface_is_its_own(api: Api) -> None:
    assert http("GET", api.control.core_api_base + "/billing/balance/detail", key="x").status == 401
    wrong = api.get("/billing/balance/detail")  # not under /gpu-instance/openapi/v1
    assert (wrong.status, wrong.body["reason"]) == (404, "NOT_FOUND")
    api.core_get("/billing/balance/detail")
    assert api.control.stats()["calls"] == {
        "GET /billing/balance/detail": {"404": 1},
        "GET /openapi/v1/billing/balance/detail": {"200": 1, "401": 1},
    }


# --- the balance ----------------------------------------------------------------------------------


def test_the_balance_goes_down_with_what_is_billed(api: Api, hour: float) -> None:
    start = api.control.set_balance(cash=100000, credit_limit=20000)  # $10 and $2 of credit
    assert api.core_get("/billing/balance/detail").body == {
        "availableBalance": 120000,
        "cashBalance": 100000,
        "creditLimit": 20000,
        "outstandingInvoices": 0,
    }
    iid = api.create()
    api.control.advance_clock(HOUR)
    api.action("delete", iid)
    assert api.core_get("/billing/balance/detail").body == {
        "availableBalance": 116600,
        "cashBalance": 96600,  # $9.66: an hour at $0.34
        "creditLimit": 20000,
        "outstandingInvoices": 0,
    }
    assert api.control.balance()["billed"] - start["billed"] == 3400


def test_what_is_spent_beyond_the_cash_is_owed(api: Api, hour: float) -> None:
    api.control.set_balance(cash=5000)
    iid = api.create()
    api.control.advance_clock(2 * HOUR)
    api.action("delete", iid)
    assert api.core_get("/billing/balance/detail").body == {
        "availableBalance": -1800,
        "cashBalance": 0,
        "creditLimit": 0,
        "outstandingInvoices": 1800,
    }


def test_creates_and_starts_need_an_hour_in_the_balance(api: Api, hour: float) -> None:
    api.control.set_balance(cash=6799)
    refused = api.post("/gpu/instance/create", {**VALID_CREATE, "gpuNum": 2})  # an hour: 6800
    assert (refused.status, refused.body) == (
        400,
        {
            "code": 400,
            "reason": "BALANCE_NOT_ENOUGH",
            "message": "balance not enough",
            "metadata": {},
        },
    )
    assert api.control.instances() == []
    iid = api.create(gpuNum=1)  # 3400
    api.action("stop", iid)
    api.control.set_balance(cash=3399)
    assert api.action("start", iid).body["reason"] == "BALANCE_NOT_ENOUGH"
    assert api.instance(iid)["status"] == "exited"
    api.control.set_balance(credit_limit=1)
    assert api.action("start", iid).status == 200


def test_a_monthly_create_needs_the_whole_subscription(api: Api, hour: float) -> None:
    api.control.set_balance(cash=2149999)
    answer = api.post(
        "/gpu/instance/create", {**VALID_CREATE, "billingMode": "monthly", "month": 1}
    )
    assert answer.body["reason"] == "BALANCE_NOT_ENOUGH"
    api.control.set_balance(cash=2150000)
    assert api.create(billingMode="monthly", month=1)


def test_bad_balance_and_price_changes_are_refused(api: Api) -> None:
    before = api.control.balance()
    for call in (
        lambda: api.control.set_balance(cash=-1),
        lambda: api.control.set_prices("4090.16c62g.sim", price=1.5),  # type: ignore[arg-type]
        lambda: api.control.set_prices("nope", price=1),
        lambda: api.control.set_prices("4090.16c62g.sim", cost=1),
        lambda: api.control.set_storage_price("eu-de-1", 100),  # no network storage there
    ):
        with pytest.raises(SandboxControlError) as error:
            call()
        assert error.value.status == 400
    assert api.control.balance()["cashBalance"] == before["cashBalance"]
    assert api.control.prices()["products"][0]["price"] == 34000


def test_settled_hourly_bills_show_only_ended_hours(api: Api, hour: float) -> None:
    api.control.set_fidelity(bills_settle_hourly=True)
    iid = api.create()
    api.control.advance_clock(30 * 60)
    assert bills(api, hour - 60, hour + DAY, ownerId=iid) == []
    billed = api.control.balance()["billed"]
    api.control.advance_clock(HOUR)  # the first hour has ended
    [settled] = bills(api, hour - 60, hour + DAY, ownerId=iid)
    assert (settled["startTime"], settled["amount"]) == (str(int(hour - 60)), 3343)  # 59 min
    assert api.control.balance()["billed"] - billed == 3343


def test_reset_restores_prices_and_balance(api: Api) -> None:
    api.control.set_prices("4090.16c62g.sim", price=1)
    api.control.set_balance(cash=0)
    api.control.reset()
    assert api.control.prices()["products"][0]["price"] == 34000
    assert api.control.balance()["cashBalance"] == 10_000_000_000 - api.control.balance()["billed"]
