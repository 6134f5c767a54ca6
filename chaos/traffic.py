"""novitai's API as the chaos suite uses it: every answer recorded (when sent, when answered,
status, Retry-After, the error envelope's code), every create answered 202 remembered with the
end it must reach, and a background load of creates and reads at a fixed, bounded rate.

One connection per request (gunicorn's sync workers close each one anyway), and no retry: a
request the API did not answer is recorded as status 0.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from typing import Any

from bench.client import create_body
from chaos.oracle import Accepted, Response

TIMEOUT = 20.0  # longer than any answer should take; then it counts as unanswered


class Api:
    def __init__(self, base_url: str, api_key: str, *, label: str = "") -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port or 80)
        self.key = api_key
        self.label = label  # a tenant's name, for the names of what it creates
        self.lock = threading.Lock()
        self.responses: list[Response] = []
        self.accepted: dict[str, Accepted] = {}
        self._names = 0

    def call(
        self, method: str, path: str, body: Any = None, *, kind: str, auth: bool = True
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if auth:
            headers["Authorization"] = f"Bearer {self.key}"
        sent = time.time()
        status, retry_after, payload = 0, None, None
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, None if body is None else json.dumps(body), headers)
            answer = conn.getresponse()
            raw = answer.read()
            status, retry_after = answer.status, answer.getheader("Retry-After")
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode(errors="replace")
        except (OSError, http.client.HTTPException):
            status = 0
        finally:
            conn.close()
        code = ""
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            code = str(payload["error"].get("code", ""))
        with self.lock:
            self.responses.append(
                Response(sent, time.time(), method, kind, status, retry_after, code)
            )
        return status, payload

    def create(
        self,
        webhook_url: str,
        *,
        expect: frozenset[str] = frozenset({"ready"}),
        **fields: Any,
    ) -> str | None:
        """POST /api/v1/instances/; the id when answered 202 (remembered as accepted)."""
        with self.lock:
            self._names += 1
            name = f"chaos-{self.label}-{self._names:03d}".strip("-")
        status, body = self.call(
            "POST", "/api/v1/instances/", create_body(name, webhook_url, **fields), kind="create"
        )
        if status != 202 or not isinstance(body, dict):
            return None
        instance_id = str(body["id"])
        with self.lock:
            self.accepted[instance_id] = Accepted(instance_id, expect)
        return instance_id

    def expect(self, instance_id: str, *statuses: str) -> None:
        """The accepted create must now end in one of `statuses` (e.g. after a stop)."""
        with self.lock:
            self.accepted[instance_id] = Accepted(instance_id, frozenset(statuses))

    def status_of(self, instance_id: str) -> str:
        status, body = self.call("GET", f"/api/v1/instances/{instance_id}/", kind="retrieve")
        return str(body.get("status")) if status == 200 and isinstance(body, dict) else ""

    def statuses(self) -> dict[str, str]:
        """id -> status of every instance of the tenant (every page)."""
        found: dict[str, str] = {}
        page = 1
        while page <= 50:
            status, body = self.call(
                "GET", f"/api/v1/instances/?page={page}&page_size=200", kind="list"
            )
            if status != 200 or not isinstance(body, dict):
                break
            found.update({str(i["id"]): str(i["status"]) for i in body.get("results", [])})
            if not body.get("next"):
                break
            page += 1
        return found

    def read(self) -> None:
        """A read as a client polls: the list, or one of its instances."""
        with self.lock:
            ids = list(self.accepted)
        if ids and random.random() < 0.5:
            self.call("GET", f"/api/v1/instances/{random.choice(ids)}/", kind="retrieve")
        else:
            self.call("GET", "/api/v1/instances/?page_size=20", kind="list")

    def stop(self, instance_id: str) -> int:
        status, _ = self.call("POST", f"/api/v1/instances/{instance_id}/stop/", kind="stop")
        return status

    def start(self, instance_id: str) -> int:
        status, _ = self.call("POST", f"/api/v1/instances/{instance_id}/start/", kind="start")
        return status

    def ready_probe(self) -> tuple[int, Any]:
        return self.call("GET", "/health/ready", kind="health", auth=False)


class Load:
    """Creates and reads at a fixed rate in the background, until stopped or `seconds` ran out
    (and at most `max_creates` creates): a client that keeps using the API through a fault."""

    def __init__(
        self,
        api: Api,
        webhook_url: str,
        *,
        creates_per_second: float = 1.0,
        reads_per_second: float = 3.0,
        seconds: float = 60.0,
        max_creates: int = 60,
    ) -> None:
        self.api, self.webhook_url = api, webhook_url
        self.stopping = threading.Event()
        self.max_creates = max_creates
        self.created = 0
        self.deadline = time.monotonic() + seconds
        self.threads = [
            threading.Thread(target=self._loop, args=(creates_per_second, self._create)),
            threading.Thread(target=self._loop, args=(reads_per_second, api.read)),
        ]

    def _create(self) -> None:
        if self.created < self.max_creates:
            self.created += 1
            self.api.create(self.webhook_url)

    def _loop(self, rate: float, work: Any) -> None:
        if rate <= 0:
            return
        step = 1.0 / rate
        due = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            work()
            due += step
            self.stopping.wait(max(0.0, due - time.monotonic()))

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT + 5)
