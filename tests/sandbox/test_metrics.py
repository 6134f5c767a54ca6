"""GPU metrics on the core surface (novita-api.md §7.4): series while running, a minute late."""

from __future__ import annotations

from typing import Any

import pytest

from novita_sandbox.control import SandboxControlError
from tests.sandbox.helpers import Api, frozen_at, instant_timing


def metrics(api: Api, iid: str, start: float, end: float, **params: Any) -> Any:
    answer = api.core_get(
        "/metrics/gpu/instance", instanceId=iid, startTime=int(start), endTime=int(end), **params
    )
    assert answer.status == 200, answer
    return answer.body


def points(values: list[tuple[float, float]]) -> list[dict[str, Any]]:
    return [{"time": int(at), "value": value} for at, value in values]


def test_series_follow_the_load_with_a_minute_of_lag(api: Api) -> None:
    instant_timing(api.control, metrics_lag=60)
    start = frozen_at(api.control, 3600)
    iid = api.create(gpuNum=2)
    api.control.advance_clock(120)
    api.control.set_load(iid, gpu=[85, 40], gpu_memory=70, cpu=30)
    api.control.advance_clock(180)  # now start + 300: points up to start + 240
    body = metrics(api, iid, start, start + 3600, interval=60)
    every = [start + 60 * n for n in range(5)]
    before, after = every[:2], every[2:]
    assert body == {
        "instanceId": iid,
        "startTime": str(int(start)),
        "endTime": str(int(start + 3600)),
        "interval": 60,
        "cpuUtilization": points([(t, 5.0) for t in before] + [(t, 30.0) for t in after]),
        "memoryUtilization": points([(t, 10.0) for t in every]),
        "rootDiskUtilization": points([(t, 1.0) for t in every]),
        "gpus": [
            {
                "index": 0,
                "gpuUtilization": points([(t, 0.0) for t in before] + [(t, 85.0) for t in after]),
                "gpuMemoryUtilization": points(
                    [(t, 0.0) for t in before] + [(t, 70.0) for t in after]
                ),
            },
            {
                "index": 1,
                "gpuUtilization": points([(t, 0.0) for t in before] + [(t, 40.0) for t in after]),
                "gpuMemoryUtilization": points(
                    [(t, 0.0) for t in before] + [(t, 70.0) for t in after]
                ),
            },
        ],
    }


def test_a_stopped_instance_has_no_points(api: Api) -> None:
    instant_timing(api.control)
    start = frozen_at(api.control, 3600)
    iid = api.create()
    api.control.advance_clock(90)
    api.action("stop", iid)
    api.control.advance_clock(300)
    body = metrics(api, iid, start, start + 600, interval=30)
    assert [p["time"] for p in body["gpus"][0]["gpuUtilization"]] == [
        int(start + 30 * n) for n in range(3)
    ]  # 0, 30, 60: running until 90


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"interval": 10}, "interval must be in [15, 3600]"),
        ({"interval": "x"}, "interval must be an integer"),
        ({"endTime": 0}, "endTime must be after startTime"),
        (
            {"startTime": 0, "endTime": 86400, "interval": 15},
            "at most 1440 points: widen the interval",
        ),
    ],
)
def test_bad_metric_queries_are_validator_param(
    api: Api, params: dict[str, Any], message: str
) -> None:
    instant_timing(api.control)
    iid = api.create()
    query = {"instanceId": iid, "startTime": 1000, "endTime": 2000, **params}
    answer = api.core_get("/metrics/gpu/instance", **query)
    assert (answer.status, answer.body["reason"], answer.body["message"]) == (
        400,
        "VALIDATOR_PARAM",
        message,
    )


def test_metrics_of_an_unknown_instance_are_not_found(api: Api) -> None:
    answer = api.core_get(
        "/metrics/gpu/instance", instanceId="0000000000000000", startTime=0, endTime=60
    )
    assert (answer.status, answer.body["reason"]) == (404, "RESOURCE_NOT_FOUND")


def test_load_changes_are_checked(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create(gpuNum=2)
    for bad in ({"gpu": 101}, {"gpu": [1, 2, 3]}, {"fan": 50}, {"cpu": True}):
        with pytest.raises(SandboxControlError) as error:
            api.control.set_load(iid, **bad)
        assert error.value.status == 400
    assert api.control.set_load(iid, gpu=50) == {
        "gpu": [50.0],
        "gpu_memory": [0.0],
        "cpu": 5.0,
        "memory": 10.0,
        "root_disk": 1.0,
    }
