"""Flower requires authentication (basic auth from FLOWER_BASIC_AUTH), refuses to start without
it when DEBUG is off, and listens on loopback unless told; compose publishes it on loopback."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet
from django.conf import settings

from tests.novitai.test_compose import free_port

CREDENTIALS = "ops:correct-horse-battery"
PAGES = ["/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks"]


def flower_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env.update({"DEBUG": "false", "SECRET_KEY": "x" * 50})
    env["ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.update(extra)
    return env


def start(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["celery", "-A", "novitai", "flower", f"--port={port}"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def refusal(process: subprocess.Popen[bytes], what: str) -> tuple[int, str]:
    """The exit code and last line of a Flower that must refuse to start (`what` if it runs)."""
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop(process)
        raise AssertionError(f"Flower started {what}") from None
    assert process.stderr is not None
    return code, process.stderr.read().decode().strip().splitlines()[-1]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def status(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # not listening (yet)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "Flower needs authentication: set FLOWER_BASIC_AUTH=user:password (DEBUG is off)."),
        (
            {"FLOWER_BASIC_AUTH": "ops:short"},
            "FLOWER_BASIC_AUTH: each entry is user:password, the password at least 12 characters.",
        ),
    ],
    ids=["no-auth", "weak-password"],
)
def test_flower_refuses_to_start_without_auth_when_debug_is_off(
    extra: dict[str, str], message: str
) -> None:
    code, last = refusal(start(free_port(), flower_env(**extra)), "without authentication")
    assert code == 1
    assert last == message


def test_flower_refuses_a_broker_it_cannot_see(tmp_path: Path) -> None:
    """On kombu's SQLAlchemy transport Flower started, showed 0 workers and no task, and said
    "'sql' broker is not supported": it needs Redis (events, broadcast, queue lengths)."""
    env = flower_env(
        FLOWER_BASIC_AUTH=CREDENTIALS,
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
    )
    env.pop("REDIS_URL", None)
    env.pop("CACHE_REDIS_URL", None)
    code, last = refusal(start(free_port(), env), "on the SQLAlchemy transport")
    assert code == 1
    assert last.startswith("Flower needs Redis as the broker: kombu's SQLAlchemy transport")
    assert "install redis-server" in last
    assert not (tmp_path / "broker.sqlite3").exists()  # it never connected


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (Linux /proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def flower() -> Iterator[int]:
    port = free_port()
    process = start(port, flower_env(FLOWER_BASIC_AUTH=CREDENTIALS))
    try:
        deadline = time.monotonic() + 40
        while status(f"http://127.0.0.1:{port}/healthcheck") != 200:
            if process.poll() is not None:
                assert process.stderr is not None
                raise AssertionError(process.stderr.read().decode()[-2000:])
            if time.monotonic() > deadline:
                raise AssertionError("Flower did not answer")
            time.sleep(0.3)
        yield port
    finally:
        stop(process)


@pytest.mark.skipif(
    settings.EMBEDDED_MODE, reason="Flower needs Redis: this run has none (EMBEDDED_MODE)"
)
def test_flower_answers_only_with_its_credentials_and_on_loopback(flower: int) -> None:
    base = f"http://127.0.0.1:{flower}"
    assert {page: status(base + page) for page in PAGES} == dict.fromkeys(PAGES, 401)
    assert {page: status(base + page, "ops:wrong-password-1") for page in PAGES} == dict.fromkeys(
        PAGES, 401
    )
    assert {page: status(base + page, CREDENTIALS) for page in PAGES} == dict.fromkeys(PAGES, 200)
    assert listening_addresses(flower) == {"0100007F"}  # 127.0.0.1, nothing else


def test_compose_publishes_flower_on_loopback_with_basic_auth() -> None:
    compose = yaml.safe_load((Path(settings.BASE_DIR) / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    assert flower["ports"] == ["${FLOWER_PUBLISH_ADDRESS:-127.0.0.1}:5555:5555"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    assert flower["environment"]["DEBUG"] == "false"
