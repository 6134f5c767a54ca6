"""SSH and logs: where to ssh and the log address on the representation, read once a run
(instances.access_details_read, at low priority, not the monitoring pass); the password only
from GET …/ssh/ (the tenant's own instance, an event with the actor), and nowhere else — not in
lists, events, webhooks, the database, the caches or the logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.access import instances_access_details_read
from instances.actions import instance_action_run
from instances.models import Instance, InstanceEvent, InstanceStatus
from novita_sandbox.control import SandboxControl
from tests.instances.helpers import monitor_until, provision, reload
from tests.instances.test_secret_canaries import Findings, database_dump
from tests.sandbox.helpers import Api
from tests.stores import cache_contents
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

WEBHOOK = "https://hooks.example.com/novitai"


def gets_of(sandbox: SandboxControl) -> int:
    return sum(sandbox.stats()["calls"].get("GET /gpu/instance", {}).values())


def ready_instance(make: Any, **body: Any) -> Instance:
    """Ready, and its access details read (what beat's access_details_read does)."""
    ready = monitor_until(provision(make(**body)), InstanceStatus.READY)
    assert instances_access_details_read() == 1
    return reload(ready)


def sandbox_access(sandbox: SandboxControl, novita_id: str) -> tuple[str, str, str]:
    """(ssh command, password, instance log address) as Novita gives them."""
    detail = Api(sandbox).instance(novita_id)
    ssh = detail["connectComponentSSH"]
    return ssh["sshCommand"], ssh["password"], detail["connectComponentLog"]["instanceLogAddress"]


def test_ssh_and_logs_url_on_the_representation(
    make: Any, catalog: SandboxControl, api_client: APIClient
) -> None:
    ready = ready_instance(make)
    command, _, log_address = sandbox_access(catalog, ready.novita_instance_id)
    host_port = command.split()[-1].split("@")[1], int(command.split()[2])
    body = api_client.get(f"/api/v1/instances/{ready.pk}/").json()
    assert body["ssh"] == {
        "host": host_port[0],
        "port": host_port[1],
        "user": "root",
        "command": command,
    }
    assert body["logs_url"] == log_address
    assert log_address.endswith(f"/_app/{ready.novita_instance_id}/logs/instance")
    assert "password" not in str(body["ssh"])


def test_access_is_read_once_a_run_not_once_a_pass(make: Any, catalog: SandboxControl) -> None:
    ready = monitor_until(provision(make()), InstanceStatus.READY)
    assert reload(ready).ssh == {}  # the pass that found it ready read no page for it
    gets = gets_of(catalog)
    assert instances_access_details_read() == 1
    assert gets_of(catalog) == gets + 1
    for _ in range(3):
        monitor_until(ready, InstanceStatus.READY)
        assert instances_access_details_read() == 0
    assert gets_of(catalog) == gets + 1
    assert reload(ready).ssh["host"]


def test_a_stopped_instance_shows_no_ssh_and_a_start_reads_it_again(
    make: Any, catalog: SandboxControl, api_client: APIClient
) -> None:
    ready = ready_instance(make)
    path = f"/api/v1/instances/{ready.pk}/"
    response = api_client.post(f"{path}stop/")
    instance_action_run(job_id=response.json()["job"]["id"])
    stopped = monitor_until(ready, InstanceStatus.STOPPED)
    assert api_client.get(path).json()["ssh"] is None
    assert api_client.get(f"{path}ssh/").status_code == 409
    response = api_client.post(f"{path}start/")
    instance_action_run(job_id=response.json()["job"]["id"])
    gets = gets_of(catalog)
    monitor_until(stopped, InstanceStatus.READY)
    assert api_client.get(path).json()["ssh"] is None  # a new run: not read yet
    assert instances_access_details_read() == 1
    assert gets_of(catalog) == gets + 1  # the new run's page, once
    again = reload(ready)
    assert api_client.get(path).json()["ssh"]["command"] == again.ssh["command"]


def test_the_password_only_from_the_ssh_endpoint(  # noqa: PLR0913 - fixtures
    make: Any,
    catalog: SandboxControl,
    api_client: APIClient,
    other_tenant_client: APIClient,
    staff_client: APIClient,
    tenant: Any,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    ready = ready_instance(make, webhook_url=WEBHOOK)
    command, password, _ = sandbox_access(catalog, ready.novita_instance_id)
    path = f"/api/v1/instances/{ready.pk}/"

    answer = api_client.get(f"{path}ssh/")
    assert answer.status_code == 200
    assert answer["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["password"] == password
    assert body["command"] == command
    assert body["user"] == "root"
    event = InstanceEvent.objects.get(instance=ready, reason="ssh_credentials_read")
    assert event.actor == f"tenant:{tenant.name}"
    assert (event.from_status, event.to_status) == ("ready", "ready")

    assert other_tenant_client.get(f"{path}ssh/").status_code == 404
    assert staff_client.get(f"{path}ssh/").status_code == 403
    assert api_client.get("/api/v1/instances/not-a-uuid/ssh/").status_code == 404

    findings = Findings("x.y")
    findings.canaries = {"ssh password": password.encode()}
    for get in (path, "/api/v1/instances/", f"{path}events/", "/api/v1/jobs/"):
        findings.look(f"GET {get}", api_client.get(get).content)
    for delivery in WebhookDelivery.objects.all():
        findings.look(f"delivery {delivery.pk}", delivery.payload)
    database_dump(findings)
    for key, values in cache_contents().items():
        for value in values:
            findings.look(f"cache {key}", value)
    findings.look("logs", caplog.text)
    for record in caplog.records:
        findings.look(f"log {record.name}", record.getMessage())
    assert findings.found == []
    assert WebhookDelivery.objects.filter(event_type="instance.ready").count() == 1
    assert findings.places > 20


def test_ssh_of_an_instance_not_running_is_a_conflict(
    make: Any, catalog: SandboxControl, api_client: APIClient
) -> None:
    instance = make()
    answer = api_client.get(f"/api/v1/instances/{instance.pk}/ssh/")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "invalid_instance_state"
    assert not InstanceEvent.objects.filter(reason="ssh_credentials_read").exists()
