"""`novitai` commands against a live novitai over HTTP: what each sends, prints and exits with."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from instances.access import instances_access_details_read
from instances.models import Instance, InstanceStatus
from novitai.cli import main
from tests.cli.conftest import PRODUCT, TEMPLATE, Run, create_args, fields
from tests.instances.helpers import monitor_until, provision
from tests.jobs.conftest import SentTasks

Cli = Callable[..., Run]


def ready_instance(cli: Cli, name: str = "trainer-1") -> Instance:
    created = cli(*create_args(name), "--json")
    assert created.code == 0, created.err
    instance = provision(Instance.objects.get(pk=created.json()["id"]))
    return monitor_until(instance, InstanceStatus.READY)


# --- create ------------------------------------------------------------------------------------


def test_create_sends_every_option_and_prints_the_instance(
    cli: Cli, settings: Any, sent_tasks: SentTasks
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    result = cli(
        "create", "trainer-1",
        "--product", PRODUCT, "--product", "RTX 5090 32GB",
        "--template", TEMPLATE,
        "--gpus", "2", "--region", "EU-NL-01", "--rootfs", "80",
        "--spot", "--on-preempt", "reprovision", "--idle-timeout", "600",
        "--max-price", "1.5", "--webhook", "http://127.0.0.1:9/hook",
        "--env", "HF_TOKEN=hf_abc=def", "--env", "EMPTY=",
    )  # fmt: skip

    assert result.code == 0, result.err
    instance = Instance.objects.get()
    assert instance.name == "trainer-1"
    assert instance.status == InstanceStatus.PENDING
    assert instance.product_names == [PRODUCT, "RTX 5090 32GB"]
    assert instance.template_id == TEMPLATE
    assert instance.gpu_num == 2
    assert instance.preferred_region == "EU-NL-01"
    assert instance.rootfs_size == 80
    assert instance.billing_mode == "spot"
    assert instance.on_preempt == "reprovision"
    assert instance.idle_timeout == timedelta(seconds=600)
    assert instance.max_price_per_hour == Decimal("1.5")
    assert instance.webhook_url == "http://127.0.0.1:9/hook"
    assert instance.envs == [
        {"key": "HF_TOKEN", "value": "hf_abc=def"},
        {"key": "EMPTY", "value": ""},
    ]
    assert sent_tasks.names_and_args == [("instances.provision", [str(instance.current_job_id)])]
    shown = fields(result.out)
    assert list(shown)[:3] == ["id", "name", "status"]
    assert (shown["id"], shown["name"], shown["status"]) == (
        str(instance.pk),
        "trainer-1",
        "pending",
    )
    assert shown["gpus"] == "2"
    assert shown["billing"] == "spot"
    assert shown["webhook"] == "http://127.0.0.1:9/hook"
    assert fields(result.out)["on preempt"] == "reprovision"
    assert fields(result.out)["idle timeout"] == "600 s, then stop"
    assert "hf_abc" not in result.out  # env values are never shown
    assert result.err == f"follow it: novitai wait {instance.pk}\n"


def test_create_with_defaults_leaves_them_to_the_server(cli: Cli) -> None:
    assert cli(*create_args()).code == 0
    instance = Instance.objects.get()
    assert instance.product_names == [PRODUCT]
    assert instance.gpu_num == 1
    assert instance.preferred_region == ""
    assert instance.billing_mode == "on_demand"
    assert instance.on_preempt == "notify"
    assert instance.idle_timeout is None
    assert instance.max_price_per_hour is None
    assert instance.envs == []


def test_create_json_is_the_api_body(cli: Cli) -> None:
    result = cli("--json", *create_args())
    assert result.code == 0
    body = result.json()
    instance = Instance.objects.get()
    assert body["id"] == str(instance.pk)
    assert body["status"] == "pending"
    assert body["gpu_num"] == 1
    assert body["job"]["kind"] == "provision"
    # --json may come after the command too
    again = cli("get", str(instance.pk), "--json")
    assert again.json()["id"] == body["id"]


def test_an_idempotency_key_makes_a_second_run_answer_the_same(cli: Cli) -> None:
    first = cli(*create_args(), "--idempotency-key", "cli-run-1", "--json")
    second = cli(*create_args(), "--idempotency-key", "cli-run-1", "--json")
    assert first.code == second.code == 0
    assert second.json()["id"] == first.json()["id"]
    assert Instance.objects.count() == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--env", "NOVALUE"], "argument --env: expected KEY=VALUE, got 'NOVALUE'"),
        (["--env", "=value"], "argument --env: expected KEY=VALUE, got '=value'"),
        (["--gpus", "two"], "argument --gpus/--gpu-num: not a whole number: 'two'"),
        (["--rootfs", "1.5"], "argument --rootfs/--rootfs-size: not a whole number: '1.5'"),
        (
            ["--max-price", "cheap"],
            "argument --max-price/--max-price-per-hour: not an amount of USD: 'cheap'",
        ),
        (["--wait", "--timeout", "0"], "argument --timeout: must be more than 0: '0'"),
        (["--on-preempt", "pray"], "argument --on-preempt: invalid choice: 'pray'"),
    ],
)
def test_bad_arguments_are_usage_errors(
    cli: Cli, sent_tasks: SentTasks, extra: list[str], message: str
) -> None:
    result = cli(*create_args(), *extra)
    assert result.code == 2
    assert message in result.err
    assert result.err.startswith("usage: novitai create")
    assert result.out == ""
    assert Instance.objects.count() == 0
    assert sent_tasks.calls == []


def test_a_400_prints_the_envelope_and_exits_4(cli: Cli, sent_tasks: SentTasks) -> None:
    result = cli(*create_args(), "--gpus", "9")
    assert result.code == 4
    lines = result.err.splitlines()
    assert lines[0] == "novitai: error: 400 validation_error: The request is not valid."
    assert lines[1] == "  gpu_num: Ensure this value is less than or equal to 8."
    assert lines[2].startswith("  request_id: ")
    assert len(lines[2].split()[1]) >= 16
    assert result.out == ""
    assert Instance.objects.count() == 0
    assert sent_tasks.calls == []


def test_an_unknown_product_is_named(cli: Cli, sent_tasks: SentTasks) -> None:
    result = cli("create", "x", "--product", "GTX 480", "--template", TEMPLATE)
    assert result.code == 4
    assert result.err.splitlines()[:2] == [
        "novitai: error: 404 product_not_found: No product is named 'GTX 480'.",
        "  product_names: GTX 480",
    ]
    assert Instance.objects.count() == 0


def test_an_error_with_json_prints_the_envelope_on_stdout(cli: Cli) -> None:
    result = cli("--json", *create_args(), "--gpus", "9")
    assert result.code == 4
    error = result.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == {"gpu_num": ["Ensure this value is less than or equal to 8."]}
    assert "400 validation_error" in result.err


# --- keys and reachability -----------------------------------------------------------------


def test_a_wrong_key_is_an_api_error_and_never_printed(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "nvt-not-a-real-key-5f1e2d3c4b5a"
    for argv in (["--api-key", secret, "list"], ["--api-key", secret, "-v", "get", "x"]):
        result = run(argv)
        assert result.code == 4
        assert secret not in result.out + result.err
        assert "401 authentication_failed: Invalid, revoked or expired API key." in result.err
    monkeypatch.setenv("NOVITAI_API_KEY", secret)
    from_env = run(["list", "--json"])
    assert from_env.code == 4
    assert secret not in from_env.out + from_env.err


def test_no_key_is_a_usage_error(server: str) -> None:
    result = run(["list"])
    assert result.code == 2
    assert "no API key: set NOVITAI_API_KEY (or pass --api-key)" in result.err


def test_an_unreachable_server_is_one_line(cli: Cli) -> None:
    result = cli("--url", "http://127.0.0.1:9", "list")
    assert result.code == 5  # not 4: scripts tell "no answer" from "the API said no"
    assert result.err == "novitai: cannot reach novitai at http://127.0.0.1:9: connection refused\n"
    assert result.out == ""


def test_verbose_traces_requests_without_the_key(cli: Cli, api_key: str) -> None:
    result = cli("-v", "list")
    assert result.code == 0
    trace = [line for line in result.err.splitlines() if line[:2] in ("> ", "< ")]
    assert trace[0].endswith("/api/v1/instances/?page=1")
    assert trace[1].startswith("< 200 OK in ")
    assert "request_id " in trace[1]
    assert "Bearer" not in result.err


def run(argv: list[str]) -> Run:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    assert "Traceback" not in err.getvalue()
    return Run(code, out.getvalue(), err.getvalue())


# --- reading -------------------------------------------------------------------------------


def test_list_shows_a_table_filters_and_pages(cli: Cli) -> None:
    for name in ("a-1", "b-2", "c-3"):
        assert cli(*create_args(name)).code == 0
    Instance.objects.filter(name="b-2").update(status=InstanceStatus.FAILED)

    table = cli("list")
    assert table.code == 0
    rows = table.out.splitlines()
    assert rows[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "PRODUCT",
        "GPUS",
        "REGION",
        "PRICE",
        "CREATED",
    ]
    assert [row.split()[1:3] for row in rows[1:]] == [
        ["c-3", "pending"], ["b-2", "failed"], ["a-1", "pending"],
    ]  # fmt: skip

    failed = cli("list", "--status", "failed", "--json").json()
    assert [i["name"] for i in failed["results"]] == ["b-2"]
    both = cli("list", "--status", "failed", "--status", "pending", "--name", "a-1", "--json")
    assert [i["name"] for i in both.json()["results"]] == ["a-1"]

    page = cli("list", "--page-size", "2")
    assert len(page.out.splitlines()) == 3
    assert page.err == "2 of 3 shown; next: --page 2, or --all\n"
    second = cli("list", "--page-size", "2", "--page", "2", "--json").json()
    assert [i["name"] for i in second["results"]] == ["a-1"]
    everything = cli("list", "--all", "--json").json()
    assert everything["count"] == 3
    assert [i["name"] for i in everything["results"]] == ["c-3", "b-2", "a-1"]

    bad = cli("list", "--status", "sleeping")
    assert bad.code == 4
    assert "400 validation_error" in bad.err
    detail = next(line for line in bad.err.splitlines() if line.startswith("  status: "))
    assert "sleeping" in detail


def test_get_events_and_a_missing_instance(cli: Cli) -> None:
    instance = ready_instance(cli)
    got = cli("get", str(instance.pk))
    assert got.code == 0
    assert fields(got.out)["status"] == "ready"
    assert fields(got.out)["endpoints"] == f"8188/http  {instance.endpoints[0]['url']}  healthy"

    events = cli("events", str(instance.pk))
    assert events.code == 0
    rows = [line.split("  ") for line in events.out.splitlines()]
    statuses = [[cell for cell in row if cell][1].strip() for row in rows[1:]]
    assert statuses == [
        "→ pending",
        "pending → provisioning",
        "provisioning → starting",
        "starting → health_checking",
        "health_checking → ready",
    ]
    as_json = cli("events", str(instance.pk), "--json").json()
    assert as_json["count"] == 5
    assert [e["reason"] for e in as_json["results"]][-1] == "healthy"

    missing = cli("get", "00000000-0000-0000-0000-000000000000")
    assert missing.code == 4
    assert missing.err.startswith("novitai: error: 404 instance_not_found: No such instance.")
    elsewhere = cli("get", "../../regions", "--json")  # one path segment, not another endpoint
    assert elsewhere.code == 4
    assert elsewhere.json()["error"]["code"] in ("not_found", "instance_not_found")


def test_heartbeat_and_stop(cli: Cli, sent_tasks: SentTasks) -> None:
    instance = ready_instance(cli)
    Instance.objects.filter(pk=instance.pk).update(idle_timeout=timedelta(seconds=600))

    beat = cli("heartbeat", str(instance.pk))
    assert beat.code == 0
    assert beat.out.startswith(f"trainer-1 ({instance.pk}): ready, last active 20")
    assert ", idle stop at 20" in beat.out
    assert Instance.objects.get().last_active_at is not None

    sent_tasks.clear()
    stop = cli("stop", str(instance.pk))
    assert stop.code == 0
    assert fields(stop.out)["status"] == "stopping"
    fresh = Instance.objects.get()
    assert fresh.status == InstanceStatus.STOPPING
    assert sent_tasks.names_and_args == [("instances.action", [str(fresh.current_job_id)])]

    again = cli("stop", str(instance.pk))
    assert again.code == 4
    assert "409 invalid_instance_state" in again.err
    no_beat = cli("heartbeat", str(instance.pk))
    assert no_beat.code == 4
    assert "409 invalid_instance_state" in no_beat.err


def test_an_instance_is_named_wherever_an_id_is_taken(cli: Cli, sent_tasks: SentTasks) -> None:
    """`novitai get web-1` was a 4xx: only ids were understood."""
    old = ready_instance(cli, "web-1")
    Instance.objects.filter(pk=old.pk).update(status=InstanceStatus.TERMINATED)
    instance = ready_instance(cli, "web-1")  # the live one of that name, not the terminated one
    other = ready_instance(cli, "web-2")

    got = cli("get", "web-1", "--json")
    assert got.code == 0, got.err
    assert got.json()["id"] == str(instance.pk)
    events = cli("events", "web-1", "--json")
    assert events.json()["results"][-1]["reason"] == "healthy"
    sent_tasks.clear()
    stopped = cli("stop", "web-1", "--json")
    assert (stopped.code, stopped.json()["id"]) == (0, str(instance.pk))
    assert Instance.objects.get(pk=instance.pk).status == InstanceStatus.STOPPING
    assert Instance.objects.get(pk=other.pk).status == InstanceStatus.READY
    assert len(sent_tasks.calls) == 1

    only_terminated = cli("get", "web-1", "--json")  # still the live one
    assert only_terminated.json()["id"] == str(instance.pk)
    missing = cli("get", "web-9")
    assert missing.code == 4
    assert "404" in missing.err


def test_create_takes_the_api_field_names_as_flags(cli: Cli) -> None:
    result = cli(
        "create", "web-1", "--product-name", PRODUCT, "--template-id", TEMPLATE,
        "--gpu-num", "1", "--rootfs-size", "80", "--max-price-per-hour", "2", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    body = result.json()
    assert (body["template_id"], body["gpu_num"], body["rootfs_size"]) == (TEMPLATE, 1, 80)
    assert Instance.objects.get().product_names == [PRODUCT]


def test_products_and_offers(cli: Cli) -> None:
    products = cli("products", "--name", "4090")
    assert products.code == 0
    rows = products.out.splitlines()
    assert rows[0].split()[:3] == ["NAME", "REGION", "PRICE"]
    assert {row.split("  ")[0] for row in rows[1:]} == {PRODUCT}
    assert all("$0.34/h" in row for row in rows[1:])

    offers = cli("offers", "--product", PRODUCT, "--product", "GTX 480", "--json").json()
    assert offers["offer"]["product_name"] == PRODUCT
    assert {r["reason"] for r in offers["rejected"]} == {"product_not_found"}
    text = cli("offers", "--product", PRODUCT, "--product", "GTX 480").out
    assert text.splitlines()[1].split()[:2] == ["1", "RTX"]
    assert "left out:" in text
    assert "product_not_found" in text


def test_summary(cli: Cli) -> None:
    ready = ready_instance(cli)
    summary = cli("summary", "--json").json()
    assert summary["scope"] == "tenant"
    assert summary["instances"]["by_status"]["ready"] == 1
    assert summary["spend"]["instances"] == 1
    text = cli("summary").out
    lines = dict(line.split(None, 1) for line in text.splitlines() if line.startswith("spend"))
    assert lines["spend"].strip() == f"${ready.price_per_hour:.2f}/h"
    assert "ready 1" in text
    assert "quota" in text


def test_set_changes_a_live_instance(cli: Cli) -> None:
    created = cli(*create_args("set-me"), "--spot", "--json").json()
    changed = cli(
        "set", created["id"], "--on-preempt", "restart", "--idle-timeout", "900", "--on-idle",
        "delete",
    )  # fmt: skip
    assert changed.code == 0, changed.err
    assert "900 s, then delete" in changed.out
    stored = Instance.objects.get(pk=created["id"])
    assert (stored.on_preempt, stored.idle_timeout) == ("restart", timedelta(seconds=900))
    assert stored.on_idle == "delete"
    never = cli("set", created["id"], "--idle-timeout", "never", "--webhook", "none", "--json")
    assert never.json()["idle_timeout_seconds"] is None
    assert never.json()["webhook_url"] is None
    assert cli("set", created["id"]).code == 2  # nothing to change
    assert cli("set", created["id"], "--idle-timeout", "soon").code == 2
    refused = cli("set", created["id"], "--idle-timeout", "5")
    assert refused.code == 4
    assert "idle_timeout_seconds" in refused.err
    assert Instance.objects.get(pk=created["id"]).idle_timeout is None


def test_ssh_prints_the_command_and_asks_for_the_password_only_when_told(cli: Cli) -> None:
    ready = ready_instance(cli, "box-1")
    assert instances_access_details_read() == 1  # where to ssh, read after ready (beat's task)
    instance = Instance.objects.get(pk=ready.pk)
    ssh = instance.ssh
    plain = cli("ssh", "box-1")
    assert plain.code == 0, plain.err
    assert plain.out == f"{ssh['command']}\n"
    assert plain.out.startswith(f"ssh -p {ssh['port']} root@")
    assert plain.err == ""
    assert not instance.events.filter(reason="ssh_credentials_read").exists()

    told = cli("ssh", str(instance.pk), "--password")
    assert told.code == 0, told.err
    assert told.out == f"{ssh['command']}\n"
    assert told.err.startswith("password: ")
    assert len(told.err.strip()) > len("password: ")
    assert instance.events.filter(reason="ssh_credentials_read").count() == 1


def test_ssh_of_an_instance_not_running_says_so(cli: Cli) -> None:
    created = cli(*create_args("box-2"), "--json")
    run = cli("ssh", "box-2")
    assert run.code == 1
    assert run.err == "novitai: box-2 is pending: no ssh access now\n"
    assert created.code == 0
