"""The commands of docker-compose.yml run here too: each service's command is started as the
compose file spells it (ports swapped for free ones) and must answer."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.conf import settings

COMPOSE = yaml.safe_load((Path(settings.BASE_DIR) / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_until_answering(command: list[str], url: str, timeout: float = 40.0) -> int:
    env = {
        **os.environ,
        "DEBUG": "true",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    process = subprocess.Popen(
        command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode()[-3000:])  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return int(response.status)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        raise AssertionError(f"{command[0]} did not answer at {url}")
    finally:
        stop(process, grace=15)


def stop(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()


def test_every_service_has_a_healthcheck_or_is_one_shot() -> None:
    for name, service in SERVICES.items():
        assert "healthcheck" in service or name in {"migrate", "beat"}, name


def test_every_app_service_depends_on_what_it_needs() -> None:
    for name in ("web", "worker", "worker-events", "worker-webhooks", "beat"):
        depends = SERVICES[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_web_command_serves() -> None:
    port = free_port()
    command = shlex.split(SERVICES["web"]["command"].replace("0.0.0.0:8000", f"127.0.0.1:{port}"))
    assert command[0] == "gunicorn"
    assert run_until_answering(command, f"http://127.0.0.1:{port}/health/live") == 200


@pytest.mark.skipif(
    settings.EMBEDDED_MODE, reason="Flower needs Redis: this run has none (EMBEDDED_MODE)"
)
def test_compose_flower_command_serves() -> None:
    port = free_port()
    command = shlex.split(
        SERVICES["flower"]["command"].replace("5555", str(port)).replace("0.0.0.0", "127.0.0.1")
    )
    assert command[:3] == ["celery", "-A", "novitai"]
    assert run_until_answering(command, f"http://127.0.0.1:{port}/healthcheck") == 200


def test_compose_sandbox_command_serves() -> None:
    port = free_port()
    command = shlex.split(
        SERVICES["sandbox"]["command"]
        .replace("0.0.0.0", "127.0.0.1")
        .replace("8765", str(port))
        .replace("--public-host sandbox", "--public-host 127.0.0.1")
    )
    command[0] = sys.executable
    assert run_until_answering(command, f"http://127.0.0.1:{port}/_sandbox/stats") == 200


# --- workers: monitoring never shares its capacity with webhook deliveries ----------------------

PROCFILE = dict(
    line.split(": ", 1)
    for line in (Path(settings.BASE_DIR) / "Procfile").read_text().splitlines()
    if line and not line.startswith("#")
)


def queues_of(command: str) -> set[str]:
    option = next(arg for arg in shlex.split(command) if arg.startswith("--queues="))
    return set(option.removeprefix("--queues=").split(","))


def test_monitoring_and_webhook_deliveries_never_share_a_worker() -> None:
    """Two slow receivers once took both slots of the worker that also ran the monitor."""
    commands = {
        f"Procfile {name}": command for name, command in PROCFILE.items() if " worker " in command
    } | {
        f"compose {name}": service["command"]
        for name, service in SERVICES.items()
        if " worker " in str(service.get("command", ""))
    }
    serving = {name: queues_of(command) for name, command in commands.items()}
    assert {name for name, queues in serving.items() if "monitor" in queues} == {
        "Procfile events",
        "compose worker-events",
    }
    assert {name for name, queues in serving.items() if "webhooks" in queues} == {
        "Procfile webhooks",
        "compose worker-webhooks",
    }
    for name in ("Procfile webhooks", "compose worker-webhooks"):
        assert serving[name] == {"webhooks"}
        assert "--pool=threads" in shlex.split(commands[name])  # one process, I/O-bound work
    makefile = (Path(settings.BASE_DIR) / "Makefile").read_text()
    started = re.findall(r'procs="([^"]+)"', makefile)
    assert started == [
        "web worker events webhooks beat sandbox",
        "web worker events webhooks beat",
        "redis $$procs",  # embedded mode's own Redis, when it runs one
    ]
    assert SERVICES["worker-webhooks"]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.django_db(transaction=True)
def test_compose_webhooks_worker_command_delivers(tmp_path: Path) -> None:
    """The compose command of worker-webhooks, threads and all, against the test database and
    broker: a delivery recorded here reaches a receiver on loopback."""
    from tenants.services import tenant_create
    from tests.e2e.conftest import _database_url
    from tests.instances.helpers import wait_for
    from tests.webhooks.support import Receiver, record
    from webhooks.models import DeliveryStatus

    hostname = f"webhooks-test-{os.getpid()}@localhost"
    command = shlex.split(SERVICES["worker-webhooks"]["command"].replace("webhooks@%h", hostname))
    assert command[:3] == ["celery", "-A", "novitai"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "novitai.settings",
        "DATABASE_URL": _database_url(),
        "NOVITAI_VAR_DIR": str(settings.VAR_DIR),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "WORKER_HEARTBEAT_SECONDS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    if settings.REDIS_URL:
        env["CACHE_REDIS_URL"] = str(settings.CACHES["default"]["LOCATION"])
    log = tmp_path / "worker.log"
    receiver = Receiver()
    with log.open("wb") as out:
        worker = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        from django.core.cache import cache

        from novitai.celery import WORKER_HEARTBEAT_KEY

        wait_for(
            lambda: (cache.get(WORKER_HEARTBEAT_KEY) or {}).get("hostname") == hostname,
            60,
            interval=0.2,
            what=f"the webhooks worker (log: {log})",
        )
        tenant, _ = tenant_create(name="acme")
        delivery = record(tenant, receiver.url())  # committed: its wake-up is sent
        wait_for(lambda: receiver.requests, 30, what=f"the delivery (log: {log})")
        delivery.refresh_from_db()
        wait_for(
            lambda: type(delivery).objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED,
            10,
        )
        assert len(receiver.requests) == 1
        assert receiver.requests[0].headers["webhook-id"] == delivery.event_id
    finally:
        stop(worker, grace=30)
        receiver.close()
