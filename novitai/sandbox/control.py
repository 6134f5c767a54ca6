"""A small client for the sandbox's control endpoints (urllib only; no Django, no requests).

control = SandboxControl("http://127.0.0.1:8765")
control.set_faults(capacity_errors={"us-tx-2": -1})
control.stats()["creates_by_name"]
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from .config import API_PREFIX


class SandboxControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class SandboxControl:
    def __init__(self, url: str, api_key: str = "sandbox-key", *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http URL: {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 (http only: checked in __init__)
            self.url + "/_sandbox" + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            try:
                message = json.loads(body).get("error", body)
            except ValueError:
                message = body
            raise SandboxControlError(error.code, message) from None

    # --- reads --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def instances(self) -> list[dict[str, Any]]:
        """Every instance since the last reset (removed ones too), oldest first."""
        return self._call("GET", "/instances")["instances"]

    def instance(self, instance_id: str) -> dict[str, Any]:
        return self._call("GET", f"/instances/{quote(instance_id)}")

    def calls(self, since: float | None = None) -> list[dict[str, Any]]:
        query = "" if since is None else f"?since={since!r}"
        return self._call("GET", f"/calls{query}")["calls"]

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def timing(self) -> dict[str, Any]:
        return self._call("GET", "/timing")

    def offers(self) -> list[dict[str, Any]]:
        return self._call("GET", "/offers")["offers"]

    # --- changes ------------------------------------------------------------------------------

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/faults", changes)

    def set_timing(self, **changes: float) -> dict[str, Any]:
        return self._call("POST", "/timing", changes)

    def set_offer(
        self, cluster_id: str, product_id: str, inventory_state: str, **extra: Any
    ) -> list[dict[str, Any]]:
        payload = {
            "clusterId": cluster_id,
            "productId": product_id,
            "inventoryState": inventory_state,
            **extra,
        }
        return self._call("POST", "/offers", payload)["offers"]

    def reclaim(self, instance_id: str) -> dict[str, Any]:
        return self._call("POST", f"/instances/{quote(instance_id)}/reclaim", {})

    def vanish(self, instance_id: str) -> dict[str, Any]:
        return self._call("POST", f"/instances/{quote(instance_id)}/vanish", {})

    def reset(self) -> None:
        self._call("POST", "/reset", {})

    # --- waiting --------------------------------------------------------------------------------

    def wait_for(
        self, instance_id: str, status: str, *, timeout: float = 10.0, app_ready: bool = False
    ) -> dict[str, Any]:
        """Poll until the instance has `status` (and, with app_ready, its app answers 200)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.instance(instance_id)
            if view["status"] == status and (not app_ready or view["app_ready_at"] is not None):
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"instance {instance_id} is {view['status']}, not {status}")
            time.sleep(0.02)
