"""A bare Celery app for tests/novitai/test_broker_loss.py: novitai's worker settings that
matter for a lost broker (late acks, a requeue when the worker is lost, long tasks cancelled on
a connection loss), a Redis broker from LOST_BROKER_URL, and the guard when LOST_BROKER_GUARD
is set. No Django: what is tested is the transport and the consumer, as a worker runs them."""

from __future__ import annotations

import os
import time

from celery import Celery, signals

app = Celery("lost_broker", broker=os.environ["LOST_BROKER_URL"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    broker_transport_options={"visibility_timeout": 1800},
    worker_hijack_root_logger=False,
)


@signals.worker_init.connect
def _guard(**_: object) -> None:
    if os.environ.get("LOST_BROKER_GUARD"):
        from novitai.broker import redis_restore_guard

        redis_restore_guard()


@app.task(name="lost_broker.slow")
def slow(n: int) -> int:
    time.sleep(3)
    return n


@app.task(name="lost_broker.mark")
def mark(path: str) -> None:
    with open(path, "w") as f:
        f.write("ran")
