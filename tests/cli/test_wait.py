"""--wait: the CLI polls while the provisioning and the monitor run beside it (in a thread, as a
worker would), prints one line per step, and exits by the outcome."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from instances.actions import instance_action_run
from instances.models import Instance, InstanceStatus
from novita_sandbox.control import SandboxControl
from tests.cli.conftest import Driver, Run, create_args, fields
from tests.instances.helpers import monitor_until, provision, wait_for

Cli = Callable[..., Run]
Drive = Callable[[Callable[[], None]], Driver]
LINE = re.compile(r"^\[ *(\d+\.\d)s\] (.*)$")


def progress(err: str) -> list[tuple[float, str]]:
    """The progress lines of stderr: (elapsed seconds, text)."""
    found = [LINE.match(line) for line in err.splitlines()]
    return [(float(m.group(1)), m.group(2)) for m in found if m]


def created(name: str = "trainer-1") -> Instance:
    found = wait_for(lambda: Instance.objects.filter(name=name).first(), 10, what=f"{name} created")
    assert found is not None
    return found


def test_create_wait_prints_each_step_until_ready(cli: Cli, drive: Drive) -> None:
    def worker() -> None:
        instance = provision(created())
        monitor_until(instance, InstanceStatus.READY)

    driver = drive(worker)
    result = cli(*create_args(), "--wait", "--timeout", "20")
    driver.join()

    assert result.code == 0, result.err
    instance = Instance.objects.get()
    assert instance.status == InstanceStatus.READY
    first = result.err.splitlines()[0]
    assert first == (
        f"trainer-1 ({instance.pk}) is pending; waiting for ready "
        "(Ctrl-C stops waiting, not the instance)"
    )
    lines = progress(result.err)
    assert [text for _, text in lines] == [
        "→ pending  requested: Create requested.",
        "pending → provisioning  provisioning_started: Choosing an offer and creating the "
        "instance on Novita.",
        f"provisioning → starting  created: Created on Novita as {instance.novita_instance_id} "
        f"(RTX 4090 24GB in {instance.region}).",
        "starting → health_checking  running: Novita reports it running; checking the application.",
        "health_checking → ready  healthy: The application answers its health checks.",
        f"ready: 8188/http  {instance.endpoints[0]['url']}  healthy",
    ]
    elapsed = [seconds for seconds, _ in lines]
    assert elapsed == sorted(elapsed)
    # stdout: the ready instance
    assert fields(result.out)["status"] == "ready"
    assert fields(result.out)["novita id"] == instance.novita_instance_id


def test_create_wait_json_prints_the_ready_body(cli: Cli, drive: Drive) -> None:
    def worker() -> None:
        monitor_until(provision(created()), InstanceStatus.READY)

    driver = drive(worker)
    result = cli("--json", *create_args(), "--wait", "--timeout", "20")
    driver.join()
    assert result.code == 0, result.err
    body = result.json()
    assert body["status"] == "ready"
    assert body["endpoints"][0]["healthy"] is True
    assert progress(result.err)[-1][1].startswith("ready: 8188/http")


def test_a_failed_instance_exits_1_with_its_reason(
    cli: Cli, drive: Drive, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(pull_fail_next=1)

    def worker() -> None:
        monitor_until(provision(created()), InstanceStatus.FAILED)

    driver = drive(worker)
    result = cli(*create_args(), "--wait", "--timeout", "20")
    driver.join()

    assert result.code == 1
    instance = Instance.objects.get()
    assert instance.failure_reason == "image_pull_failed"
    last = progress(result.err)[-1][1]
    assert last == f"failed: image_pull_failed: {instance.failure_message}"
    assert [text.split("  ")[0] for _, text in progress(result.err)][-2] == "starting → failed"
    assert fields(result.out)["status"] == "failed"


def test_stop_wait_shows_only_what_follows_the_request(cli: Cli, drive: Drive) -> None:
    created_now = cli(*create_args(), "--json")
    instance = monitor_until(
        provision(Instance.objects.get(pk=created_now.json()["id"])), InstanceStatus.READY
    )

    def worker() -> None:
        stopping = wait_for(
            lambda: Instance.objects.filter(pk=instance.pk, status="stopping").first(), 10
        )
        assert stopping is not None
        instance_action_run(job_id=str(stopping.current_job_id))
        monitor_until(stopping, InstanceStatus.STOPPED)

    driver = drive(worker)
    result = cli("stop", str(instance.pk), "--wait", "--timeout", "20")
    driver.join()

    assert result.code == 0, result.err
    steps = [text.split("  ")[0] for _, text in progress(result.err)]
    assert steps[0] == "ready → stopping"
    assert steps[-2:] == ["stopping → stopped", "stopped"]
    assert "requested" not in result.err.split("ready → stopping")[0]
    assert fields(result.out)["status"] == "stopped"


def test_wait_times_out_with_exit_3(cli: Cli) -> None:
    result = cli(*create_args(), "--wait", "--timeout", "0.3")
    assert result.code == 3
    assert progress(result.err)[-1][1] == (
        "timed out after 0.3s waiting for ready: the instance is pending; the operation "
        "continues on the server"
    )
    assert progress(result.err)[0][1] == "→ pending  requested: Create requested."
    assert Instance.objects.get().status == InstanceStatus.PENDING
    assert fields(result.out)["status"] == "pending"


def test_an_instance_that_ends_elsewhere_exits_1(cli: Cli) -> None:
    instance_id = cli(*create_args(), "--json").json()["id"]
    Instance.objects.filter(pk=instance_id).update(status=InstanceStatus.PREEMPTED)
    result = cli("wait", instance_id, "--for", "ready", "--timeout", "5")
    assert result.code == 1
    assert progress(result.err)[-1][1] == "ended preempted, not ready"


def test_ctrl_c_while_waiting_exits_130_and_says_it_goes_on(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(seconds: float) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("novitai.cli.progress.time.sleep", interrupt)
    result = cli(*create_args(), "--wait")
    instance = Instance.objects.get()
    assert result.code == 130
    assert result.err.splitlines()[-1] == (
        "novitai: interrupted: stopped waiting; the operation continues on the server "
        f"(novitai get {instance.pk})"
    )
    assert instance.status == InstanceStatus.PENDING
