"""Every client method against the sandbox, over HTTP on loopback."""

from __future__ import annotations

import re
from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.errors import InvalidStateChange, NotFound
from novitai.novita.types import Cluster, PortMapping, PortSpec, Product, RegistryAuth
from tests.novita.conftest import api_calls, create_request

DWELL = 0.02


@pytest.fixture(autouse=True)
def _quick_lifecycle(sandbox: SandboxControl) -> None:
    """Statuses last 20 ms: the tests walk whole lifecycles."""
    statuses = ["to_create", "creating", "pulling", "to_start", "starting", "to_stop", "stopping"]
    statuses += ["to_restart", "restarting", "to_remove", "removing", "migrating", "app_boot"]
    sandbox.set_timing(**dict.fromkeys(statuses, DWELL))


def test_get_client_is_one_per_process_and_follows_the_settings(
    client: NovitaClient, settings: Any
) -> None:
    assert get_client() is client
    settings.NOVITA_API_KEY = "another-key"
    rebuilt = get_client()
    assert rebuilt is not client
    assert rebuilt.config.api_key == "another-key"
    assert "another-key" not in repr(rebuilt.config)
    settings.NOVITA_API_BASE_URL = "http://127.0.0.1:9/gpu-instance/openapi/v1/"
    assert get_client().config.base_url == "http://127.0.0.1:9/gpu-instance/openapi/v1"


def test_list_clusters(client: NovitaClient) -> None:
    clusters = client.list_clusters()
    assert [c.id for c in clusters] == ["us-tx-2", "us-ca-6", "eu-nl-1", "eu-de-1", "as-jp-3"]
    assert clusters[2] == Cluster(
        id="eu-nl-1",
        name="EU-NL-01 (Amsterdam)",
        available_gpu_types=("RTX 4090 24GB", "RTX 3090 24GB", "L40S 48GB"),
        support_network_storage=True,
        support_instance_network=False,
    )


def test_list_products_in_a_region(client: NovitaClient) -> None:
    products = {p.id: p for p in client.list_products(cluster_id="us-tx-2")}
    assert set(products) == {
        "4090.16c62g.sim",
        "3090.8c31g.sim",
        "4080s.12c46g.sim",
        "5090.16c92g.sim",
        "h100.24c240g.sim",
    }
    assert products["4090.16c62g.sim"] == Product(
        id="4090.16c62g.sim",
        name="RTX 4090 24GB",
        cpu_per_gpu=16,
        memory_per_gpu=62,
        disk_per_gpu=200,
        available_deploy=True,
        min_rootfs=10,
        max_rootfs=1000,
        min_local_storage=0,
        max_local_storage=200,
        regions=("US-TX-02 (Dallas)",),
        price=34000,
        spot_price=17000,
        monthly_prices=products["4090.16c62g.sim"].monthly_prices,
        billing_methods=("onDemand", "monthly", "spot"),
        inventory_state="high",
        available_gpu_number=products["4090.16c62g.sim"].available_gpu_number,
        exited_local_storage_price=500,
    )
    assert products["3090.8c31g.sim"].available_deploy is False  # none in us-tx-2


def test_list_products_filters(client: NovitaClient) -> None:
    assert [p.id for p in client.list_products(product_name="4090")] == ["4090.16c62g.sim"]
    l40s = next(
        p for p in client.list_products(billing_method="onDemand") if p.id.startswith("l40s")
    )
    assert (l40s.price, l40s.spot_price) == (86000, 0)
    eight = {
        p.id: p.available_deploy for p in client.list_products(cluster_id="eu-nl-1", gpu_num=8)
    }
    assert eight["4090.16c62g.sim"] is False  # low inventory there: up to 2 GPUs
    assert eight["l40s.16c120g.sim"] is True
    filtered = client.list_products(
        min_cpu_per_gpu=16, min_memory_per_gpu=100, min_rootfs_size=10, cluster_id="eu-de-1"
    )
    assert {p.id for p in filtered} <= {"l40s.16c120g.sim", "5090.16c92g.sim", "a6000.10c60g.sim"}


def test_list_templates_reads_every_page(
    client: NovitaClient, settings: Any, sandbox: SandboxControl
) -> None:
    settings.NOVITA_LIST_PAGE_SIZE = 3
    templates = get_client().list_templates()
    assert [t.id for t in templates] == ["40117", "212", "107672", "50211"]
    assert len(api_calls(sandbox, "/templates")) >= 2
    assert [t.id for t in get_client().list_templates(name="comfy")] == ["212"]
    official = get_client().list_templates(channel=["official", "community"])
    assert {t.id for t in official} == {"212", "107672", "50211"}


def test_get_template(client: NovitaClient) -> None:
    template = client.get_template("40117")
    assert (template.id, template.name, template.image, template.rootfs_size) == (
        "40117",
        "pytorch-jupyter",
        "ghcr.io/example/pytorch-lab:2.4",
        40,
    )
    assert template.image_auth_id == "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8"
    assert template.ports == (PortSpec(8888, "http"), PortSpec(7860, "http"), PortSpec(22, "tcp"))
    assert [(e.key, e.value) for e in template.envs] == [
        ("JUPYTER_TOKEN", "demo-token"),
        ("PYTHONUNBUFFERED", "1"),
    ]
    with pytest.raises(NotFound) as caught:
        client.get_template("999999")
    assert caught.value.reason == "TEMPLATE_NOT_FOUND"


def test_get_template_carries_entrypoint_cuda_and_created_at(client: NovitaClient) -> None:
    vllm = client.get_template("107672")
    assert (vllm.entrypoint, vllm.min_cuda_version, vllm.create_time) == (
        "python3 -m vllm.entrypoints.openai.api_server",
        "12.1",
        1754032100,  # createdAt on the detail, createTime on the list
    )
    listed = next(t for t in client.list_templates(name="vllm"))
    assert (listed.entrypoint, listed.min_cuda_version, listed.create_time) == ("", "", 1754032100)


def test_list_registry_auths(client: NovitaClient) -> None:
    auths = client.list_registry_auths()
    assert auths == [
        RegistryAuth("k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8", "ghcr.io", "sim-bot", "ghp_simulated"),
        RegistryAuth(
            "d9f1h3j5l7n9p1r3t5v7x9z1b3d5f7h9", "registry.example.com", "ci", "not-a-real-secret"
        ),
    ]
    assert "ghp_simulated" not in repr(auths)


def test_create_instance_sends_the_request(client: NovitaClient, sandbox: SandboxControl) -> None:
    instance_id = client.create_instance(create_request("novitai-create-1", billing_mode="spot"))
    assert re.fullmatch(r"[0-9a-f]{16}", instance_id)
    view = sandbox.instance(instance_id)
    assert (view["name"], view["clusterId"], view["productId"], view["billingMode"]) == (
        "novitai-create-1",
        "us-tx-2",
        "4090.16c62g.sim",
        "spot",
    )
    assert view["imageUrl"] == "ghcr.io/example/pytorch-lab:2.4"
    assert sandbox.stats()["creates_by_name"] == {"novitai-create-1": 1}


def test_get_instance_follows_the_lifecycle(client: NovitaClient, sandbox: SandboxControl) -> None:
    sandbox.set_timing(pulling=0.5)  # long enough to be seen booting
    instance_id = client.create_instance(create_request())
    early = client.get_instance(instance_id)
    assert early.status in {"toCreate", "creating", "pulling"}
    assert all(m.endpoint == "" for m in early.port_mappings)
    sandbox.wait_for(instance_id, "running")
    running = client.get_instance(instance_id)
    assert (running.id, running.name, running.status) == (instance_id, "novitai-test-1", "running")
    assert (running.gpu_num, running.cpu_num, running.memory, running.rootfs_size) == (
        1,
        16,
        62,
        60,
    )
    assert (running.product_name, running.cluster_name) == ("RTX 4090 24GB", "US-TX-02 (Dallas)")
    http, tcp = running.port_mappings
    assert (http.port, http.type, tcp.port, tcp.type) == (8888, "http", 22, "tcp")
    assert http.endpoint.startswith(f"{sandbox.url}/_app/{instance_id}/8888/")
    assert running.created_at is not None
    assert running.last_started_at is not None


def test_list_instances_reads_every_page(
    client: NovitaClient, settings: Any, sandbox: SandboxControl
) -> None:
    settings.NOVITA_LIST_PAGE_SIZE = 2
    paged = get_client()
    ids = {paged.create_instance(create_request(f"novitai-page-{n}")) for n in range(5)}
    listed = paged.list_instances()
    assert {i.id for i in listed} == ids
    assert len(listed) == 5
    # 0-based pages with 0 read as 1 (the sandbox): the client learns it and starts at 1 next time.
    before = len(api_calls(sandbox, "/gpu/instances"))
    assert {i.id for i in paged.list_instances()} == ids
    assert len(api_calls(sandbox, "/gpu/instances")) - before == 3  # pages 1, 2, 3


def test_list_instances_filters(client: NovitaClient, sandbox: SandboxControl) -> None:
    first = client.create_instance(create_request("novitai-filter-1"))
    client.create_instance(create_request("novitai-filter-10", product_id="4080s.12c46g.sim"))
    sandbox.wait_for(first, "running")
    assert {i.name for i in client.list_instances(name="filter-1")} == {
        "novitai-filter-1",
        "novitai-filter-10",
    }
    assert [i.name for i in client.list_instances(product_name="4080 super")] == [
        "novitai-filter-10"
    ]
    client.stop_instance(first)
    sandbox.wait_for(first, "exited")
    assert [i.id for i in client.list_instances(status="exited")] == [first]


def test_find_instances_by_name_is_exact(client: NovitaClient) -> None:
    one = client.create_instance(create_request("novitai-exact-1"))
    client.create_instance(create_request("novitai-exact-10"))
    client.create_instance(create_request("NOVITAI-EXACT-1"))
    assert [i.id for i in client.find_instances_by_name("novitai-exact-1")] == [one]
    assert client.find_instances_by_name("novitai-exact-") == []


def test_find_instances_by_name_lists_duplicates_oldest_first(client: NovitaClient) -> None:
    first = client.create_instance(create_request("novitai-twice"))
    second = client.create_instance(create_request("novitai-twice"))
    assert [i.id for i in client.find_instances_by_name("novitai-twice")] == [first, second]


def test_stop_start_restart_delete(client: NovitaClient, sandbox: SandboxControl) -> None:
    instance_id = client.create_instance(create_request())
    sandbox.wait_for(instance_id, "running")
    client.restart_instance(instance_id)
    assert client.get_instance(instance_id).status in {"toRestart", "restarting"}
    sandbox.wait_for(instance_id, "running")
    client.stop_instance(instance_id)
    assert client.get_instance(instance_id).status in {"toStop", "stopping"}
    with pytest.raises(InvalidStateChange):  # start is only valid from exited
        client.start_instance(instance_id)
    sandbox.wait_for(instance_id, "exited")
    client.start_instance(instance_id)
    sandbox.wait_for(instance_id, "running")
    client.delete_instance(instance_id)
    assert client.get_instance(instance_id).status in {"toRemove", "removing", "removed"}
    history = [s["status"] for s in sandbox.instance(instance_id)["status_history"]]
    assert history[-1] in {"toRemove", "removing", "removed"}
    assert "exited" in history
    assert "restarting" in history


def test_invalid_state_change_is_not_retried(client: NovitaClient, sandbox: SandboxControl) -> None:
    instance_id = client.create_instance(create_request())
    sandbox.wait_for(instance_id, "running")
    with pytest.raises(InvalidStateChange) as caught:
        client.start_instance(instance_id)
    assert (caught.value.status, caught.value.reason) == (400, "CONFLICT")
    assert len(api_calls(sandbox, "/gpu/instance/start")) == 1


def test_edit_instance(client: NovitaClient, sandbox: SandboxControl) -> None:
    instance_id = client.create_instance(create_request())
    sandbox.wait_for(instance_id, "running")
    client.edit_instance(
        instance_id, ports=[PortSpec(8888, "http"), PortSpec(9000, "tcp")], expand_root_disk=80
    )
    edited = client.get_instance(instance_id)
    assert edited.rootfs_size == 80
    assert [(m.port, m.type) for m in edited.port_mappings] == [(8888, "http"), (9000, "tcp")]
    client.edit_instance(instance_id)  # nothing to change: still a valid call


def test_migrate_instance(client: NovitaClient, sandbox: SandboxControl) -> None:
    instance_id = client.create_instance(create_request(billing_mode="spot"))
    sandbox.wait_for(instance_id, "running")
    client.stop_instance(instance_id)
    sandbox.wait_for(instance_id, "exited")
    assert client.migrate_instance(instance_id) is None  # the sandbox keeps the id
    assert client.get_instance(instance_id).status in {"migrating", "pulling", "running"}


@pytest.mark.parametrize("spelling", ["not found", "not fount"])
@pytest.mark.parametrize("status", [404, 400])
def test_a_missing_instance_is_not_found(
    client: NovitaClient, sandbox: SandboxControl, status: int, spelling: str
) -> None:
    sandbox.set_faults(not_found_status=status, not_found_spelling=spelling)
    with pytest.raises(NotFound) as caught:
        client.get_instance("00000000deadbeef")
    assert (caught.value.status, caught.value.message) == (status, f"Novita: instance {spelling}")
    with pytest.raises(NotFound):
        client.delete_instance("00000000deadbeef")
    with pytest.raises(NotFound):
        client.stop_instance("00000000deadbeef")
    assert len(api_calls(sandbox, "/gpu/instance")) == 1  # not-found is never retried


def test_a_deleted_instance_becomes_not_found(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_timing(removed_linger=0.0)
    instance_id = client.create_instance(create_request())
    client.delete_instance(instance_id)
    sandbox.wait_for(instance_id, "removed")
    with pytest.raises(NotFound):
        client.get_instance(instance_id)
    assert client.find_instances_by_name("novitai-test-1") == []


def test_port_mappings_of_a_running_list_item(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    instance_id = client.create_instance(create_request(ports=(PortSpec(8888, "http"),)))
    sandbox.wait_for(instance_id, "running")
    (listed,) = client.list_instances()
    assert listed.port_mappings[0].port == 8888
    assert isinstance(listed.port_mappings[0], PortMapping)
