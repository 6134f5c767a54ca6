"""Webhook receivers of the chaos suite: bench's receiver (signatures verified with
`standardwebhooks`), recording when each POST's answer was complete, and able to answer badly:

    ChaosReceiver(secret)                          204 at once
    ChaosReceiver(secret, delay=2.0)               204 after 2 s
    ChaosReceiver(secret, drips=[30, 75], drip_default=15)
        a slow (drip-feeding) receiver: the answer to its first POST leaves one byte a second
        for 30 s, to the second for 75 s, to any later one for 15 s — every one a valid 200 in
        the end, unless the sender gives up first (then the connection is closed)

Every wait is bounded and ends when the receiver stops.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler

from bench.receiver import Arrival, Receiver
from chaos.oracle import Received

DRIP_INTERVAL = 1.0  # seconds between two bytes of a drip-fed answer


class ChaosReceiver(Receiver):
    def __init__(
        self,
        secret: str,
        *,
        delay: float = 0.0,
        drips: list[float] | None = None,
        drip_default: float = 0.0,
    ) -> None:
        super().__init__(secret)
        self.delay = delay
        self.drips = list(drips or [])
        self.drip_default = drip_default
        self.stopping = threading.Event()
        self.finished: dict[int, float] = {}  # id(arrival) -> when its answer was done
        self.open = 0  # answers being drip-fed now
        # A sender that gave up mid-answer is expected here, not an error to print.
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    @property
    def drip_feeding(self) -> bool:
        return bool(self.drips) or self.drip_default > 0

    def stop(self) -> None:
        self.stopping.set()
        super().stop()

    def answer(self, handler: BaseHTTPRequestHandler, arrival: Arrival) -> None:
        try:
            if self.drip_feeding:
                self._drip(handler, arrival)
            else:
                if self.delay > 0:
                    self.stopping.wait(self.delay)
                super().answer(handler, arrival)
        finally:
            with self.lock:
                self.finished[id(arrival)] = time.time()

    def _drip(self, handler: BaseHTTPRequestHandler, arrival: Arrival) -> None:
        with self.lock:
            index = sum(1 for a in self.arrivals if a.at <= arrival.at) - 1
            seconds = self.drips[index] if index < len(self.drips) else self.drip_default
            self.open += 1
        # A valid answer, padded so that it takes `seconds` at one byte per DRIP_INTERVAL.
        head, tail = b"HTTP/1.1 200 OK\r\nX-Drip: ", b"\r\nContent-Length: 0\r\n\r\n"
        padding = max(0, int(seconds / DRIP_INTERVAL) - len(head) - len(tail))
        answer = head + b"." * padding + tail
        handler.close_connection = True
        try:
            for byte in answer:
                if self.stopping.wait(DRIP_INTERVAL):
                    break
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
        except OSError:
            pass  # the sender gave up: its attempt is over
        finally:
            with self.lock:
                self.open -= 1

    def received(self) -> list[Received]:
        with self.lock:
            return [
                Received(
                    url=self.url,
                    webhook_id=a.webhook_id,
                    event_type=a.type,
                    instance_id=a.instance_id,
                    started=a.at,
                    finished=self.finished.get(id(a)),
                    signature_valid=a.signature_valid,
                )
                for a in self.arrivals
            ]
