"""Helpers of the instances and e2e tests: polling with a deadline, never fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from instances.models import Instance, InstanceEvent
from instances.monitoring import monitor_pass
from instances.provisioning import instance_provision_run

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.05, what: str = ""
) -> T:
    """Calls `predicate` until it returns something truthy (returned), or fails at the deadline
    with the last value seen."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate}: {value!r}"
            )
        time.sleep(interval)
        value = predicate()
    return value


def reload(instance: Instance | Any) -> Instance:
    return Instance.objects.select_related("current_job", "tenant").get(pk=instance.pk)


def provision(instance: Instance) -> Instance:
    """Runs the provision task of the instance's current job, as a worker would."""
    instance_provision_run(job_id=str(reload(instance).current_job_id))
    return reload(instance)


def monitor_until(instance: Instance, *statuses: str, timeout: float = 10.0) -> Instance:
    """Monitoring passes until the instance has one of `statuses`."""

    def reached() -> Instance | None:
        monitor_pass()
        fresh = reload(instance)
        return fresh if fresh.status in statuses else None

    found = wait_for(reached, timeout, what=f"{instance.pk} to be {'/'.join(statuses)}")
    assert found is not None
    return found


def reasons(instance: Instance) -> list[str]:
    """The reasons of the instance's events, oldest first."""
    return list(
        InstanceEvent.objects.filter(instance=instance)
        .order_by("at", "id")
        .values_list("reason", flat=True)
    )


def upstream_live(sandbox: Any) -> list[dict[str, Any]]:
    """The sandbox's instances that still exist (not removed, not vanished)."""
    return [i for i in sandbox.instances() if i["status"] not in ("removed",) and not i["vanished"]]


def timeless(representation: Any) -> dict[str, Any]:
    """A representation without cost_usd, the one figure that moves with the clock (an open
    ledger segment accrues): two representations of the same row taken at different times."""
    return {k: v for k, v in dict(representation).items() if k != "cost_usd"}
