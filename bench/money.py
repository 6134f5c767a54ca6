"""Scenario 7: the cost ledger at scale. N instances (half on demand, half spot) run in the
sandbox; monitoring passes in this process (as scenario 2 runs them) feed the ledger; after
`seconds` of running they are deleted and followed to terminated. Then:

- ledger error: each instance's ledger cost against what the sandbox's bill/list charges its
  upstream instance (one hourly, GPU-category call for the window): max and mean relative error;
- the money sweep's cost: its queries per pass with N instances carrying caps and lifetimes not
  yet due, against the same with one instance (they do not grow with instances).

`measure` needs Django set up against a database holding a tenant named "bench", and the Novita
client pointed at the sandbox (the runner's stack does both; tests/billing/test_bench.py runs it
with a tiny N against the test database).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bench.client import Http, in_parallel
from bench.report import Scenario, at_most, equal, info
from bench.stack import SANDBOX_KEY, Stack, say

PRODUCT_ID = "4090.16c62g.sim"
PRODUCT = "RTX 4090 24GB"
PRICES = {"on_demand": 34000, "spot": 17000}  # the sandbox's, 1/100000 USD per card-hour
DISK_PRICE = 500  # 1/100000 USD per GB-day
CREATE: dict[str, Any] = {
    "productId": PRODUCT_ID,
    "gpuNum": 1,
    "rootfsSize": 60,
    "imageUrl": "ghcr.io/example/pytorch-lab:2.4",
    "ports": "8888/http",
    "clusterId": "us-tx-2",
    "kind": "gpu",
}


def _seed(n: int, novita_api: Http) -> list[tuple[uuid.UUID, str]]:
    """n sandbox instances and n rows of ours in `starting` that own them, their prices
    captured as a create captures them."""
    from django.utils import timezone

    from billing.services import Prices, account_prices_capture
    from instances.models import Instance, InstanceStatus
    from instances.services import novita_name_for
    from tenants.models import Tenant

    tenant = Tenant.objects.get(name="bench")
    ids = [uuid.uuid4() for _ in range(n)]
    modes = {pk: ("spot" if i % 2 else "on_demand") for i, pk in enumerate(ids)}

    def create(instance_id: uuid.UUID) -> str:
        mode = "spot" if modes[instance_id] == "spot" else "onDemand"
        body = {**CREATE, "name": novita_name_for(instance_id), "billingMode": mode}
        return str(novita_api.post("/gpu/instance/create", body)["id"])

    novita_ids = in_parallel(ids, create, threads=8)
    now = timezone.now()
    Instance.objects.bulk_create(
        [
            Instance(
                id=pk,
                tenant=tenant,
                name=f"money-{i:05d}",
                status=InstanceStatus.STARTING,
                template_id="212",
                product_names=[PRODUCT],
                rootfs_size=60,
                billing_mode=modes[pk],
                novita_name=novita_name_for(pk),
                novita_instance_id=novita_id,
                novita_product_id=PRODUCT_ID,
                product_name=PRODUCT,
                region="US-TX-02",
                cluster_id="us-tx-2",
                provisioned_at=now,
                phase_deadline_at=now + timedelta(hours=1),
            )
            for i, (pk, novita_id) in enumerate(zip(ids, novita_ids, strict=True))
        ],
        batch_size=1000,
    )
    for pk in ids:
        account_prices_capture(
            instance_id=pk,
            tenant=tenant,
            prices=Prices(PRODUCT, "US-TX-02", modes[pk], PRICES[modes[pk]], 1, DISK_PRICE, 60),
            at=now,
        )
    return list(zip(ids, novita_ids, strict=True))


def _passes_until(done: Any, timeout: float) -> None:
    from instances.monitoring import monitor_pass

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("the instances did not get there in time")
        monitor_pass()


def sweep_queries(n_due_later: int) -> int:
    """Queries of one money sweep pass with n instances whose caps and expiries are not due."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from instances.models import Instance
    from instances.money import instances_money_sweep

    later = timezone.now() + timedelta(days=1)
    pks = list(Instance.objects.values_list("pk", flat=True)[:n_due_later])
    Instance.objects.update(money_due_at=None)
    Instance.objects.filter(pk__in=pks).update(
        expires_at=later, max_spend_usd=Decimal("100.00"), money_due_at=later
    )
    with CaptureQueriesContext(connection) as queries:
        instances_money_sweep()
    return len(queries.captured_queries)


def measure(*, count: int, seconds: float, novita_api: Http) -> dict[str, Any]:
    """The figures (module docstring). The caller empties the instances and the sandbox."""
    from django.utils import timezone

    from billing.selectors import Phase, account_states, accounts_in_phase
    from instances.models import Instance, InstanceStatus
    from novitai.novita.client import get_client

    started = timezone.now()
    owners = _seed(count, novita_api)
    _passes_until(lambda: accounts_in_phase(Phase.COMPUTE) == count, 120 + count * 0.2)
    until = time.monotonic() + seconds
    _passes_until(lambda: time.monotonic() >= until, seconds + 60)
    queries = {"1": sweep_queries(1), str(count): sweep_queries(count)}
    # Deleted as a delete request leaves them (terminating), then on Novita.
    Instance.objects.update(status=InstanceStatus.TERMINATING, delete_requested_at=timezone.now())
    client = get_client()
    in_parallel([novita_id for _, novita_id in owners], client.delete_instance, threads=8)
    gone = Instance.objects.filter(status=InstanceStatus.TERMINATED)
    _passes_until(lambda: gone.count() == count, 120 + count * 0.2)
    end = timezone.now() + timedelta(seconds=1)
    bills = client.list_bills(
        cycle_type="Hour",
        start_time=int(started.timestamp()) - 1,
        end_time=int(end.timestamp()),
        product_category="gpu",
    )
    billed: dict[str, Decimal] = {}
    for bill in bills:
        # The exact charge (card-hours x unit price), not the amount rounded to 1/10000 USD:
        # at a minute of one card the rounding alone would be about 1 %.
        exact = bill.quantity * bill.unit_price_usd
        billed[bill.owner_id] = billed.get(bill.owner_id, Decimal(0)) + exact
    states = account_states(instance_ids=[pk for pk, _ in owners])
    errors = []
    for pk, novita_id in owners:
        theirs = billed.get(novita_id, Decimal(0))
        ours = states[pk].accrued_usd
        errors.append(float(abs(ours - theirs) / theirs) if theirs else 1.0)
    return {
        "instances": count,
        "seconds_running": seconds,
        "max_relative_error": round(max(errors), 5),
        "mean_relative_error": round(sum(errors) / len(errors), 5),
        "billed_usd": str(sum(billed.values(), Decimal(0))),
        "ledger_usd": str(sum((s.accrued_usd for s in states.values()), Decimal(0))),
        "sweep_queries_per_pass": queries,
    }


def run(stack: Stack, *, count: int, seconds: float) -> Scenario:
    """In this process, the worker and beat stopped (they would run passes too)."""
    from bench.db import clear_instances

    say(f"== scenario 10: the cost ledger at scale ({count} instances, {seconds:g} s running)")
    if any(name in stack.procs for name in ("worker", "worker-events", "worker-webhooks", "beat")):
        raise RuntimeError("scenario 10 needs the worker and beat stopped")
    stack.tenant()
    clear_instances()
    sandbox = Http(stack.sandbox_url)
    sandbox.post("/_sandbox/reset")
    novita_api = Http(
        f"{stack.sandbox_url}/gpu-instance/openapi/v1", {"Authorization": f"Bearer {SANDBOX_KEY}"}
    )
    figures = measure(count=count, seconds=seconds, novita_api=novita_api)
    scenario = Scenario("10-money", f"10. cost ledger at {count} instances")
    scenario.add(at_most("ledger vs bill: max relative error", figures["max_relative_error"], 0.01))
    scenario.add(info("ledger vs bill: mean relative error", figures["mean_relative_error"]))
    per_pass = figures["sweep_queries_per_pass"]
    scenario.add(
        equal("money sweep: queries per pass (1 vs N)", per_pass[str(count)], per_pass["1"])
    )
    scenario.details = figures
    return scenario
