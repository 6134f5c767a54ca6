"""End-to-end harness: a real `celery -A novitai worker -B` subprocess against the test database,
the shared broker and cache, and the sandbox over HTTP.

The worker is started once for this package (with short intervals), waited for by its heartbeat, and
stopped with SIGTERM (SIGKILL after a grace). It runs in its own process group, so that a test
can kill it — pool children and embedded beat included — with SIGKILL and start a new one.
Tests use `transactional_db`: rows are committed, the worker sees them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from novita_sandbox import SandboxServer
from novitai.celery import WORKER_HEARTBEAT_KEY
from tests.instances.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]

# Short intervals so that a test sees a whole lifecycle in seconds.
WORKER_SETTINGS = {
    "MONITOR_INTERVAL_SECONDS": "0.5",
    "MONITOR_STEADY_INTERVAL_SECONDS": "0",
    "SWEEP_INTERVAL_SECONDS": "1",
    "JOB_LEASE_SECONDS": "3",
    "JOB_REDISPATCH_SECONDS": "3",
    "JOB_RETRY_BACKOFF_BASE_SECONDS": "0.5",
    "JOB_RETRY_BACKOFF_CAP_SECONDS": "2",
    "CREATE_UNKNOWN_GRACE_SECONDS": "2",
    "HEALTH_CHECK_TIMEOUT_SECONDS": "4",
    "HEALTH_CHECK_REQUEST_TIMEOUT_SECONDS": "1",
    "DELETE_REISSUE_SECONDS": "2",
    "NOVITA_LIST_PAGE_SIZE": "10",
    "NOVITA_RATE_LIMIT_PER_SECOND": "1000",
    "WORKER_HEARTBEAT_SECONDS": "1",
    # idle stops (and the GPU metrics of idle policies) checked every second, read every pass
    "IDLE_CHECK_INTERVAL_SECONDS": "1",
    "GPU_METRICS_READ_INTERVAL_SECONDS": "0",
    "CAPACITY_SWEEP_INTERVAL_SECONDS": "0.5",
    "CAPACITY_RETRY_BASE_SECONDS": "1",
    "CAPACITY_RETRY_MAX_SECONDS": "2",
    "IMAGE_SAVE_FOLLOW_INTERVAL_SECONDS": "0.5",
    "ACCESS_DETAILS_INTERVAL_SECONDS": "0.5",
    # Webhook receivers in these tests listen on loopback.
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "LOG_LEVEL": "INFO",
}


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """The worker subprocess: start, stop (SIGTERM, then SIGKILL), kill (SIGKILL)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.hostname = ""
        self.log_path = log_dir / "e2e-worker.log"
        self.schedules: list[Path] = []

    def start(self, timeout: float = 60.0) -> None:
        assert self.process is None, "already running"
        self.starts += 1
        self.hostname = f"e2e{self.starts}-{os.getpid()}@localhost"
        schedule = self.log_dir / f"e2e-beat-{os.getpid()}-{self.starts}"
        self.schedules.append(schedule)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "novitai",
                "worker",
                "-B",
                f"--schedule={schedule}",
                "--pool=prefork",
                "--concurrency=3",
                "--queues=default,provision,monitor,webhooks",
                f"--hostname={self.hostname}",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: pool children and beat with it
        )
        log.close()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited: see {self.log_path}")
            beat = cache.get(WORKER_HEARTBEAT_KEY)
            return bool(beat and beat.get("hostname") == self.hostname)

        wait_for(ready, timeout, interval=0.2, what=f"worker heartbeat (log: {self.log_path})")

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the worker's process group: no warm shutdown, nothing given back."""
        self._signal_group(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)
        self.process = None

    def stop(self, grace: float = 20.0) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)  # warm shutdown: the main process stops its pool
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=10)
        # Children that outlived the main process (none expected) go too.
        self._signal_group(signal.SIGKILL)
        self.process = None
        for schedule in self.schedules:  # beat's schedule files (one or several, by dbm)
            for path in schedule.parent.glob(schedule.name + "*"):
                path.unlink(missing_ok=True)


@pytest.fixture(scope="package")
def e2e_worker(
    django_db_setup: None, django_db_blocker: Any, sandbox_server: SandboxServer
) -> Iterator[Worker]:
    """One worker for the e2e tests, against the test database; stopped once they are done
    (the session's sandbox serves other tests afterwards, which count its calls)."""
    with django_db_blocker.unblock():
        database_url = _database_url()
    env = {
        **os.environ,
        **WORKER_SETTINGS,
        "DJANGO_SETTINGS_MODULE": "novitai.settings",
        "DATABASE_URL": database_url,
        "NOVITAI_VAR_DIR": str(settings.VAR_DIR),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "NOVITA_API_BASE_URL": sandbox_server.api_base,
        "NOVITA_CORE_API_BASE_URL": sandbox_server.core_api_base,
        "NOVITA_API_KEY": sandbox_server.api_key,
        "PYTHONUNBUFFERED": "1",
    }
    if settings.REDIS_URL:
        env["CACHE_REDIS_URL"] = str(settings.CACHES["default"]["LOCATION"])
    worker = Worker(env, Path(settings.VAR_DIR))
    worker.log_path.write_bytes(b"")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def worker(e2e_worker: Worker, transactional_db: None, novita_settings: Any) -> Worker:
    """The running worker, for a test with committed rows and a reset sandbox."""
    if e2e_worker.process is None:
        e2e_worker.start()
    return e2e_worker
