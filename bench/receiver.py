"""A webhook receiver on loopback: records when each delivery arrived and verifies its signature
with the `standardwebhooks` reference implementation (as a caller of novitai would)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass(frozen=True)
class Arrival:
    at: float  # unix seconds, when the body had been read
    webhook_id: str
    type: str
    instance_id: str
    novita_instance_id: str
    ready_at: float | None  # the instance's ready_at in the body (when novitai marked it ready)
    signature_valid: bool
    # The body's data (the instance's representation), for what the fields above leave out.
    data: dict[str, Any] = field(default_factory=dict, compare=False)


def _unix(value: Any) -> float | None:
    return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None


class Receiver:
    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.time()
                arrival = receiver.record(at, body, {k.lower(): v for k, v in self.headers.items()})
                receiver.answer(self, arrival)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, arrival: Arrival) -> None:
        """How a delivery is answered once recorded: 204 at once (a subclass may do worse)."""
        handler.send_response(204)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def record(self, at: float, body: bytes, headers: dict[str, str]) -> Arrival:
        try:
            payload = self.webhook.verify(body, headers)
            valid = True
        except WebhookVerificationError:
            payload, valid = json.loads(body or b"{}"), False
        data = (payload or {}).get("data") or {}
        arrival = Arrival(
            at=at,
            webhook_id=headers.get("webhook-id", ""),
            type=str((payload or {}).get("type", "")),
            instance_id=str(data.get("id", "")),
            novita_instance_id=str(data.get("novita_instance_id") or ""),
            ready_at=_unix(data.get("ready_at")),
            signature_valid=valid,
            data=data if isinstance(data, dict) else {},
        )
        with self.lock:
            self.arrivals.append(arrival)
        return arrival

    def of(self, event_type: str, instance_ids: set[str] | None = None) -> list[Arrival]:
        with self.lock:
            return [
                a
                for a in self.arrivals
                if a.type == event_type and (instance_ids is None or a.instance_id in instance_ids)
            ]
