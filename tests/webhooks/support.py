"""Webhook test parts: a real HTTP receiver on loopback, and a delivery recorded the way
provisioning records one."""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.db import transaction

from tenants.models import Tenant
from webhooks.models import DeliveryAttempt, WebhookDelivery
from webhooks.services import webhook_deliver, webhook_event_record

INSTANCE_ID = uuid.UUID("5d9e1c8a-2f4b-4c6e-9a1d-7b3c2e1f0a9b")
INSTANCE_DATA: dict[str, Any] = {
    "id": str(INSTANCE_ID),
    "status": "ready",
    "gpu": "RTX 4090",
    "endpoints": [{"port": 8080, "url": "https://abc-8080.example.net"}],
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    """A real http.server on 127.0.0.1 that records every request and answers from a queue
    (then `default`). `connections` counts TCP connections accepted."""

    def __init__(self, *, tls_context: Any = None, bind: str = "127.0.0.1") -> None:
        self.requests: list[Received] = []
        self.answers: deque[Answer] = deque()
        self.default = Answer()
        self.connections = 0
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                answer = receiver.answers.popleft() if receiver.answers else receiver.default
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                receiver.connections += 1
                return True

        self.server = Server((bind, 0), Handler)
        self.bind = bind
        self.scheme = "http"
        if tls_context is not None:
            tls_context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hooks/novitai", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.bind}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def record(tenant: Tenant, url: str, event_type: str = "instance.ready") -> WebhookDelivery:
    """A delivery recorded as provisioning records one: inside its transaction."""
    with transaction.atomic():
        return webhook_event_record(
            tenant=tenant,
            url=url,
            event_type=event_type,
            data=INSTANCE_DATA,
            instance_id=INSTANCE_ID,
        )


def make_due(delivery: WebhookDelivery) -> None:
    """Moves the next attempt into the past: time passes without a timed test."""
    from datetime import timedelta

    from django.utils import timezone

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def deliver(delivery: WebhookDelivery) -> DeliveryAttempt:
    """Makes the due attempt of `delivery`, which must be due."""
    attempt = webhook_deliver(delivery_id=delivery.pk)
    assert attempt is not None
    return attempt
