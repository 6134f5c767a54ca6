"""Each attempt's whole time is bounded by WEBHOOK_TIMEOUT_SECONDS, whatever the receiver does:
a real socket server that drips its answer (the status line and headers, or the body) one byte at
a time, each byte well within a socket timeout, the whole far beyond the deadline.

Scaled down: a byte every 0.25 s against a 1 s deadline stands for a byte every 2 s against 10 s.
What is asserted is what each side saw, not how long it took: the attempt gives up, and the
receiver sees it go before it has sent its answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from webhooks.transport import FailureKind, PostFailed, webhook_post

EVERY = 0.25
TIMEOUT = 1.0
STATUS_AND_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n"
BODY = b"x" * 64


class Drip:
    """Reads one request, then sends `at_once` and then `slowly` one byte every EVERY seconds,
    until it is done or the client has gone."""

    def __init__(self, *, at_once: bytes, slowly: bytes) -> None:
        self.at_once, self.slowly = at_once, slowly
        self.sent_slowly = 0
        self.client_gone = False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            try:
                conn.sendall(self.at_once)
                for byte in self.slowly:
                    time.sleep(EVERY)
                    conn.sendall(bytes([byte]))
                    self.sent_slowly += 1
            except OSError:  # the client closed its end: the next byte had nowhere to go
                self.client_gone = True

    def finish(self) -> None:
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture
def post(settings: Any) -> Any:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    def post(port: int) -> Any:
        return webhook_post(
            url=f"http://127.0.0.1:{port}/hook",
            body=b"{}",
            headers={"Content-Type": "application/json"},
            timeout_seconds=TIMEOUT,
        )

    return post


@pytest.fixture
def slow_headers() -> Iterator[Drip]:
    drip = Drip(at_once=b"", slowly=STATUS_AND_HEADERS + BODY)
    yield drip
    drip.finish()


@pytest.fixture
def slow_body() -> Iterator[Drip]:
    drip = Drip(at_once=STATUS_AND_HEADERS, slowly=BODY)
    yield drip
    drip.finish()


def test_a_receiver_dripping_its_status_line_and_headers_times_out(
    post: Any, slow_headers: Drip
) -> None:
    with pytest.raises(PostFailed) as caught:
        post(slow_headers.port)
    assert (caught.value.kind, caught.value.message) == (
        FailureKind.TIMEOUT,
        "No answer within 1 s.",
    )
    assert caught.value.address == "127.0.0.1"
    slow_headers.finish()
    assert slow_headers.client_gone is True
    assert slow_headers.sent_slowly < len(STATUS_AND_HEADERS)  # cut before the headers ended


def test_a_receiver_dripping_its_body_has_answered_and_is_cut_at_the_deadline(
    post: Any, slow_body: Drip
) -> None:
    result = post(slow_body.port)
    assert result.status == 200  # the status line and headers came in time: the answer
    slow_body.finish()
    assert slow_body.client_gone is True
    assert slow_body.sent_slowly < len(BODY)  # the body was not waited for past the deadline
    assert result.body == BODY[: len(result.body)]
    assert len(result.body) <= slow_body.sent_slowly


def test_a_name_that_does_not_resolve_in_time_times_out(
    post: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver's DNS is the receiver's too: its lookup is not waited for past the deadline
    (the system resolver is slowed down here, as a slow authoritative server would)."""
    from webhooks import ssrf

    resolve = ssrf._getaddrinfo

    def slow(host: str, port: int) -> list[str]:
        time.sleep(TIMEOUT * 3)
        return resolve(host, port)

    monkeypatch.setattr(ssrf, "_getaddrinfo", slow)
    with pytest.raises(PostFailed) as caught:
        post(9)  # never connected to: the name is not resolved in time
    assert (caught.value.kind, caught.value.message) == (
        FailureKind.DNS_ERROR,
        "The host name did not resolve within 1 s.",
    )
