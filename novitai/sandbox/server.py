"""The HTTP server: the v1 API, the apps behind instance endpoints, and the control endpoints.

    /gpu-instance/openapi/v1/...      the Novita v1 API (Bearer auth), see api.py
    /_app/<instanceId>/<port>/...     what an instance's http endpoint serves
    /_sandbox/...                     control (no auth): stats, instances, calls, faults, timing,
                                      offers, reset, reclaim, vanish

One ThreadingHTTPServer, HTTP/1.1 keep-alive, a thread per connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from .api import ROUTES, Reply, Request
from .catalog import CLUSTERS_BY_ID, PRODUCTS_BY_ID, Offer
from .config import (
    API_PREFIX,
    ConfigError,
    SandboxConfig,
    faults_update,
    timing_update,
)
from .state import RUNNING, ApiError, Sandbox, rule_error

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
            self._api(path[len(API_PREFIX) :], query, body, arrived)
        elif path.startswith("/_app/"):
            self._app(path, arrived)
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

    def _api(self, route: str, query: str, body: bytes, arrived: float) -> None:
        sb = self.server.sandbox
        method = self.command
        latency = sb.faults.latency_ms
        if latency > 0:
            self.server.stopping.wait(latency / 1000)
        drop = False
        hang = 0.0
        try:
            handler = ROUTES.get((method, route))
            if not self._authorized():
                raise ApiError(401, "UNAUTHORIZED", "unauthorized")
            if handler is None:
                raise ApiError(404, "NOT_FOUND", f"no route {method} {route}")
            now = time.time()
            with sb.lock:
                refused, rule = sb.admit_locked(method, route, now)
            if rule is not None:
                drop, hang = rule.drop, rule.hang_s
            if refused is not None:
                raise refused
            reply = handler(sb, Request(method, route, parse_qs(query), body, now))
            with sb.lock:
                rule = sb.take_rule_locked(method, route, time.time(), after_effect=True)
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
            sb.record_locked(method, route, status, arrived)
        if hang > 0:
            self.server.stopping.wait(hang)
        if drop:
            self._drop()
            return
        if reply.lose == "delay":
            self.server.stopping.wait(reply.delay_s)
        self._send_json(reply.status, reply.payload, reply.headers)

    # --- what instance endpoints serve ---------------------------------------------------------

    def _app(self, path: str, now: float) -> None:
        sb = self.server.sandbox
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
        method = self.command
        parts = path.rstrip("/").split("/")[2:]  # after "/_sandbox"
        now = time.time()
        data: dict[str, Any] = {}
        if method == "POST" and body:
            try:
                data = json.loads(body)
            except ValueError:
                raise _ControlError(400, "body is not valid JSON") from None
            if not isinstance(data, dict):
                raise _ControlError(400, "body must be a JSON object")
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
                            sb.reclaim_locked(instance, now)
                        else:
                            sb.vanish_locked(instance, now)
                    except ValueError as error:
                        raise _ControlError(409, str(error)) from None
                    return 200, sb.instance_view_locked(instance, now)
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
                    sb.faults = faults_update(sb.faults, data, now=now)
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

    def _ledger(self, instance_id: str) -> Any:
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
    ) -> None:
        self.host = host
        self.port = port
        self.config = config or SandboxConfig()
        self.sandbox = Sandbox(self.config, api_key=api_key)
        self.verbose = verbose
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

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), self.sandbox, verbose=self.verbose)
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

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
