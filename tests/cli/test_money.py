"""`novitai costs` and `novitai budget` against novitai over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.cli.test_commands import (
    Cli,
    ready_instance,
)


def test_costs(cli: Cli) -> None:
    ready = ready_instance(cli)
    report = cli("costs", "--json").json()
    assert report["group_by"] == "instance"
    [row] = report["rows"]
    assert row["key"] == str(ready.pk)
    assert Decimal(report["total_usd"]) == Decimal(row["cost_usd"]) > 0
    today = datetime.now(UTC).date()
    start = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()
    by_day = cli("costs", "--group-by", "day", "--from", start, "--json").json()
    assert [r["key"] for r in by_day["rows"]] == [today.isoformat()]
    text = cli("costs", "--group-by", "product").out
    lines = text.splitlines()
    assert lines[1].split() == ["product", "cost"]
    assert lines[2].startswith("RTX 4090 24GB")
    assert lines[-1].startswith("total")
    bad = cli("costs", "--from", "yesterday")
    assert bad.code == 4
    assert "from" in bad.err


def test_budget(cli: Cli) -> None:
    assert cli("budget", "--json").json()["monthly_limit_usd"] is None
    set_ = cli("budget", "--limit", "25.50", "--thresholds", "50,90", "--on-exhausted", "stop")
    assert set_.code == 0, set_.err
    assert "$25.50" in set_.out
    assert "50%, 90%" in set_.out
    body = cli("budget", "--json").json()
    assert (body["monthly_limit_usd"], body["alert_thresholds"], body["on_exhausted"]) == (
        "25.50",
        [50, 90],
        "stop",
    )
    bad = cli("budget", "--thresholds", "90,50")
    assert bad.code == 4
    assert "alert_thresholds" in bad.err
    assert cli("budget", "--limit", "none", "--json").json()["monthly_limit_usd"] is None
