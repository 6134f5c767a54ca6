"""The commands of docker-compose.yml run here too: each service's command is started as the
compose file spells it (ports swapped for free ones) and must answer."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_every_service_has_a_healthcheck_or_is_one_shot() -> None:
    for name, service in SERVICES.items():
        assert "healthcheck" in service or name in {"migrate", "beat"}, name


def test_every_app_service_depends_on_what_it_needs() -> None:
    for name in ("web", "worker", "worker-events", "beat"):
        depends = SERVICES[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_web_command_serves() -> None:
    port = free_port()
    command = shlex.split(SERVICES["web"]["command"].replace("0.0.0.0:8000", f"127.0.0.1:{port}"))
    assert command[0] == "gunicorn"
    assert run_until_answering(command, f"http://127.0.0.1:{port}/health/live") == 200


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
