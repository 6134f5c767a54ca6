"""Plain HTTP to novitai's API and the sandbox's control endpoints: one keep-alive connection
per thread, JSON in and out."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

# What every benchmark asks novitai for: an RTX 4090 in US-TX-02 running template 40117
# (pytorch-jupyter: http 8888 and 7860, both health-checked; tcp 22; a registry auth).
PRODUCT = "RTX 4090 24GB"
TEMPLATE = "40117"
REGION = "US-TX-02"
NO_RECEIVER = "http://127.0.0.1:9/hooks"  # a webhook URL nobody answers (nothing is delivered)


def create_body(name: str, webhook_url: str = NO_RECEIVER, **fields: Any) -> dict[str, Any]:
    """The body of POST /api/v1/instances/ (`fields`: more of it, e.g. billing_mode)."""
    return {
        "name": name,
        "product_name": PRODUCT,
        "template_id": TEMPLATE,
        "region": REGION,
        "webhook_url": webhook_url,
        **fields,
    }


T = TypeVar("T")
R = TypeVar("R")


class Http:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 60.0):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout = timeout
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = conn
        return conn

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=data, headers=self.headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed between two requests: once more.
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    def post(self, path: str, body: Any = None) -> Any:
        status, answer = self.call("POST", path, body if body is not None else {})
        if status != 200:
            raise RuntimeError(f"POST {path}: {status} {answer}")
        return answer


def in_parallel(items: Iterable[T], work: Callable[[T], R], threads: int = 16) -> list[R]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, items))


def calls_by_endpoint(stats: dict[str, Any]) -> dict[str, int]:
    """The sandbox's {"GET /gpu/instances": {"200": 12, "429": 1}} summed over statuses."""
    return {endpoint: sum(by_status.values()) for endpoint, by_status in stats["calls"].items()}


def calls_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    first, last = calls_by_endpoint(before), calls_by_endpoint(after)
    delta = {k: v - first.get(k, 0) for k, v in last.items()}
    return {k: v for k, v in sorted(delta.items()) if v}
