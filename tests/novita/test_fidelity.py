"""The client against each of the sandbox's fidelity switches (novita-api.md §7.5)."""

from __future__ import annotations

from novita_sandbox.control import SandboxControl
from novitai.novita.client import NovitaClient
from novitai.novita.types import Cluster
from tests.novita.conftest import create_request
from tests.sandbox.helpers import frozen_at, instant_timing


def test_numeric_cluster_ids_are_opaque_strings(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    instant_timing(sandbox)
    sandbox.set_fidelity(cluster_ids="numeric")
    clusters = client.list_clusters()
    assert [(c.id, c.name) for c in clusters] == [
        ("1", "US-01"),
        ("2", "US-02"),
        ("5", "EU-01"),
        ("6", "EU-02"),
        ("8", "AS-01"),
    ]
    assert clusters[2] == Cluster(
        id="5",
        name="EU-01",
        available_gpu_types=("RTX 4090 24GB", "RTX 3090 24GB", "L40S 48GB"),
        support_network_storage=True,
        support_instance_network=False,
    )
    [product] = client.list_products(cluster_id="5", product_name="4090")
    assert (product.regions, product.available_in("EU-01")) == (("EU-01",), True)
    instance_id = client.create_instance(create_request(cluster_id="5"))
    got = client.get_instance(instance_id)
    assert (got.cluster_id, got.cluster_name) == ("5", "EU-01")
    storage_id = client.create_network_storage(cluster_id="5", name="v", size_gb=10)
    [volume] = client.list_network_storages(storage_id=storage_id)
    assert (volume.cluster_id, volume.cluster_name) == ("5", "EU-01")


def test_instances_without_timestamps(client: NovitaClient, sandbox: SandboxControl) -> None:
    instant_timing(sandbox)
    sandbox.set_fidelity(instance_timestamps=False)
    ids = [client.create_instance(create_request("novitai-same")) for _ in range(3)]
    got = client.get_instance(ids[0])
    assert (got.created_at, got.last_started_at, got.last_stopped_at) == (None, None, None)
    # Without createdAt "oldest first" cannot be known: the order is by id, the same every time.
    found = [i.id for i in client.find_instances_by_name("novitai-same")]
    assert found == sorted(ids)
    assert [i.id for i in client.find_instances_by_name("novitai-same")] == found


def test_empty_product_regions_mean_every_cluster(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_fidelity(product_regions="empty")
    products = client.list_products()
    assert {p.regions for p in products} == {()}
    assert all(p.available_in("US-TX-02 (Dallas)") for p in products)
    [product] = client.list_products(cluster_id="eu-nl-1", product_name="4090")
    assert (product.regions, product.available_deploy, product.inventory_state) == (
        (),
        True,
        "low",
    )
    sandbox.set_fidelity(product_regions="names")
    [named] = client.list_products(product_name="4090")
    assert named.available_in("EU-NL-01 (Amsterdam)")
    assert not named.available_in("AS-JP-03 (Osaka)")


def test_spot_status_is_read_from_the_list(client: NovitaClient, sandbox: SandboxControl) -> None:
    instant_timing(sandbox)
    now = frozen_at(sandbox, 60)
    sandbox.set_fidelity(spot_status_on_get=False)
    instance_id = client.create_instance(create_request(billing_mode="spot"))
    sandbox.reclaim(instance_id, notice=120)
    got = client.get_instance(instance_id)
    assert (got.spot_status, got.spot_reclaim_time) == ("", 0)  # a get does not say
    [listed] = client.list_instances()
    assert listed.spot_status == "notified"
    assert listed.spot_reclaim_time == int(now) + 120  # when the reclaim begins
