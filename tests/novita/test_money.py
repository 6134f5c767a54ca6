"""Bills, the balance and stopped-disk prices through the client: Decimal USD, exactly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.config import NovitaConfig, core_base_url_from
from novitai.novita.errors import MalformedResponse, QuotaExceeded, RejectedInput
from novitai.novita.types import Balance, Bill
from tests.novita.conftest import CORE, Canned, OddNovita, api_calls, create_request
from tests.sandbox.helpers import frozen_at, instant_timing

HOUR = 3600


@pytest.fixture
def hour(sandbox: SandboxControl) -> float:
    """Statuses pass at once, no seed volume, the clock frozen a minute into an hour."""
    instant_timing(sandbox)
    NovitaClient(NovitaConfig(sandbox.api_base, sandbox.api_key)).delete_network_storage(
        "ns-7f3c21"
    )
    return frozen_at(sandbox, HOUR, past=60)


@pytest.mark.parametrize(
    ("base", "core"),
    [
        ("https://api.novita.ai/gpu-instance/openapi/v1", "https://api.novita.ai/openapi/v1"),
        ("http://127.0.0.1:8765/gpu-instance/openapi/v1/", "http://127.0.0.1:8765/openapi/v1"),
        ("https://proxy.example/novita/v1", "https://proxy.example/openapi/v1"),
    ],
)
def test_the_core_base_url_is_derived(base: str, core: str) -> None:
    assert core_base_url_from(base) == core
    assert NovitaConfig(base, "k").core_base_url == core


def test_the_core_base_url_can_be_given(settings: Any) -> None:
    settings.NOVITA_API_BASE_URL = "https://api.novita.ai/gpu-instance/openapi/v1"
    settings.NOVITA_CORE_API_BASE_URL = ""
    assert NovitaConfig.from_settings().core_base_url == "https://api.novita.ai/openapi/v1"
    settings.NOVITA_CORE_API_BASE_URL = "https://billing.example/openapi/v1/"
    assert NovitaConfig.from_settings().core_base_url == "https://billing.example/openapi/v1"


def test_ninety_seconds_of_two_cards(
    client: NovitaClient, sandbox: SandboxControl, hour: float
) -> None:
    instance_id = client.create_instance(create_request(gpu_num=2))  # RTX 4090 at 34000
    sandbox.advance_clock(90)
    client.delete_instance(instance_id)
    start = int(hour - 60)
    assert client.list_bills(
        cycle_type="Hour", start_time=start, end_time=start + HOUR, owner_id=instance_id
    ) == [
        Bill(
            owner_id=instance_id,
            product_name="RTX 4090 24GB",
            category="gpu",
            billing_method="onDemand",
            start_time=start,
            end_time=start + HOUR,
            quantity=Decimal("0.05"),  # card-hours
            unit_price=Decimal(34000),
            price_precision=5,
            amount_usd=Decimal("0.0170"),  # 170 of 1/10000 USD
            pay_amount_usd=Decimal("0.0170"),
            voucher_amount_usd=Decimal("0"),
        )
    ]
    assert api_calls(sandbox, "/openapi/v1/billing/bill/list", "GET")[0]["status"] == 200


def test_a_bill_row_knows_its_unit_price_in_usd(
    client: NovitaClient, sandbox: SandboxControl, hour: float
) -> None:
    instance_id = client.create_instance(create_request(billing_mode="spot"))
    sandbox.advance_clock(HOUR)
    [bill] = client.list_bills(
        cycle_type="Day",
        start_time=int(hour) - 60,
        end_time=int(hour) + HOUR,
        product_category="gpu",
    )
    assert (bill.owner_id, bill.billing_method, bill.unit_price_usd) == (
        instance_id,
        "spot",
        Decimal("0.17000"),
    )
    assert bill.amount_usd == Decimal("0.1700")


def test_the_balance_goes_down_with_the_bill(
    client: NovitaClient, sandbox: SandboxControl, hour: float
) -> None:
    sandbox.set_balance(cash=100000, credit_limit=5000)
    assert client.balance() == Balance(
        available_usd=Decimal("10.5000"),
        cash_usd=Decimal("10.0000"),
        credit_limit_usd=Decimal("0.5000"),
        outstanding_invoices_usd=Decimal("0"),
    )
    instance_id = client.create_instance(create_request())
    sandbox.advance_clock(HOUR)
    client.delete_instance(instance_id)
    assert client.balance().cash_usd == Decimal("9.6600")


def test_an_empty_balance_refuses_creates(client: NovitaClient, sandbox: SandboxControl) -> None:
    sandbox.set_balance(cash=0)
    with pytest.raises(QuotaExceeded) as caught:
        client.create_instance(create_request())
    assert (caught.value.status, caught.value.reason) == (400, "BALANCE_NOT_ENOUGH")
    assert sandbox.instances() == []
    assert len(api_calls(sandbox, "/gpu/instance/create")) == 1  # not retried


def test_a_bad_bill_query_is_rejected(client: NovitaClient, sandbox: SandboxControl) -> None:
    with pytest.raises(RejectedInput) as caught:
        client.list_bills(cycle_type="Hour", start_time=0, end_time=32 * 86400)
    assert caught.value.reason == "VALIDATOR_PARAM"
    assert len(api_calls(sandbox, "/openapi/v1/billing/bill/list")) == 1


def test_products_carry_the_stopped_disk_price(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_prices("4090.16c62g.sim", exitedLocalStoragePrice=700)
    [product] = client.list_products(product_name="4090")
    assert product.exited_local_storage_price == 700
    assert product.exited_local_storage_usd_per_gb_day == Decimal("0.007")


# --- odd answers ---------------------------------------------------------------------------------


def test_money_as_strings_and_floats_converts_exactly(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    row = {
        "ownerID": "9c41e07ab25d6f13",
        "productName": "RTX 4090 24GB",
        "category": "gpu",
        "startTime": 1754035200,
        "endTime": "1754038800",
        "billingMethod": "onDemand",
        "billNum0": "0.05",
        "discountPrice0": "34000",
        "amount": "170",
        "payAmount": 170.5,
        "voucherAmount": "",
        "pricePrecision": "5",
        "somethingNew": {"x": 1},
    }
    odd_novita.on("GET", "/billing/bill/list", Canned(200, [row]), surface=CORE)
    [bill] = odd_client.list_bills(cycle_type="Hour", start_time=1, end_time=2)
    assert (bill.start_time, bill.end_time, bill.quantity) == (
        1754035200,
        1754038800,
        Decimal("0.05"),
    )
    assert (bill.amount_usd, bill.pay_amount_usd, bill.voucher_amount_usd) == (
        Decimal("0.0170"),
        Decimal("0.01705"),
        Decimal("0"),
    )
    (seen,) = odd_novita.seen("/billing/bill/list", surface=CORE)
    assert seen.query == {"cycleType": ["Hour"], "startTime": ["1"], "endTime": ["2"]}
    assert seen.headers["Authorization"] == "Bearer odd-novita-key"
    odd_novita.on(
        "GET",
        "/billing/balance/detail",
        Canned(200, {"data": {"availableBalance": "12345678", "cashBalance": 1.5}}),
        surface=CORE,
    )
    assert odd_client.balance() == Balance(
        available_usd=Decimal("1234.5678"),
        cash_usd=Decimal("0.00015"),
        credit_limit_usd=Decimal("0"),
        outstanding_invoices_usd=Decimal("0"),
    )


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"amount": "a lot"}]},
        {"data": [{"amount": True}]},
        {"data": [{"amount": "NaN"}]},
        {"data": {"amount": 1}},
        '"not a bill"',  # a JSON string
    ],
)
def test_unreadable_bills_are_malformed(
    odd_novita: OddNovita, odd_client: NovitaClient, body: Any
) -> None:
    odd_novita.on("GET", "/billing/bill/list", Canned(200, body), surface=CORE)
    with pytest.raises(MalformedResponse):
        odd_client.list_bills(cycle_type="Hour", start_time=1, end_time=2)


def test_the_client_follows_a_changed_core_url(novita_settings: SandboxControl, fast: Any) -> None:
    fast.NOVITA_CORE_API_BASE_URL = novita_settings.url + "/nowhere/openapi/v1"
    with pytest.raises(MalformedResponse):  # the sandbox's plain 404 page
        get_client().balance()
