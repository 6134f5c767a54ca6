"""Instances walk novita-api.md §3 on a wall clock; invalid changes are 400; delete works always."""

from __future__ import annotations

import itertools

import pytest

from tests.sandbox.helpers import PIN, Api, instant_timing, pin

CONFLICT = {"code": 400, "reason": "CONFLICT", "message": "invalid state change", "metadata": {}}
NOT_FOUND = {
    "code": 404,
    "reason": "RESOURCE_NOT_FOUND",
    "message": "instance not found",
    "metadata": {},
}


def statuses(api: Api, iid: str) -> list[str]:
    return [entry["status"] for entry in api.control.instance(iid)["status_history"]]


def test_create_walks_to_running_on_the_clock(api: Api) -> None:
    iid = api.create()
    assert api.instance(iid)["status"] in {"toCreate", "creating"}
    view = api.control.wait_for(iid, "running")
    assert statuses(api, iid) == ["toCreate", "creating", "pulling", "running"]
    times = [entry["at"] for entry in view["status_history"]]
    assert times == sorted(times)
    assert view["created_at"] == times[0]
    timing = api.control.timing()
    # each status lasted its dwell time (the plan is exact; no thread advances it)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [
        timing["to_create"],
        timing["creating"],
        timing["pulling"],
    ]


def test_stop_then_start_then_restart(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    assert api.action("stop", iid).status == 200
    assert api.instance(iid)["status"] == "exited"
    assert api.instance(iid)["lastStoppedAt"] != "0"
    assert api.action("start", iid).status == 200
    assert api.action("restart", iid).status == 200
    assert api.instance(iid)["status"] == "running"
    assert statuses(api, iid) == [
        "toCreate", "creating", "pulling", "running",
        "toStop", "stopping", "exited",
        "toStart", "starting", "running",
        "toRestart", "restarting", "running",
    ]  # fmt: skip


def test_migrate_pulls_again(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    api.action("stop", iid)
    assert (api.action("migrate", iid).status, api.instance(iid)["status"]) == (200, "running")
    assert statuses(api, iid)[-4:] == ["exited", "migrating", "pulling", "running"]


def test_stop_while_pulling_drops_the_planned_running(api: Api) -> None:
    iid = pin(api, "pulling")
    instant_timing(api.control)
    assert api.action("stop", iid).status == 200
    assert statuses(api, iid) == ["toCreate", "creating", "pulling", "toStop", "stopping", "exited"]


VALID = {
    "start": {"exited"},
    "stop": {"running", "pulling", "starting", "restarting"},
    "restart": {"running"},
    "migrate": {"exited"},
}


@pytest.mark.parametrize("status", sorted(PIN))
@pytest.mark.parametrize("verb", sorted(VALID))
def test_state_changes_are_checked(api: Api, status: str, verb: str) -> None:
    iid = pin(api, status)
    before = statuses(api, iid)
    answer = api.action(verb, iid)
    if status in VALID[verb]:
        assert answer.status == 200, answer
        assert statuses(api, iid) != before
    else:
        assert (answer.status, answer.body) == (400, CONFLICT)
        assert statuses(api, iid) == before


@pytest.mark.parametrize("status", sorted(set(PIN) - {"toRemove", "removing", "removed"}))
def test_delete_works_from_every_status(api: Api, status: str) -> None:
    iid = pin(api, status)
    instant_timing(api.control, to_remove=60)
    answer = api.action("delete", iid)
    assert (answer.status, answer.body) == (200, {})
    assert api.instance(iid)["status"] == "toRemove"
    assert statuses(api, iid)[-1] == "toRemove"


@pytest.mark.parametrize("status", ["toRemove", "removing", "removed"])
def test_delete_again_changes_nothing(api: Api, status: str) -> None:
    iid = pin(api, status)
    before = api.control.instance(iid)
    assert (api.action("delete", iid).status, api.control.instance(iid)) == (200, before)


def test_removed_instance_lingers_then_is_gone(api: Api) -> None:
    instant_timing(api.control, removed_linger=60)
    iid = api.create()
    api.action("delete", iid)
    assert api.instance(iid)["status"] == "removed"
    assert [i["id"] for i in api.get("/gpu/instances").body["instances"]] == [iid]
    instant_timing(api.control)
    other = api.create()
    api.action("delete", other)
    answer = api.get("/gpu/instance", instanceId=other)
    assert (answer.status, answer.body) == (404, NOT_FOUND)
    listed = api.get("/gpu/instances").body
    assert ([i["id"] for i in listed["instances"]], listed["total"]) == ([iid], 1)
    view = api.control.instance(other)
    assert (view["status"], view["visible"]) == ("removed", False)
    assert view["removed_at"] == view["status_history"][-1]["at"]


def test_monthly_instances_cannot_be_deleted(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create(month=1)
    assert api.instance(iid)["endTime"] != "-1"
    answer = api.action("delete", iid)
    assert (answer.status, answer.body["reason"]) == (400, "PREPAID_INSTANCE_NOT_SUPPORT_RELEASE")
    assert api.instance(iid)["status"] == "running"


@pytest.mark.parametrize("verb", ["start", "stop", "restart", "delete", "migrate", "edit"])
def test_unknown_instance_is_not_found(api: Api, verb: str) -> None:
    answer = api.action(verb, "0123456789abcdef")
    assert (answer.status, answer.body) == (404, NOT_FOUND)


def test_not_billed_before_pulling(api: Api) -> None:
    iid = pin(api, "creating")
    assert api.control.instance(iid)["billed_seconds"] == 0.0


# --- listing --------------------------------------------------------------------------------------


def test_list_pages_newest_first(api: Api) -> None:
    api.control.set_timing(to_create=60)
    ids = [api.create(name=f"novitai-page-{n}") for n in range(7)]
    newest_first = ids[::-1]

    def page(**params: object) -> list[str]:
        body = api.get("/gpu/instances", **params).body
        assert body["total"] == 7
        return [i["id"] for i in body["instances"]]

    assert page() == newest_first
    assert page(pageSize=3, pageNum=0) == page(pageSize=3, pageNum=1) == newest_first[:3]
    assert page(pageSize=3, pageNum=2) == newest_first[3:6]
    assert page(pageSize=3, pageNum=3) == newest_first[6:]
    assert page(pageSize=3, pageNum=4) == []


def test_list_filters(api: Api) -> None:
    instant_timing(api.control)
    a = api.create(name="novitai-ab12")
    b = api.create(name="novitai-ab123", productId="4080s.12c46g.sim")
    c = api.create(name="other-thing")
    api.action("stop", c)

    def ids(**params: object) -> list[str]:
        body = api.get("/gpu/instances", **params).body
        assert body["total"] == len(body["instances"])
        return [i["id"] for i in body["instances"]]

    assert ids(name="novitai-ab12") == [b, a]  # fuzzy, like Novita: match by exact name yourself
    assert ids(name="AB123") == [b]
    assert ids(name="novitai-zz") == []
    assert ids(status="exited") == [c]
    assert ids(status="running") == [b, a]
    assert ids(productName="4080 super") == [b]
    assert ids(status="running", name="other") == []


def test_list_with_bad_page_params_is_400(api: Api) -> None:
    for params in ({"pageSize": "x"}, {"pageNum": -1}):
        answer = api.get("/gpu/instances", **params)
        assert (answer.status, answer.body["reason"]) == (400, "VALIDATOR_PARAM")
