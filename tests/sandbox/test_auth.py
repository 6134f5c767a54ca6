"""Bearer auth on every API path; the control and app paths need none."""

from __future__ import annotations

import pytest

from novita_sandbox.api import ROUTES
from novita_sandbox.control import SandboxControl
from tests.sandbox.helpers import Api, http, instant_timing

UNAUTHORIZED = {"code": 401, "reason": "UNAUTHORIZED", "message": "unauthorized", "metadata": {}}


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES))
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic sandbox-key"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong-key", "wrong-scheme", "empty"],
)
def test_every_api_path_needs_the_key(
    sandbox: SandboxControl, method: str, path: str, headers: dict[str, str]
) -> None:
    body = {"instanceId": "x"} if method == "POST" else None
    answer = http(method, sandbox.api_base + path, body, key=None, headers=headers)
    assert (answer.status, answer.body) == (401, UNAUTHORIZED)
    assert sandbox.stats()["calls"] == {f"{method} {path}": {"401": 1}}
    assert sandbox.instances() == []


def test_unknown_api_path_is_401_before_404(sandbox: SandboxControl) -> None:
    assert http("GET", sandbox.api_base + "/nope", key=None).status == 401
    answer = http("GET", sandbox.api_base + "/nope")
    assert (answer.status, answer.body["reason"]) == (404, "NOT_FOUND")


def test_the_key_is_case_sensitive_and_the_scheme_is_not(sandbox: SandboxControl) -> None:
    assert http("GET", sandbox.api_base + "/clusters", key="SANDBOX-KEY").status == 401
    answer = http(
        "GET",
        sandbox.api_base + "/clusters",
        key=None,
        headers={"Authorization": "bearer sandbox-key"},
    )
    assert answer.status == 200


def test_control_and_app_paths_need_no_key(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    assert http("GET", api.control.url + "/_sandbox/stats", key=None).status == 200
    endpoint = api.instance(iid)["portMappings"][0]["endpoint"]
    assert http("GET", endpoint, key=None).status == 200
