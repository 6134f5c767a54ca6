"""Answers the sandbox does not give, from a tiny real HTTP server: odd types, garbage, paging
that never ends, redirects, a 404 that is not Novita's."""

from __future__ import annotations

from typing import Any

import pytest

from novitai.novita.client import NovitaClient, get_client
from novitai.novita.errors import GarbledResponse, MalformedResponse, RateLimited, UnknownOutcome
from novitai.novita.types import (
    NovitaInstance,
    PortMapping,
    PortSpec,
    Secret,
    SshAccess,
    StatusError,
)
from tests.novita.conftest import Canned, OddNovita, create_request, sample


def instance(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"{n:016x}", "name": f"novitai-{n}", "status": "running", **extra}


def test_an_odd_instance_parses(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on(
        "GET",
        "/gpu/instance",
        Canned(
            200,
            {
                "id": "9c41e07ab25d6f13",
                "name": "novitai-odd",
                "status": "pending",
                "statusError": {"state": "pulling", "message": "slow registry"},
                "gpuNum": "2",
                "cpuNum": "32",
                "memory": "124",
                "rootfsSize": "60",
                "billingMode": "",
                "spotStatus": "",
                "spotReclaimTime": "0",
                "portMappings": [{"port": "8888", "type": "http"}, {"port": 22, "endpoint": ""}],
                "createdAt": "1754035200",
                "connectComponentSSH": {"password": "Sim-Pass-1234"},
                "someFutureField": [{"x": 1}],
            },
        ),
    )
    assert odd_client.get_instance("9c41e07ab25d6f13") == NovitaInstance(
        id="9c41e07ab25d6f13",
        name="novitai-odd",
        status="pending",
        status_error=StatusError("pulling", "slow registry"),
        gpu_num=2,
        cpu_num=32,
        memory=124,
        rootfs_size=60,
        port_mappings=(PortMapping(8888, "", "http"), PortMapping(22, "", "")),
        created_at=1754035200,
        ssh=SshAccess(host="", port=0, user="", password=Secret("Sim-Pass-1234")),
    )
    (seen,) = odd_novita.seen("/gpu/instance")
    assert seen.query == {"instanceId": ["9c41e07ab25d6f13"]}
    assert seen.headers["Authorization"] == "Bearer odd-novita-key"
    assert seen.headers["Content-Type"] == "application/json"


def test_the_create_body(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on("POST", "/gpu/instance/create", Canned(200, {"id": "9c41e07ab25d6f13"}))
    assert odd_client.create_instance(create_request("novitai-body")) == "9c41e07ab25d6f13"
    assert odd_novita.seen("/gpu/instance/create")[0].body == {
        "name": "novitai-body",
        "productId": "4090.16c62g.sim",
        "gpuNum": 1,
        "rootfsSize": 60,
        "imageUrl": "ghcr.io/example/pytorch-lab:2.4",
        "imageAuthId": "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
        "clusterId": "us-tx-2",
        "kind": "gpu",
        "billingMode": "onDemand",
        "ports": "8888/http,22/tcp",
        "envs": [{"key": "JUPYTER_TOKEN", "value": "demo-token"}],
        "command": "",
    }


def test_query_parameters_of_the_listings(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on("GET", "/products", Canned(200, {"data": []}))
    odd_novita.on("GET", "/templates", Canned(200, {"template": [], "total": 0}))
    odd_novita.on("GET", "/gpu/instances", Canned(200, {"instances": [], "total": 0}))
    odd_client.list_products(
        cluster_id="eu-nl-1",
        gpu_num=2,
        product_name="4090",
        min_cpu_per_gpu=8,
        min_memory_per_gpu=32,
        min_rootfs_size=50,
        billing_method="spot",
    )
    odd_client.list_templates(name="comfy", channel=["official", "community"])
    odd_client.list_instances(name="novitai-1", product_name="RTX 4090", status="running")
    assert odd_novita.seen("/products")[0].query == {
        "clusterId": ["eu-nl-1"],
        "gpuNum": ["2"],
        "productName": ["4090"],
        "minCpuPerGpu": ["8"],
        "minMemoryPerGpu": ["32"],
        "minRootFSSize": ["50"],
        "billingMethod": ["spot"],
    }
    assert odd_novita.seen("/templates")[0].query == {
        "name": ["comfy"],
        "channel": ["official,community"],
        "pageSize": ["100"],
        "pageNum": ["0"],
    }
    assert odd_novita.seen("/gpu/instances")[0].query == {
        "name": ["novitai-1"],
        "productName": ["RTX 4090"],
        "status": ["running"],
        "pageSize": ["100"],
        "pageNum": ["0"],
    }


def test_mutation_bodies_and_answers(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on("POST", "/gpu/instance/start", Canned(200, b""))  # no body at all
    odd_novita.on(
        "POST", "/gpu/instance/stop", Canned(200, {"instanceId": "a1", "state": "toStop"})
    )
    odd_novita.on("POST", "/gpu/instance/edit", Canned(200, "OK"))  # not JSON: not needed
    odd_novita.on("POST", "/gpu/instance/migrate", Canned(200, {"newInstanceId": "b2"}))
    odd_client.start_instance("a1")
    odd_client.stop_instance("a1")
    odd_client.edit_instance("a1", ports=[PortSpec(8080, "http")], expand_root_disk=100)
    assert odd_client.migrate_instance("a1") == "b2"
    assert odd_novita.seen("/gpu/instance/start")[0].body == {"instanceId": "a1"}
    assert odd_novita.seen("/gpu/instance/edit")[0].body == {
        "instanceId": "a1",
        "ports": [{"port": 8080, "type": "http"}],
        "expandRootDisk": 100,
    }


def test_pages_until_total(odd_novita: OddNovita, odd_client: NovitaClient, fast: Any) -> None:
    fast.NOVITA_LIST_PAGE_SIZE = 2
    odd_novita.on(
        "GET",
        "/gpu/instances",
        Canned(200, {"instances": [instance(1), instance(2)], "total": "4"}),
        Canned(200, {"instances": [instance(3), instance(4)], "total": "4"}),
    )
    listed = get_client().list_instances()
    assert [i.id for i in listed] == [f"{n:016x}" for n in (1, 2, 3, 4)]
    assert [r.query["pageNum"] for r in odd_novita.seen("/gpu/instances")] == [["0"], ["1"]]


def test_a_server_with_smaller_pages_is_read_to_the_total(
    odd_novita: OddNovita, odd_client: NovitaClient, fast: Any
) -> None:
    fast.NOVITA_LIST_PAGE_SIZE = 3
    odd_novita.on(
        "GET",
        "/gpu/instances",
        *[
            Canned(200, {"instances": [instance(n), instance(n + 1)], "total": 6})
            for n in (1, 3, 5)
        ],
    )
    listed = get_client().list_instances()
    assert [i.name for i in listed] == [f"novitai-{n}" for n in range(1, 7)]
    assert len(odd_novita.seen("/gpu/instances")) == 3


def test_an_empty_page_ends_a_listing_that_shrank(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on(
        "GET",
        "/gpu/instances",
        Canned(200, {"instances": [instance(n) for n in range(100)], "total": 103}),
        Canned(200, {"instances": [instance(100)], "total": 103}),  # two went away
        Canned(200, {"instances": [], "total": 101}),
    )
    assert len(odd_client.list_instances()) == 101
    assert len(odd_novita.seen("/gpu/instances")) == 3


def test_pages_until_a_short_page_without_total(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_client.config  # noqa: B018 (page size 100 from the fixture)
    full = {"instances": [instance(n) for n in range(100)]}
    odd_novita.on("GET", "/gpu/instances", Canned(200, full), Canned(200, {"instances": []}))
    assert len(odd_client.list_instances()) == 100
    assert len(odd_novita.seen("/gpu/instances")) == 2


def test_pages_that_repeat_themselves(
    odd_novita: OddNovita, odd_client: NovitaClient, fast: Any
) -> None:
    fast.NOVITA_LIST_PAGE_SIZE = 2
    same = {"instances": [instance(1), instance(2)]}
    odd_novita.on("GET", "/gpu/instances", Canned(200, same))  # ignores pageNum, no total
    assert [i.id for i in get_client().list_instances()] == [f"{n:016x}" for n in (1, 2)]
    odd_novita.on("GET", "/gpu/instances", Canned(200, {**same, "total": 7}))
    with pytest.raises(MalformedResponse, match="repeat themselves: 2 of 7"):
        get_client().list_instances()


def test_a_listing_that_never_ends(
    odd_novita: OddNovita, odd_client: NovitaClient, fast: Any
) -> None:
    fast.NOVITA_LIST_PAGE_SIZE = 1
    client = get_client()
    client.max_pages = 6
    odd_novita.on(
        "GET", "/gpu/instances", *[Canned(200, {"instances": [instance(n)]}) for n in range(50)]
    )
    with pytest.raises(MalformedResponse, match="did not end after 6 pages"):
        client.list_instances()
    assert len(odd_novita.seen("/gpu/instances")) == 6


def test_a_wrongly_shaped_answer_is_malformed_and_not_retried(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on("GET", "/clusters", Canned(200, {"data": "us-tx-2"}))
    odd_novita.on("GET", "/gpu/instance", Canned(200, ["9c41e07ab25d6f13"]))
    with pytest.raises(MalformedResponse) as caught:
        odd_client.list_clusters()
    assert str(caught.value) == (
        "Novita's answer has the wrong shape: data: expected list, got str endpoint=/clusters"
    )
    with pytest.raises(MalformedResponse, match="answer: expected object, got list"):
        odd_client.get_instance("9c41e07ab25d6f13")
    assert len(odd_novita.seen("/clusters")) == 1


def test_a_2xx_that_is_not_json_is_garbled_and_retried(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    page = "<html><body>502 Bad Gateway</body></html>"
    odd_novita.on("GET", "/clusters", Canned(200, page, {"Content-Type": "text/html"}))
    with pytest.raises(GarbledResponse, match=r"not JSON \(text/html\)"):
        odd_client.list_clusters()
    assert len(odd_novita.seen("/clusters")) == 4


def test_a_create_answered_with_garbage_is_unknown_outcome(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on("POST", "/gpu/instance/create", Canned(200, '{"id": "9c41e07a'))  # cut off
    with pytest.raises(UnknownOutcome):
        odd_client.create_instance(create_request())
    odd_novita.on("POST", "/gpu/instance/create", Canned(200, {"instanceId": "9c41e07ab25d6f13"}))
    with pytest.raises(UnknownOutcome, match="has no instance id"):
        odd_client.create_instance(create_request())
    assert len(odd_novita.seen("/gpu/instance/create")) == 2  # never retried


def test_a_404_that_is_not_novitas_is_not_not_found(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on(
        "GET", "/gpu/instance", Canned(404, "404 page not here", {"Content-Type": "text/plain"})
    )
    with pytest.raises(MalformedResponse, match="is NOVITA_API_BASE_URL right"):
        odd_client.get_instance("9c41e07ab25d6f13")


def test_redirects_are_not_followed(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on("POST", "/gpu/instance/delete", Canned(302, b"", {"Location": "/elsewhere"}))
    with pytest.raises(MalformedResponse, match="unexpected HTTP 302"):
        odd_client.delete_instance("a1")
    assert [r.path for r in odd_novita.requests] == ["/gpu-instance/openapi/v1/gpu/instance/delete"]


def test_429_without_retry_after_backs_off(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    retries = sample("novita_retries_total", {"endpoint": "/clusters"})
    odd_novita.on(
        "GET",
        "/clusters",
        Canned(429, {"reason": "RATE_LIMIT_EXCEEDED"}),
        Canned(200, {"data": []}),
    )
    assert odd_client.list_clusters() == []
    assert sample("novita_retries_total", {"endpoint": "/clusters"}) - retries == 1
    odd_novita.on("GET", "/clusters", Canned(429, {}))
    with pytest.raises(RateLimited) as caught:
        odd_client.list_clusters()
    assert 0 <= caught.value.retry_after <= 0.02  # the default backoff (cap 0.02 s in tests)


def test_retry_after_as_an_http_date(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on(
        "GET",
        "/clusters",
        Canned(429, {}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # already past
        Canned(200, {"data": []}),
    )
    assert odd_client.list_clusters() == []
    assert len(odd_novita.seen("/clusters")) == 2
