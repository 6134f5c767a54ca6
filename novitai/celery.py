"""The Celery app: `celery -A novitai worker` and `celery -A novitai beat`.

Configuration lives in settings (namespace CELERY). Tasks take ids only, are idempotent and are
re-driven from Postgres by sweepers: the broker only wakes workers up sooner.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "novitai.settings")

app = Celery("novitai")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

WORKER_HEARTBEAT_KEY = "worker:heartbeat"


@signals.worker_init.connect
def _tune_broker(**_: Any) -> None:
    broker_url = str(app.conf.broker_url or "")
    if broker_url.startswith(("redis", "rediss")):
        from novitai.broker import redis_restore_guard

        redis_restore_guard()  # a lost Redis must not stop the worker (novitai/broker.py)
    if broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport polls once a second by default; its transport options
        # are passed to create_engine(), so the interval can only be set on the class
        # (docs/architecture.md §2).
        import kombu.transport.sqlalchemy as kombu_sqla

        kombu_sqla.Transport.polling_interval = 0.1


# --- request id propagation -----------------------------------------------------------------


@signals.before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    from novitai.logging import get_request_id

    request_id = get_request_id()
    if headers is not None and request_id:
        headers.setdefault("request_id", request_id)


@signals.task_prerun.connect
def _restore_request_id(task: Any = None, **_: Any) -> None:
    from novitai.logging import set_request_id

    if task is None:
        return
    # A worker exposes custom message headers as request attributes; apply() keeps them in
    # request.headers.
    request = task.request
    request_id = getattr(request, "request_id", None) or (request.headers or {}).get("request_id")
    set_request_id(request_id or f"task-{request.id}")


@signals.task_postrun.connect
def _clear_request_id(**_: Any) -> None:
    from novitai.logging import set_request_id

    set_request_id(None)


# --- worker heartbeat -----------------------------------------------------------------------


def write_worker_heartbeat(hostname: str) -> None:
    from django.core.cache import cache

    cache.set(WORKER_HEARTBEAT_KEY, {"hostname": hostname, "at": time.time()}, timeout=3600)


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    from django.conf import settings

    hostname = getattr(sender, "hostname", "worker")
    interval = settings.WORKER_HEARTBEAT_SECONDS

    def beat() -> None:
        from django.core.cache import cache

        from novitai.outages import cache_guard

        while True:
            try:  # a cache outage is counted and logged once (outages.py); it never kills this
                cache_guard(
                    "worker_heartbeat", lambda: write_worker_heartbeat(hostname), None, cache=cache
                )
            except Exception:
                logger.warning("worker heartbeat could not be written", exc_info=True)
            time.sleep(interval)

    threading.Thread(target=beat, name="novitai-heartbeat", daemon=True).start()

    port = os.environ.get("WORKER_METRICS_PORT")
    if port:
        # The worker's own Prometheus endpoint, for deployments where web and worker do not
        # share a PROMETHEUS_MULTIPROC_DIR (one container each).
        from prometheus_client import start_http_server

        from novitai.metrics import build_registry

        start_http_server(int(port), registry=build_registry())
