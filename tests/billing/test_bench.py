"""bench/money.py (scenario 10) with a tiny N against the sandbox: it runs, and its figures say
what they should (the reference figures come from make bench)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.client import Http
from bench.money import measure
from tenants.services import tenant_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_ledger_scenario_with_four_instances(novita: Any) -> None:
    tenant_create(name="bench")
    api = Http(novita.api_base, {"Authorization": f"Bearer {novita.api_key}"})
    figures = measure(count=4, seconds=2, novita_api=api)
    assert figures["instances"] == 4
    assert 0 <= figures["mean_relative_error"] <= figures["max_relative_error"] < 0.5  # 2 s
    assert figures["sweep_queries_per_pass"] == {"1": 2, "4": 2}
