"""Health-check orchestration in the monitoring pass: "running" is not "ready".

A row whose instance runs is planned (its endpoints from Novita's port mappings, the ports its
health_check names, or every http port), every plan of the pass is checked at once
(instances/health.py does the HTTP and TCP, HEALTH_CHECK_CONCURRENCY at a time), and the results
decide: every check passing (or nothing to check) → ready; otherwise new health flags, written
only when they changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings

from instances.health import CheckPlan, CheckResult, CheckTarget, run_checks
from instances.lifecycle import Transition
from instances.models import Instance, InstanceStatus
from instances.monitoring.outcomes import Flags, Move
from jobs.selectors import JobStatus
from novitai.novita.client import NovitaClient
from novitai.novita.types import NovitaInstance


def endpoints_of(upstream: NovitaInstance, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Endpoints from Novita's port mappings, keeping the health flags of unchanged ones.

    Novita's listings may carry ports without their endpoint URL: a port's URL already known
    from an earlier read of the instance is kept, so that it is fetched once, not every pass.
    """
    before = {(e.get("port"), e.get("url")): e.get("healthy") for e in previous}
    known = {(e.get("port"), e.get("type")): e.get("url") for e in previous if e.get("url")}
    endpoints = []
    for p in upstream.port_mappings:
        url = p.endpoint or known.get((p.port, p.type)) or ""
        endpoints.append(
            {"port": p.port, "type": p.type, "url": url, "healthy": before.get((p.port, url))}
        )
    return endpoints


def check_plan(instance: Instance) -> CheckPlan:
    """What to check: health_check.ports, or every http port (the template's) by default."""
    config = instance.health_check or {}
    ports = config.get("ports")
    targets = tuple(
        CheckTarget(port=e["port"], type=e["type"], url=e.get("url") or "")
        for e in instance.endpoints
        if (e["port"] in ports if ports is not None else e["type"] == "http")
    )
    expected = tuple(tuple(r) for r in (config.get("expected_status") or [[200, 399]]))
    return CheckPlan(
        key=instance.pk,
        targets=targets,
        path=config.get("path") or "/",
        expected=expected,
        timeout=float(
            config.get("timeout_seconds") or settings.HEALTH_CHECK_REQUEST_TIMEOUT_SECONDS
        ),
    )


def access_of(upstream: NovitaInstance) -> tuple[dict[str, Any], str]:
    """(ssh, logs_url) as stored: host, port, user and command of Novita's connectComponentSSH
    (never its password), and the instance's log address. An instance without ssh stores a
    blank host, so that its page is not read again this run."""
    ssh = upstream.ssh
    stored: dict[str, Any] = (
        {"host": ssh.host, "port": ssh.port, "user": ssh.user, "command": ssh.command}
        if ssh is not None and ssh.host
        else {"host": ""}
    )
    logs = upstream.logs
    return stored, (logs.instance or logs.system) if logs is not None else ""


def plan(row: Instance, item: NovitaInstance, client: NovitaClient) -> CheckPlan:
    """The row's plan, its endpoints and access brought up to date (in memory) first. The
    instance's own page is read only when the listing lacks endpoints (listings may omit them);
    then its ssh details come with it. Otherwise they come from the listing when it carries them,
    or later from instances.access_details_read, which reads the page of a ready instance at low
    priority: a check never waits on a read that only fills in where to ssh."""
    endpoints = endpoints_of(item, row.endpoints)
    if not row.ssh and item.ssh is not None:  # a listing that carries them (§2.5 says it may)
        row.ssh, row.logs_url = access_of(item)
    if any(not e["url"] for e in endpoints):
        page = client.get_instance(row.novita_instance_id)
        endpoints = endpoints_of(page, row.endpoints)
        row.ssh, row.logs_url = access_of(page)
    row.endpoints = endpoints
    return check_plan(row)


def run(plans: Sequence[CheckPlan]) -> dict[Any, list[CheckResult]]:
    """Every plan's checks, concurrently: results by plan key."""
    return run_checks(list(plans), workers=settings.HEALTH_CHECK_CONCURRENCY)


def verdict(
    row: Instance,
    plan: CheckPlan,
    results: list[CheckResult],
    *,
    stored: list[dict[str, Any]] | None,
    now: datetime,
    stored_ssh: dict[str, Any] | None = None,
) -> Move | Flags | None:
    """Ready when every check passed (or there is nothing to check); else the new flags, when
    they differ from the `stored` ones."""
    by_port = {r.port: r for r in results}
    endpoints = [
        {**e, "healthy": by_port[e["port"]].healthy} if e["port"] in by_port else e
        for e in row.endpoints
    ]
    if (results and all(r.healthy for r in results)) or not plan.targets:
        return Move(
            Transition(
                instance=row,
                to_status=InstanceStatus.READY,
                reason="healthy",
                message="The application answers its health checks."
                if plan.targets
                else "Running; no port to check.",
                fields={
                    "endpoints": endpoints,
                    "ready_at": now,
                    "ssh": row.ssh,
                    "logs_url": row.logs_url,
                },
                data={"checks": {str(r.port): r.detail for r in results}},
                job_outcome=JobStatus.SUCCEEDED,
            )
        )
    if endpoints != stored or row.ssh != stored_ssh:  # written only when they change
        return Flags(row.pk, endpoints, ssh=row.ssh, logs_url=row.logs_url)
    return None
