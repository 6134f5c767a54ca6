"""Workarounds for the broker transport, applied when a worker starts (novitai/celery.py).

kombu's Redis channel, closed after its connection was lost, cannot restore its unacknowledged
messages: Celery 5.7's consumer collects the lost connection first — which drops the
transport's `client` — and then closes it, and the channel's restore then reads the connection
parameters from that `client` and raises AttributeError ("'NoneType' object has no attribute
'hostname'"). That escapes `ignore_errors` (it only ignores the transport's connection errors),
reaches the consumer as an "Unrecoverable error" and stops the worker for good. It happened to
the threads-pool webhooks worker whenever Redis went away with deliveries in flight (found by
`make chaos`, scenario b); any worker holding late-acked messages at that moment can hit it.

`redis_restore_guard()` makes that case the connection error it is, which the close path
already ignores: the worker reconnects as after any broker outage. Nothing is lost by not
restoring there: a message unacknowledged in Redis comes back after the visibility timeout (if
Redis kept it), and the job and delivery rows are the outbox the sweepers re-drive anyway.

Standard library and kombu only: no Django, so that it can be tested in a bare worker.
"""

from __future__ import annotations

from typing import Any

_GUARDED = "_novitai_restore_guard"


def redis_restore_guard() -> bool:
    """Installs the guard on kombu's Redis channel (once). True if it was installed now."""
    import kombu.transport.redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    channel = kombu_redis.Channel
    if getattr(channel, _GUARDED, False):
        return False
    original = channel._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was already closed")
        return original(self, asynchronous=asynchronous)

    channel._connparams = _connparams  # type: ignore[method-assign]
    setattr(channel, _GUARDED, True)
    return True
