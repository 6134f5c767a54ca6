"""Save image jobs (novita-api.md §2.7, §7.4): POST /job/save/image, GET /jobs, POST /job/break."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.helpers import Api, frozen_at, instant_timing, pin


def job(api: Api, job_id: str) -> dict[str, Any]:
    answer = api.get("/jobs", jobId=job_id)
    assert answer.status == 200, answer
    [found] = answer.body["jobs"]
    return found


def save(api: Api, iid: str, image: str = "ghcr.io/acme/snap:1", **extra: Any) -> Any:
    return api.post("/job/save/image", {"instanceId": iid, "image": image, **extra})


def test_a_save_image_job_runs_then_succeeds(api: Api) -> None:
    instant_timing(api.control, save_image=120)
    now = frozen_at(api.control, 60)
    iid = api.create()
    answer = save(api, iid, registryAuthId="k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8")
    assert answer.status == 200
    assert list(answer.body) == ["jobId"]
    job_id = answer.body["jobId"]
    assert job_id.startswith("job-")
    assert job(api, job_id) == {
        "Id": job_id,
        "user": "5512093348812290",
        "type": "saveImage",
        "state": {"state": "running", "error": "", "message": ""},
        "logAddress": f"{api.control.url}/_app/{iid}/logs/jobs/{job_id}",
        "createdAt": str(int(now)),
        "instanceId": iid,
    }
    assert api.instance(iid)["jobs"] == [{"id": job_id, "type": "saveImage"}]
    api.control.advance_clock(120)
    assert job(api, job_id)["state"] == {"state": "success", "error": "", "message": ""}
    assert api.instance(iid)["jobs"] == []


def test_a_stopped_instance_can_be_saved_but_not_a_booting_one(api: Api) -> None:
    exited = pin(api, "exited")
    assert save(api, exited).status == 200
    pulling = pin(api, "pulling")
    answer = save(api, pulling)
    assert (answer.status, answer.body["reason"], answer.body["message"]) == (
        400,
        "CONFLICT",
        "invalid state change",
    )


def test_one_job_at_a_time_per_instance(api: Api) -> None:
    instant_timing(api.control, save_image=60)
    iid = api.create()
    assert save(api, iid).status == 200
    second = save(api, iid)
    assert (second.status, second.body["reason"]) == (400, "OPERATION_LIMIT")
    assert len(api.control.jobs()) == 1


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"instanceId": "0000000000000000", "image": "x:1"}, 404, "RESOURCE_NOT_FOUND"),
        ({"image": "x:1"}, 400, "VALIDATOR_PARAM"),
        ({"instanceId": "IID"}, 400, "VALIDATOR_PARAM"),
        ({"instanceId": "IID", "image": "x:1", "registryAuthId": "nope"}, 400, "VALIDATOR_PARAM"),
    ],
)
def test_save_image_is_validated(api: Api, body: dict[str, Any], status: int, reason: str) -> None:
    instant_timing(api.control)
    iid = api.create()
    if body.get("instanceId") == "IID":
        body = {**body, "instanceId": iid}
    answer = api.post("/job/save/image", body)
    assert (answer.status, answer.body["reason"]) == (status, reason)
    assert api.control.jobs() == []


def test_a_failing_push_fails_the_job(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(save_image_fail_image="denied.example")
    iid = api.create()
    job_id = save(api, iid, "denied.example/snap:1").body["jobId"]
    assert job(api, job_id)["state"] == {
        "state": "fail",
        "error": "PUSH_IMAGE_FAILED",
        "message": "failed to push image denied.example/snap:1: denied",
    }


def test_break_cancels_a_running_job(api: Api) -> None:
    instant_timing(api.control, save_image=60)
    iid = api.create()
    job_id = save(api, iid).body["jobId"]
    broken = api.post("/job/break", {"jobId": job_id})
    assert (broken.status, broken.body) == (200, {"jobId": job_id})
    assert job(api, job_id)["state"]["state"] == "break"
    again = api.post("/job/break", {"jobId": job_id})
    assert (again.status, again.body["reason"]) == (400, "CONFLICT")
    missing = api.post("/job/break", {"jobId": "job-none"})
    assert (missing.status, missing.body) == (
        400,
        {"code": 400, "reason": "JOB_NOT_FOUND", "message": "job not found", "metadata": {}},
    )


def test_jobs_list_filters_and_pages(api: Api) -> None:
    instant_timing(api.control, save_image=60)
    start = frozen_at(api.control, 60)
    a, b, c = (api.create(name=f"novitai-job-{n}") for n in range(3))
    first = save(api, a).body["jobId"]
    api.control.advance_clock(10)
    second = save(api, b).body["jobId"]
    api.post("/job/break", {"jobId": second})
    api.control.advance_clock(10)
    third = save(api, c).body["jobId"]

    def ids(**params: Any) -> list[str]:
        answer = api.get("/jobs", **params)
        assert answer.status == 200, answer
        return [j["Id"] for j in answer.body["jobs"]]

    assert ids() == [third, second, first]  # newest first
    assert ids(state="break") == [second]
    assert ids(state="running", type="saveImage") == [third, first]
    assert ids(startTime=int(start) + 5, endTime=int(start) + 15) == [second]
    assert ids(pageSize=2, pageNum=1) == [third, second]
    assert ids(pageSize=2, pageNum=2) == [first]
    assert api.get("/jobs", pageSize=2).body["total"] == 3
    for bad in ({"state": "done"}, {"type": "backup"}, {"pageSize": -1}):
        assert api.get("/jobs", **bad).body["reason"] == "VALIDATOR_PARAM"
