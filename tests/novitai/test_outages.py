"""novitai/outages.py: a failing cache or broker answers the fallback, is logged once per outage,
and is left alone for OUTAGE_RETRY_SECONDS (a hung Redis costs one timeout, not one per call).
Real sockets: a server that accepts and never answers, a closed port."""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches

from novitai.outages import broker_guard, cache_down, cache_guard
from tests.outages import broker_at, free_port, redis_caches


class Mute:
    """A TCP server that accepts connections and never answers (a stopped Redis)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def mute() -> Iterator[Mute]:
    server = Mute()
    yield server
    server.close()


def test_a_hung_cache_is_asked_once_per_retry_period(settings: Any, mute: Mute) -> None:
    settings.CACHES = redis_caches(f"redis://127.0.0.1:{mute.port}")
    for alias in settings.CACHES.values():
        alias["OPTIONS"]["SOCKET_TIMEOUT"] = alias["OPTIONS"]["SOCKET_CONNECT_TIMEOUT"] = 0.2
    settings.OUTAGE_RETRY_SECONDS = 3600
    cache = caches["default"]
    assert cache_guard("test", lambda: cache.get("k"), "fallback", cache=cache) == "fallback"
    assert len(mute.accepted) == 1
    assert cache_down(cache)
    # Every alias on that server is known down: answered at once, without a connection.
    for alias in settings.NOVITAI_CACHES:
        other = caches[alias]
        assert cache_guard("test", functools.partial(other.get, "k"), 0, cache=other) == 0
    assert len(mute.accepted) == 1


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.OUTAGE_RETRY_SECONDS = 0
    caplog.set_level(logging.INFO, logger="novitai.outages")
    settings.CACHES = redis_caches(f"redis://127.0.0.1:{free_port()}")
    down = caches["default"]
    for _ in range(3):
        assert cache_guard("test", lambda: down.get("k"), None, cache=down) is None
    assert cache_down(down)
    # The next call that goes through (Redis back) ends the outage.
    assert cache_guard("test", lambda: "answered", None, cache=down) == "answered"
    assert not cache_down(down)
    messages = [r.getMessage() for r in caplog.records if r.name == "novitai.outages"]
    assert len(messages) == 2
    assert messages[0].startswith("cache unreachable (ConnectionError: Error 111 connecting")
    assert messages[1].startswith("cache reachable again after ")
    assert messages[1].endswith("(3 operation(s) done without it)")


def test_a_broker_that_refuses_is_not_sent_to_again_before_the_retry_period(
    settings: Any,
) -> None:
    settings.OUTAGE_RETRY_SECONDS = 3600
    sends: list[str] = []

    def send() -> None:
        sends.append("tried")
        raise ConnectionRefusedError("broker down")

    with broker_at(f"redis://127.0.0.1:{free_port()}/10"):
        assert broker_guard("test", send) is False
        assert broker_guard("test", send) is False
    assert sends == ["tried"]
    assert broker_guard("test", lambda: None) is True  # another broker: not known down
