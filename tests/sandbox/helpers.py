"""Plain HTTP against the sandbox on loopback, and instances pinned in any status.

Usable by any test that has the `sandbox` fixture: `Api(sandbox)`, `pin(Api(sandbox), "pulling")`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlencode

from novita_sandbox.config import STATUS_DWELL_FIELDS
from novita_sandbox.control import SandboxControl

VALID_CREATE: dict[str, Any] = {
    "name": "novitai-test-1",
    "productId": "4090.16c62g.sim",
    "gpuNum": 1,
    "rootfsSize": 60,
    "imageUrl": "ghcr.io/example/pytorch-lab:2.4",
    "imageAuthId": "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
    "ports": "8888/http,7860/http,22/tcp",
    "envs": [{"key": "JUPYTER_TOKEN", "value": "demo-token"}],
    "command": "",
    "clusterId": "us-tx-2",
    "kind": "gpu",
    "billingMode": "onDemand",
}


@dataclass
class Answer:
    status: int
    headers: Message
    body: Any  # parsed JSON, or text when the answer is not JSON

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body!r})"


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    key: str | None = "sandbox-key",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode()
    return Answer(status, answer_headers, parsed)


class Api:
    """The sandbox's v1 API with the right key."""

    def __init__(self, control: SandboxControl) -> None:
        self.control = control
        self.base = control.api_base

    def get(self, path: str, **params: Any) -> Answer:
        query = f"?{urlencode(params)}" if params else ""
        return http("GET", self.base + path + query, key=self.control.api_key)

    def core_get(self, path: str, **params: Any) -> Answer:
        """Novita's core surface (/openapi/v1: billing, GPU metrics)."""
        query = f"?{urlencode(params)}" if params else ""
        return http("GET", self.control.core_api_base + path + query, key=self.control.api_key)

    def post(self, path: str, body: Any = None) -> Answer:
        return http(
            "POST", self.base + path, {} if body is None else body, key=self.control.api_key
        )

    def create(self, **changes: Any) -> str:
        answer = self.post("/gpu/instance/create", {**VALID_CREATE, **changes})
        assert answer.status == 200, answer
        return str(answer.body["id"])

    def instance(self, instance_id: str) -> dict[str, Any]:
        answer = self.get("/gpu/instance", instanceId=instance_id)
        assert answer.status == 200, answer
        return answer.body

    def action(self, verb: str, instance_id: str) -> Answer:
        return self.post(f"/gpu/instance/{verb}", {"instanceId": instance_id})


def frozen_at(sandbox: SandboxControl, boundary: int, past: float = 0.0) -> float:
    """Freeze the sandbox's clock, then move it to `past` seconds after the next multiple of
    `boundary` (3600: an hour, 86400: a UTC day); return that moment."""
    sandbox.freeze_clock()
    now = sandbox.clock()["now"]
    target = (now // boundary + 1) * boundary + past
    return float(sandbox.advance_clock(target - now)["now"])


def instant_timing(sandbox: SandboxControl, **overrides: float) -> None:
    """Every status passes at once and apps boot at once, except what `overrides` sets."""
    zero: dict[str, float] = dict.fromkeys(STATUS_DWELL_FIELDS.values(), 0.0)
    zero.update(app_boot=0.0, removed_linger=0.0, reclaim_notice=0.0, reclaiming=0.0)
    zero.update(save_image=0.0, metrics_lag=0.0)
    sandbox.set_timing(**{**zero, **overrides})


# How to bring an instance into each status and keep it there: the actions to take after create
# (with every other dwell zero) and the dwell to make long.
PIN: dict[str, tuple[tuple[str, ...], str]] = {
    "toCreate": ((), "to_create"),
    "creating": ((), "creating"),
    "pulling": ((), "pulling"),
    "running": ((), ""),
    "toStop": (("stop",), "to_stop"),
    "stopping": (("stop",), "stopping"),
    "exited": (("stop",), ""),
    "toStart": (("stop", "start"), "to_start"),
    "starting": (("stop", "start"), "starting"),
    "toRestart": (("restart",), "to_restart"),
    "restarting": (("restart",), "restarting"),
    "migrating": (("stop", "migrate"), "migrating"),
    "toRemove": (("delete",), "to_remove"),
    "removing": (("delete",), "removing"),
    "removed": (("delete",), "removed_linger"),
}


def pin(api: Api, status: str, **create: Any) -> str:
    """Create an instance that is in `status` now and stays there for a minute."""
    actions, dwell = PIN[status]
    instant_timing(api.control)
    *before, last = ("create", *actions)
    iid = api.create(**create) if last != "create" else ""
    for verb in before[1:]:
        assert api.action(verb, iid).status == 200
    if dwell:
        instant_timing(api.control, **{dwell: 60.0})
    if last == "create":
        iid = api.create(**create)
    else:
        answer = api.action(last, iid)
        assert answer.status == 200, answer
    assert api.instance(iid)["status"] == status
    return iid
