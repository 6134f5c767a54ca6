"""The HTTP server: the v1 API, the apps behind instance endpoints, and the control endpoints.

    /gpu-instance/openapi/v1/...      the Novita v1 API (Bearer auth), see api.py
    /openapi/v1/...                   Novita's core surface: billing, GPU metrics (Bearer auth)
    /_app/<instanceId>/<port>/...     what an instance's http endpoint serves
    /_sandbox/...                     control (no auth): stats, instances, calls, faults, timing,
                                      fidelity, offers, capacity, prices, balance, clock, reset,
                                      reclaim, vanish, load

One ThreadingHTTPServer, HTTP/1.1 keep-alive, a thread per connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import os
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from .api import BILLING_MODES, CORE_ROUTES, ROUTES, Reply, Request
from .billing import value_at as billing_value_at
from .catalog import CLUSTERS_BY_ID, PRODUCTS_BY_ID, Offer
from .config import (
    API_PREFIX,
    CORE_PREFIX,
    ConfigError,
    SandboxConfig,
    faults_update,
    fidelity_update,
    timing_update,
)
from .persist import Persister
from .state import RUNNING, ApiError, Load, Sandbox, SandboxInstance, rule_error

NO_ANSWER = 0  # the status recorded for a call whose connection was closed unanswered
INVENTORY_GPUS = {"none": 0, "low": 2, "normal": 8, "high": 8}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes every connection itself
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], sandbox: Sandbox, *, verbose: bool) -> None:
        self.sandbox = sandbox
        self.verbose = verbose
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError) or self.stopping.is_set():
            return
        super().handle_error(request, client_address)


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "NovitaSandbox/1.0"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers and body leave in one write
    timeout = 120  # idle keep-alive connections are closed after this
    server: _HTTPServer

    # --- plumbing -----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _drop(self) -> None:
        """Close the connection without answering (the caller sees a reset / empty reply)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self) -> None:
        arrived = time.time()
        body = self._read_body()
        path, _, query = self.path.partition("?")
        if path.startswith(API_PREFIX + "/"):
            self._api(path[len(API_PREFIX) :], query, body, arrived, ROUTES)
        elif path.startswith(CORE_PREFIX + "/"):
            self._api(path[len(CORE_PREFIX) :], query, body, arrived, CORE_ROUTES)
        elif path.startswith("/_app/"):
            self._app(path)
        elif path.startswith("/_sandbox/"):
            try:
                status, payload = self._control(path, query, body)
            except _ControlError as error:
                status, payload = error.status, {"error": str(error)}
            except ConfigError as error:
                status, payload = 400, {"error": str(error)}
            self._send_json(status, payload)
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    # --- the Novita API -------------------------------------------------------------------------

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        expected = self.server.sandbox.api_key
        return scheme.lower() == "bearer" and hmac.compare_digest(
            key.strip().encode(), expected.encode()
        )

    def _api(  # noqa: C901, PLR0912, PLR0915 - the request's checks in the order Novita makes them
        self, route: str, query: str, body: bytes, arrived: float, routes: dict[Any, Any]
    ) -> None:
        sb = self.server.sandbox
        method = self.command
        latency = sb.faults.latency_ms
        if latency > 0:
            self.server.stopping.wait(latency / 1000)
        drop = False
        # Calls to the core surface are logged (and matched by fail_next) under their full path.
        logged = route if routes is ROUTES else CORE_PREFIX + route
        hang = 0.0
        try:
            handler = routes.get((method, route))
            if not self._authorized():
                raise ApiError(401, "UNAUTHORIZED", "unauthorized")
            if handler is None:
                raise ApiError(404, "NOT_FOUND", f"no route {method} {route}")
            with sb.lock:
                refused, rule = sb.admit_locked(method, logged, time.time())
            if rule is not None:
                drop, hang = rule.drop, rule.hang_s
            if refused is not None:
                raise refused
            request = Request(method, route, parse_qs(query), body, sb.now())
            try:
                reply = handler(sb, request)
            finally:
                if method == "POST":
                    with sb.lock:
                        sb.changes += 1
            with sb.lock:
                rule = sb.take_rule_locked(method, logged, time.time(), after_effect=True)
            if rule is not None:
                drop, hang = rule.drop, rule.hang_s
                raise rule_error(rule)
        except ApiError as error:
            reply = Reply(error.body(), error.status, error.headers)
        except Exception:
            traceback.print_exc()
            reply = Reply(ApiError(500, "UNKNOWN", "sandbox error").body(), 500)
        if reply.lose == "close":
            drop = True
        status = NO_ANSWER if drop else reply.status
        with sb.lock:
            sb.record_locked(method, logged, status, arrived)
        if hang > 0:
            self.server.stopping.wait(hang)
        if drop:
            self._drop()
            return
        if reply.lose == "delay":
            self.server.stopping.wait(reply.delay_s)
        self._send_json(reply.status, reply.payload, reply.headers)

    # --- what instance endpoints serve ---------------------------------------------------------

    def _app(self, path: str) -> None:
        sb = self.server.sandbox
        now = sb.now()
        parts = path.split("/")  # "", "_app", id, port, ...
        instance_id = parts[2] if len(parts) > 2 else ""
        what = parts[3] if len(parts) > 3 else ""
        with sb.lock:
            sb.purge_locked(now)
            instance = sb.visible.get(instance_id)
            status = instance.status_at(now) if instance else ""
            if instance is None or status == "removed":
                code, text, kind = 404, "404 page not found\n", "text/plain; charset=utf-8"
            elif what == "logs":
                lines = [f"{s.at:.3f} {s.status} {s.error}".rstrip() for s in instance.history(now)]
                code, text, kind = 200, "\n".join(lines) + "\n", "text/plain; charset=utf-8"
            elif what != "terminal" and not any(
                str(p.port) == what and p.type == "http" for p in instance.ports
            ):
                code, text, kind = 404, "404 page not found\n", "text/plain; charset=utf-8"
            elif status != RUNNING:
                code, text, kind = 502, sb.faults.proxy_error_body, "text/html"
            elif what == "terminal" or sb.app_ready_at(instance, now) is not None:
                payload = {"status": "ok", "instanceId": instance.id, "port": what, "path": path}
                code, text, kind = 200, json.dumps(payload), "application/json"
            elif sb.app_proxy_error(instance):
                code, text, kind = 200, sb.faults.proxy_error_body, "text/html"
            else:
                code, text, kind = 503, "application is starting\n", "text/plain; charset=utf-8"
            sb.app_calls[code] += 1
        self._send(code, text.encode(), kind)

    # --- control --------------------------------------------------------------------------------

    def _control(self, path: str, query: str, body: bytes) -> tuple[int, Any]:
        sb = self.server.sandbox
        data: dict[str, Any] = {}
        if self.command == "POST" and body:
            try:
                data = json.loads(body)
            except ValueError:
                raise _ControlError(400, "body is not valid JSON") from None
            if not isinstance(data, dict):
                raise _ControlError(400, "body must be a JSON object")
        try:
            return self._control_call(path, query, data)
        finally:
            if self.command == "POST":
                with sb.lock:
                    sb.changes += 1

    def _control_call(self, path: str, query: str, data: dict[str, Any]) -> tuple[int, Any]:  # noqa: C901, PLR0911, PLR0912, PLR0915 - one branch per control endpoint
        sb = self.server.sandbox
        method = self.command
        parts = path.rstrip("/").split("/")[2:]  # after "/_sandbox"
        now = sb.now()
        match (method, parts):
            case ("GET", ["stats"]):
                with sb.lock:
                    return 200, sb.stats_locked(now)
            case ("GET", ["instances"]):
                with sb.lock:
                    return 200, {
                        "instances": [
                            sb.instance_view_locked(i, now) for i in sb.instances.values()
                        ]
                    }
            case ("GET", ["instances", instance_id]):
                with sb.lock:
                    return 200, sb.instance_view_locked(self._ledger(instance_id), now)
            case ("POST", ["instances", instance_id, "reclaim" | "vanish" as action]):
                with sb.lock:
                    instance = self._ledger(instance_id)
                    try:
                        if action == "reclaim":
                            sb.reclaim_locked(
                                instance,
                                now,
                                notice=_seconds(data, "notice"),
                                reclaiming=_seconds(data, "reclaiming"),
                            )
                        else:
                            sb.vanish_locked(instance, now)
                    except ValueError as error:
                        raise _ControlError(409, str(error)) from None
                    return 200, sb.instance_view_locked(instance, now)
            case ("POST", ["instances", instance_id, "load"]):
                with sb.lock:
                    instance = self._ledger(instance_id)
                    load = sb.set_load_locked(instance, now, **_load_changes(data, instance))
                    return 200, dataclasses.asdict(load)
            case ("GET", ["storages"]):
                with sb.lock:
                    return 200, {"storages": [sb.storage_view(s) for s in sb.storages.values()]}
            case ("GET", ["jobs"]):
                with sb.lock:
                    return 200, {"jobs": [sb.job_view(j, now) for j in sb.jobs.values()]}
            case ("GET", ["clock"]):
                return 200, sb.clock.to_json()
            case ("POST", ["clock"]):
                with sb.lock:
                    advance = _seconds(data, "advance")
                    if advance:
                        sb.clock.advance(advance)
                    freeze = data.get("freeze")
                    if freeze is not None:
                        if not isinstance(freeze, bool):
                            raise _ControlError(400, "freeze must be true or false")
                        sb.clock.freeze(freeze)
                    sb.forget_spent_locked()
                    return 200, sb.clock.to_json()
            case ("GET", ["fidelity"]):
                return 200, sb.fidelity.to_json()
            case ("POST", ["fidelity"]):
                with sb.lock:
                    sb.fidelity = fidelity_update(sb.fidelity, data)
                    sb.forget_spent_locked()  # bills_settle_hourly moves the cutoff
                    return 200, sb.fidelity.to_json()
            case ("GET", ["prices"]):
                with sb.lock:
                    return 200, self._prices(now)
            case ("POST", ["prices"]):
                with sb.lock:
                    self._set_prices(data, now)
                    return 200, self._prices(now)
            case ("GET", ["balance"]):
                with sb.lock:
                    return 200, {**sb.balance_locked(now), "billed": sb.spent_locked(now)}
            case ("POST", ["balance"]):
                with sb.lock:
                    sb.set_balance_locked(
                        now,
                        cash=_money(data, "cashBalance"),
                        credit_limit=_money(data, "creditLimit"),
                    )
                    return 200, {**sb.balance_locked(now), "billed": sb.spent_locked(now)}
            case ("GET", ["capacity"]):
                with sb.lock:
                    return 200, {"off": self._capacity_off()}
            case ("POST", ["capacity"]):
                with sb.lock:
                    self._set_capacity(data)
                    return 200, {"off": self._capacity_off()}
            case ("GET", ["calls"]):
                since_raw = parse_qs(query).get("since", [""])[-1]
                try:
                    since = float(since_raw) if since_raw else None
                except ValueError:
                    raise _ControlError(400, "since must be a unix timestamp") from None
                with sb.lock:
                    return 200, {"calls": sb.calls_since_locked(since), "now": now}
            case ("GET", ["faults"]):
                return 200, sb.faults.to_json()
            case ("POST", ["faults"]):
                with sb.lock:
                    sb.faults = faults_update(sb.faults, data, now=time.time())
                    return 200, sb.faults.to_json()
            case ("GET", ["timing"]):
                return 200, dataclasses.asdict(sb.timing)
            case ("POST", ["timing"]):
                with sb.lock:
                    sb.timing = timing_update(sb.timing, data)
                    return 200, dataclasses.asdict(sb.timing)
            case ("GET", ["offers"]):
                with sb.lock:
                    return 200, {"offers": self._offers()}
            case ("POST", ["offers"]):
                with sb.lock:
                    self._set_offer(data)
                    return 200, {"offers": self._offers()}
            case ("POST", ["reset"]):
                sb.reset()
                return 200, {"reset": True}
        raise _ControlError(404, f"no control endpoint {method} {path}")

    def _ledger(self, instance_id: str) -> SandboxInstance:
        instance = self.server.sandbox.instances.get(instance_id)
        if instance is None:
            raise _ControlError(404, f"no instance {instance_id}")
        return instance

    def _offers(self) -> list[dict[str, Any]]:
        sb = self.server.sandbox
        out = []
        for product in PRODUCTS_BY_ID.values():
            for cluster_id in CLUSTERS_BY_ID:
                offer = sb.offer(product, cluster_id)
                if offer is not None:
                    out.append(
                        {
                            "clusterId": cluster_id,
                            "productId": product.id,
                            "availableDeploy": offer.available_deploy,
                            "inventoryState": offer.inventory_state,
                            "availableGpus": offer.available_gpus,
                        }
                    )
        return out

    def _set_offer(self, data: dict[str, Any]) -> None:
        """Change one product's availability in one region: {clusterId, productId, inventoryState,
        availableDeploy?, availableGpus?}; a product may also be offered in a new region."""
        sb = self.server.sandbox
        cluster_id, product_id = data.get("clusterId"), data.get("productId")
        if cluster_id not in CLUSTERS_BY_ID or product_id not in PRODUCTS_BY_ID:
            raise _ControlError(400, "clusterId and productId must exist")
        state = data.get("inventoryState", "normal")
        if state not in INVENTORY_GPUS:
            raise _ControlError(400, "inventoryState must be none, low, normal or high")
        available = data.get("availableDeploy", state != "none")
        gpus = data.get("availableGpus", INVENTORY_GPUS[state])
        if not isinstance(available, bool) or not isinstance(gpus, int):
            raise _ControlError(400, "availableDeploy is a boolean, availableGpus an integer")
        sb.offer_overrides[(cluster_id, product_id)] = Offer(available, state, gpus)

    def _prices(self, now: float) -> dict[str, Any]:
        sb = self.server.sandbox
        return {
            "products": [
                {
                    "productId": product_id,
                    "price": p.price,
                    "spotPrice": p.spot_price,
                    "exitedLocalStoragePrice": p.exited_local_storage_price,
                }
                for product_id in PRODUCTS_BY_ID
                for p in [sb.prices(product_id, now)]
            ],
            "networkStorage": [
                {"clusterId": cluster_id, "price": billing_value_at(timeline, now)}
                for cluster_id, timeline in sb.storage_prices.items()
            ],
        }

    def _set_prices(self, data: dict[str, Any], now: float) -> None:
        """{productId, price?, spotPrice?, exitedLocalStoragePrice?} or {clusterId,
        networkStoragePrice}: 1/100000 USD, billed from now on."""
        sb = self.server.sandbox
        if "productId" in data:
            product_id = data["productId"]
            if product_id not in PRODUCTS_BY_ID:
                raise _ControlError(400, "productId must exist")
            names = {
                "price": "price",
                "spotPrice": "spot_price",
                "exitedLocalStoragePrice": "exited_local_storage_price",
            }
            unknown = set(data) - {"productId", *names}
            if unknown:
                raise _ControlError(400, f"unknown price keys: {sorted(unknown)}")
            changes = {names[key]: _units(data, key) for key in names if key in data}
            sb.set_prices_locked(product_id, now, **changes)
        elif "clusterId" in data:
            cluster_id = data["clusterId"]
            if cluster_id not in sb.storage_prices:
                raise _ControlError(400, "clusterId must be a cluster with network storage")
            sb.set_storage_price_locked(cluster_id, now, _units(data, "networkStoragePrice"))
        else:
            raise _ControlError(400, "give productId or clusterId")

    def _capacity_off(self) -> list[dict[str, str]]:
        return [
            {"clusterId": cluster, "productId": product, "billingMode": mode}
            for cluster, product, mode in sorted(self.server.sandbox.capacity_off)
        ]

    def _set_capacity(self, data: dict[str, Any]) -> None:
        """{productId, billingMode?, clusterId?, available, creates?}: billingMode and clusterId
        absent (or "*") mean every mode, every cluster; `creates` (with available true): on for
        that many creates, then off again."""
        sb = self.server.sandbox
        product_id = data.get("productId")
        mode = data.get("billingMode") or "*"
        cluster_id = data.get("clusterId") or "*"
        available = data.get("available")
        if product_id not in PRODUCTS_BY_ID:
            raise _ControlError(400, "productId must exist")
        if mode != "*" and mode not in BILLING_MODES:
            raise _ControlError(400, f"billingMode must be one of {', '.join(BILLING_MODES)}")
        if cluster_id != "*" and cluster_id not in CLUSTERS_BY_ID:
            raise _ControlError(400, "clusterId must exist")
        if not isinstance(available, bool):
            raise _ControlError(400, "available must be true or false")
        creates = data.get("creates")
        if creates is not None and (
            isinstance(creates, bool) or not isinstance(creates, int) or creates < 1
        ):
            raise _ControlError(400, "creates must be an integer >= 1")
        key = (cluster_id, product_id, mode)
        sb.capacity_creates.pop(key, None)
        if available:
            sb.capacity_off.discard(key)
            if creates is not None:
                sb.capacity_creates[key] = creates
        else:
            sb.capacity_off.add(key)


def _seconds(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _ControlError(400, f"{key} must be a number of seconds >= 0")
    return float(value)


def _units(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _ControlError(400, f"{key} must be an integer >= 0 (1/100000 USD)")
    return value


def _money(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _ControlError(400, f"{key} must be an integer >= 0 (1/10000 USD)")
    return value


def _percent(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise _ControlError(400, f"{key} must be a percentage (0-100)")
    return float(value)


def _load_changes(data: dict[str, Any], instance: SandboxInstance) -> dict[str, Any]:
    """{gpu, gpu_memory: a percentage or one per card; cpu, memory, root_disk: percentages}."""
    known = {f.name for f in dataclasses.fields(Load)}
    unknown = set(data) - known
    if unknown:
        raise _ControlError(400, f"unknown load keys: {sorted(unknown)}")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("gpu", "gpu_memory"):
            values = value if isinstance(value, list) else [value]
            if len(values) not in (1, instance.spec.gpu_num):
                raise _ControlError(400, f"{key}: one value, or one per card")
            changes[key] = tuple(_percent(key, v) for v in values)
        else:
            changes[key] = _percent(key, value)
    return changes


class SandboxServer:
    """A sandbox on host:port (0 = a free port), serving from a background thread.

    with SandboxServer(config=SandboxConfig(timing=TIMING_PRESETS["fast"])) as server:
        requests.get(server.api_base + "/clusters", headers={"Authorization": "Bearer sandbox-key"})
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "sandbox-key",
        config: SandboxConfig | None = None,
        *,
        verbose: bool = False,
        state_dir: str | os.PathLike[str] | None = None,
        fresh: bool = False,
    ) -> None:
        """state_dir: keep the world in <state_dir>/sandbox-state.json across restarts
        (persist.py); fresh: ignore what is there and start clean."""
        self.host = host
        self.port = port
        self.config = config or SandboxConfig()
        self.sandbox = Sandbox(self.config, api_key=api_key)
        self.verbose = verbose
        self.persister = (
            Persister(self.sandbox, state_dir, fresh=fresh) if state_dir is not None else None
        )
        self.restored = False  # True when start() read a saved state
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_key(self) -> str:
        return self.sandbox.api_key

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self._httpd.server_address[1]}"

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    @property
    def core_api_base(self) -> str:
        return self.url + CORE_PREFIX

    def start(self) -> SandboxServer:
        """Listen and serve; with a state_dir, read the saved state first (PersistError)."""
        if self._httpd is not None:
            return self
        if self.persister is not None:
            self.restored = self.persister.load()
        httpd = _HTTPServer((self.host, self.port), self.sandbox, verbose=self.verbose)
        if self.persister is not None:
            self.persister.start()
        self._httpd = httpd
        port = httpd.server_address[1]
        public = self.config.public_host or self.url.split("//")[1].rsplit(":", 1)[0]
        self.sandbox.public_url = f"http://{public}:{port}"
        self.sandbox.tcp_endpoint = f"{public}:{port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"novita-sandbox-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        with httpd.connections_lock:
            open_connections = list(httpd.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.persister is not None:
            self.persister.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
