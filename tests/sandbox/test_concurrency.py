"""One lock around the state: concurrent callers never lose, double or tear anything."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tests.sandbox.helpers import VALID_CREATE, Answer, Api, http, instant_timing

T = TypeVar("T")


def in_parallel(count: int, work: Callable[[int], T], threads: int = 16) -> list[T]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, range(count)))


def test_concurrent_creates_are_all_kept_once(api: Api) -> None:
    instant_timing(api.control)

    def create(n: int) -> Answer:
        return api.post("/gpu/instance/create", {**VALID_CREATE, "name": f"novitai-c{n:03d}"})

    answers = in_parallel(200, create)
    assert {a.status for a in answers} == {200}
    ids = {a.body["id"] for a in answers}
    assert len(ids) == 200
    stats = api.control.stats()
    assert stats["creates_by_name"] == {f"novitai-c{n:03d}": 1 for n in range(200)}
    assert stats["calls"] == {"POST /gpu/instance/create": {"200": 200}}
    listed = [
        i["id"]
        for p in (1, 2)
        for i in api.get("/gpu/instances", pageSize=100, pageNum=p).body["instances"]
    ]
    assert sorted(listed) == sorted(ids)


def test_concurrent_stops_of_one_instance_succeed_once(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    answers = in_parallel(20, lambda _: api.action("stop", iid))
    assert Counter(a.status for a in answers) == {200: 1, 400: 19}
    history = [e["status"] for e in api.control.instance(iid)["status_history"]]
    assert history == ["toCreate", "creating", "pulling", "running", "toStop", "stopping", "exited"]


def test_rate_limit_is_exact_under_concurrency(api: Api) -> None:
    api.control.set_faults(rate_limit_per_second=0.25, rate_limit_window_s=40)  # 10 per window
    answers = in_parallel(40, lambda _: api.get("/clusters"))
    assert Counter(a.status for a in answers) == {200: 10, 429: 30}


def test_fail_next_count_is_exact_under_concurrency(api: Api) -> None:
    api.control.set_faults(fail_next=[{"path": "/gpu/instances", "count": 5, "status": 503}])
    answers = in_parallel(30, lambda _: api.get("/gpu/instances"))
    assert Counter(a.status for a in answers) == {200: 25, 503: 5}
    assert api.control.faults()["fail_next"] == []


def test_reads_and_writes_interleave_without_errors(api: Api) -> None:
    instant_timing(api.control)
    seed = [api.create(name=f"novitai-s{n}") for n in range(20)]

    def mixed(n: int) -> Answer:
        iid = seed[n % len(seed)]
        match n % 5:
            case 0:
                return api.get("/gpu/instances", pageSize=7, pageNum=n % 4)
            case 1:
                return api.get("/gpu/instance", instanceId=iid)
            case 2:
                return api.post("/gpu/instance/create", {**VALID_CREATE, "name": f"novitai-m{n}"})
            case 3:
                return api.action("restart", iid)
            case _:
                return http("GET", api.control.url + "/_sandbox/stats", key=None)

    answers = in_parallel(300, mixed)
    assert {a.status for a in answers} <= {200, 400}
    assert all(a.body["reason"] == "CONFLICT" for a in answers if a.status == 400)
    stats = api.control.stats()
    assert stats["live_instances"] == 20 + 60
    assert sum(sum(v.values()) for v in stats["calls"].values()) == 20 + 240
