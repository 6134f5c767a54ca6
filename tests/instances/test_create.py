"""POST /api/v1/instances/: validation against the catalog, one transaction, enqueue on commit."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.models import Instance, InstanceEvent, InstanceStatus
from jobs.models import Job, JobStatus
from novita_sandbox.control import SandboxControl
from tenants.models import Tenant
from tests.instances.conftest import PRODUCT, TEMPLATE, create, create_body, nothing_created
from tests.jobs.conftest import SentTasks

pytestmark = pytest.mark.django_db


def test_create_answers_202_and_enqueues_one_job_on_commit(
    api_client: APIClient,
    catalog: SandboxControl,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    calls_before = catalog.stats()["calls"]
    with django_capture_on_commit_callbacks(execute=True):
        response = create(
            api_client,
            create_body(
                envs=[{"key": "HF_TOKEN", "value": "hf_secret_canary"}],
                webhook_url="https://hooks.example.com/novitai",
                health_check={"path": "/healthz", "expected_status": [200, 204]},
            ),
        )
    assert response.status_code == 202, response.content
    body = response.json()
    instance = Instance.objects.get()
    job = Job.objects.get()
    assert body == {
        "id": str(instance.pk),
        "name": "trainer-1",
        "status": "pending",
        "failure_reason": None,
        "failure_message": None,
        "novita_instance_id": None,
        "product": None,
        "region": None,
        "billing_mode": "on_demand",
        "billing_mode_requested": "on_demand",
        "spot_fallback": None,
        "gpu_num": 1,
        "price_per_hour": None,
        "cost_usd": "0.000000",
        "cost_rate_usd_per_hour": "0.000000",
        "template_id": TEMPLATE,
        "rootfs_size": instance.rootfs_size,
        "endpoints": [],
        "volumes": [],
        "ssh": None,
        "logs_url": None,
        "created_at": body["created_at"],
        "provisioned_at": None,
        "ready_at": None,
        "stopped_at": None,
        "terminated_at": None,
        "webhook_url": "https://hooks.example.com/novitai",
        "on_preempt": "notify",
        "recoveries": 0,
        "idle_timeout_seconds": None,
        "on_idle": "stop",
        "last_active_at": None,
        "idle_stop_at": None,
        "idle_policy": None,
        "gpu_utilization": None,
        "gpu_utilization_at": None,
        "max_spend_usd": None,
        "on_max_spend": "stop",
        "spend_limit_reached_at": None,
        "expires_at": None,
        "on_expire": "delete",
        "job": {
            "id": str(job.pk),
            "kind": "provision",
            "status": "pending",
            "attempts": 0,
            "last_error": None,
            "created_at": body["job"]["created_at"],
            "finished_at": None,
        },
        "capacity_wait_seconds": 0,
        "capacity_wait_until": None,
        "next_attempt_at": None,
        "capacity_attempts": 0,
        "spot_reclaim_at": None,
    }
    assert "hf_secret_canary" not in response.content.decode()
    assert response["Location"] == f"/api/v1/instances/{instance.pk}/"
    assert instance.novita_name == f"novitai-{instance.pk.hex[:12]}"
    assert instance.envs == [{"key": "HF_TOKEN", "value": "hf_secret_canary"}]
    assert instance.health_check == {
        "path": "/healthz",
        "ports": None,
        "expected_status": [[200, 200], [204, 204]],
        "timeout_seconds": None,
    }
    assert (job.status, job.subject_id, job.task_name) == (
        JobStatus.PENDING,
        instance.pk,
        "instances.provision",
    )
    assert instance.current_job_id == job.pk
    event = InstanceEvent.objects.get()
    assert (event.from_status, event.to_status, event.reason, event.actor) == (
        "",
        "pending",
        "requested",
        "tenant:acme",
    )
    assert sent_tasks.names_and_args == [("instances.provision", [str(job.pk)])]
    # No call to Novita beyond the first fetch of the template.
    calls = catalog.stats()["calls"]
    new = {k: v for k, v in calls.items() if calls_before.get(k) != v}
    assert set(new) == {"GET /template"}


def test_defaults_from_the_template_and_the_second_create_calls_nothing(
    api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    assert create(api_client, create_body(name="a")).status_code == 202
    calls = catalog.stats()["calls"]
    response = create(
        api_client,
        create_body(name="b", product_name=None, product_names=["RTX 3090 24GB", PRODUCT]),
    )
    assert response.status_code == 202, response.content
    assert catalog.stats()["calls"] == calls  # template cached, catalog from the database
    b = Instance.objects.get(name="b")
    assert b.product_names == ["RTX 3090 24GB", PRODUCT]
    assert b.rootfs_size == 60  # the comfyui template names no size: 60 GB


@pytest.mark.parametrize(
    ("overrides", "status", "code", "field"),
    [
        ({"name": None}, 400, "validation_error", "name"),
        ({"name": "Bad_Name"}, 400, "validation_error", "name"),
        ({"name": "-leading"}, 400, "validation_error", "name"),
        ({"name": "x" * 64}, 400, "validation_error", "name"),
        ({"template_id": None}, 400, "validation_error", "template_id"),
        ({"product_name": None}, 400, "validation_error", "product_name"),
        ({"product_names": [PRODUCT]}, 400, "validation_error", "product_name"),
        ({"product_name": None, "product_names": []}, 400, "validation_error", "product_names"),
        ({"gpu_num": 9}, 400, "validation_error", "gpu_num"),
        ({"gpu_num": 0}, 400, "validation_error", "gpu_num"),
        ({"gpu_num": "2"}, 400, "validation_error", "gpu_num"),
        ({"gpu_num": True}, 400, "validation_error", "gpu_num"),
        ({"billing_mode": "monthly"}, 400, "validation_error", "billing_mode"),
        ({"max_price_per_hour": -1}, 400, "validation_error", "max_price_per_hour"),
        ({"webhook_url": "ftp://example.com/x"}, 400, "validation_error", "webhook_url"),
        ({"webhook_url": "not a url"}, 400, "validation_error", "webhook_url"),
        ({"webhook_url": "http://127.0.0.1:9/hook"}, 400, "validation_error", "webhook_url"),
        ({"envs": [{"key": "A"}]}, 400, "validation_error", "envs"),
        ({"envs": [{"key": "1A", "value": "x"}]}, 400, "validation_error", "envs"),
        (
            {"envs": [{"key": "A", "value": "1"}, {"key": "A", "value": "2"}]},
            400,
            "validation_error",
            "envs",
        ),
        ({"health_check": {"path": "no-slash"}}, 400, "validation_error", "health_check"),
        ({"health_check": {"expected_status": [700]}}, 400, "validation_error", "health_check"),
        ({"health_check": {"ports": [22]}}, 400, "validation_error", "health_check"),
        ({"produkt": "typo"}, 400, "validation_error", "produkt"),
        ({"rootfs_size": 5000}, 400, "rootfs_out_of_range", "rootfs_size"),
        ({"region": "MARS-01"}, 400, "validation_error", "region"),
        ({"template_id": "999999"}, 404, "template_not_found", None),
        ({"product_name": "GTX 480"}, 404, "product_not_found", None),
        (
            {"product_name": None, "product_names": [PRODUCT, "GTX 480"]},
            404,
            "product_not_found",
            None,
        ),
        ({"product_name": "H100 SXM 80GB"}, 404, "no_offer_available", None),
    ],
)
def test_bad_input_creates_nothing(  # noqa: PLR0913 - fixtures and parameters
    api_client: APIClient,
    catalog: SandboxControl,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
    overrides: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = create(api_client, create_body(**overrides))
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert field in error["details"], error
    nothing_created(sent_tasks)
    assert Job.objects.count() == 0


def test_every_problem_of_the_shape_and_the_catalog_is_reported_at_once(
    api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    """Was one field per request: DRF stopped at the first failing stage (fields, unknown
    fields, the rules across fields) and the catalog checks raised at the first problem."""
    body = create_body(
        name="Bad_Name",
        gpu_num=9,
        produkt="typo",
        template_id="999999",
        region="MARS-01",
        product_name="GTX 480",
        on_preempt="restart",
    )
    response = create(api_client, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert sorted(error["details"]) == [
        "gpu_num", "name", "on_preempt", "product_names", "produkt", "region", "template_id",
    ]  # fmt: skip
    assert error["details"]["template_id"] == ["Novita has no template '999999'."]
    assert error["details"]["product_names"] == ["No product is named 'GTX 480'."]
    assert error["details"]["produkt"] == ["Unknown field."]
    assert error["details"]["region"][0].startswith("Unknown region 'MARS-01'")
    nothing_created(sent_tasks)
    assert Job.objects.count() == 0


def test_several_catalog_problems_are_one_400_naming_every_field(
    api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    response = create(
        api_client, create_body(region="MARS-01", rootfs_size=5000, product_name=None,
                                product_names=[PRODUCT, "GTX 480"])
    )  # fmt: skip
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == (
        "The request is not valid: 3 problems (region, rootfs_size, product_names)."
    )
    assert error["details"]["product_names"] == ["No product is named 'GTX 480'."]
    assert error["details"]["rootfs_size"][0].startswith("Allowed: RTX 4090 24GB: ")
    nothing_created(sent_tasks)


def test_a_catalog_problem_alone_keeps_its_code(
    api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    response = create(api_client, create_body(template_id="999999"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "template_not_found"
    nothing_created(sent_tasks)


def test_malformed_json_is_400(api_client: APIClient, sent_tasks: SentTasks) -> None:
    response = api_client.post("/api/v1/instances/", b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    nothing_created(sent_tasks)


def test_names_are_unique_per_tenant_among_live_instances(
    api_client: APIClient,
    other_tenant_client: APIClient,
    catalog: SandboxControl,
    sent_tasks: SentTasks,
) -> None:
    assert create(api_client).status_code == 202
    sent_tasks.clear()
    taken = create(api_client)
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "instance_name_taken"
    assert sent_tasks.calls == []
    assert create(other_tenant_client).status_code == 202  # another tenant: its own names
    Instance.objects.filter(tenant__name="acme").update(status=InstanceStatus.TERMINATED)
    assert create(api_client).status_code == 202  # free again once terminated


def test_quotas_are_enforced(
    api_client: APIClient, tenant: Tenant, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(max_instances=2, max_gpus=3)
    assert create(api_client, create_body(name="one", gpu_num=2)).status_code == 202
    too_many_gpus = create(api_client, create_body(name="two", gpu_num=2))
    assert too_many_gpus.status_code == 409
    assert too_many_gpus.json()["error"]["code"] == "quota_exceeded"
    assert create(api_client, create_body(name="two", gpu_num=1)).status_code == 202
    sent_tasks.clear()
    third = create(api_client, create_body(name="three"))
    assert third.status_code == 409
    assert third.json()["error"]["details"] == {"max_instances": 2, "instances": 2}
    assert Instance.objects.count() == 2
    assert sent_tasks.calls == []


def test_staff_cannot_create_without_a_tenant_key(
    staff_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    response = create(staff_client)
    assert response.status_code == 403
    assert "tenant API key" in response.json()["error"]["message"]
    nothing_created(sent_tasks)


def test_no_key_is_401(catalog: SandboxControl, sent_tasks: SentTasks) -> None:
    response = create(APIClient())
    assert response.status_code == 401
    nothing_created(sent_tasks)
