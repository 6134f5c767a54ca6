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

from .config import API_PREFIX, CORE_PREFIX


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

    @property
    def core_api_base(self) -> str:
        return self.url + CORE_PREFIX

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

    def fidelity(self) -> dict[str, Any]:
        return self._call("GET", "/fidelity")

    def clock(self) -> dict[str, Any]:
        """{"now", "offset", "frozen"}: the sandbox's clock (unix seconds)."""
        return self._call("GET", "/clock")

    def prices(self) -> dict[str, Any]:
        return self._call("GET", "/prices")

    def balance(self) -> dict[str, Any]:
        """Novita's balance detail (1/10000 USD) and "billed": everything billed so far."""
        return self._call("GET", "/balance")

    def capacity(self) -> list[dict[str, str]]:
        """The (clusterId, productId, billingMode) turned off; "*" = every one."""
        return self._call("GET", "/capacity")["off"]

    def storages(self) -> list[dict[str, Any]]:
        """Every network storage since the last reset (deleted ones too), oldest first."""
        return self._call("GET", "/storages")["storages"]

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs")["jobs"]

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

    def set_fidelity(self, **switches: Any) -> dict[str, Any]:
        return self._call("POST", "/fidelity", switches)

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the sandbox's clock forward: every plan, bill and metric moves with it."""
        return self._call("POST", "/clock", {"advance": seconds})

    def freeze_clock(self, frozen: bool = True) -> dict[str, Any]:
        """Hold the clock still (until unfrozen, only advance_clock moves it)."""
        return self._call("POST", "/clock", {"freeze": frozen})

    def set_prices(self, product_id: str, **prices: int) -> dict[str, Any]:
        """price=, spotPrice=, exitedLocalStoragePrice= (1/100000 USD), billed from now on."""
        return self._call("POST", "/prices", {"productId": product_id, **prices})

    def set_storage_price(self, cluster_id: str, price: int) -> dict[str, Any]:
        """Network storage in a cluster, 1/100000 USD per GB per day, billed from now on."""
        return self._call(
            "POST", "/prices", {"clusterId": cluster_id, "networkStoragePrice": price}
        )

    def set_balance(
        self, *, cash: int | None = None, credit_limit: int | None = None
    ) -> dict[str, Any]:
        """Set the cash balance (as of now) and the credit limit, 1/10000 USD."""
        payload: dict[str, Any] = {}
        if cash is not None:
            payload["cashBalance"] = cash
        if credit_limit is not None:
            payload["creditLimit"] = credit_limit
        return self._call("POST", "/balance", payload)

    def set_capacity(
        self,
        product_id: str,
        available: bool,
        *,
        billing_mode: str = "*",
        cluster_id: str = "*",
        creates: int | None = None,
    ) -> list[dict[str, str]]:
        """Capacity off or on; `creates`: on for that many creates only, then off again."""
        payload: dict[str, Any] = {
            "productId": product_id,
            "available": available,
            "billingMode": billing_mode,
            "clusterId": cluster_id,
        }
        if creates is not None:
            payload["creates"] = creates
        return self._call("POST", "/capacity", payload)["off"]

    def reclaim(
        self, instance_id: str, *, notice: float | None = None, reclaiming: float | None = None
    ) -> dict[str, Any]:
        """A spot reclaim: notified now, reclaimed `notice` seconds later (the timing's
        reclaim_notice by default), terminated `reclaiming` seconds after that."""
        payload: dict[str, Any] = {}
        if notice is not None:
            payload["notice"] = notice
        if reclaiming is not None:
            payload["reclaiming"] = reclaiming
        return self._call("POST", f"/instances/{quote(instance_id)}/reclaim", payload)

    def set_load(self, instance_id: str, **load: Any) -> dict[str, Any]:
        """What the instance's GPU metrics show from now on: gpu=, gpu_memory= (a percentage,
        or one per card), cpu=, memory=, root_disk=."""
        return self._call("POST", f"/instances/{quote(instance_id)}/load", load)

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
