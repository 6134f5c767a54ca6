"""A worker holding late-acked messages when Redis goes away reconnects: it does not stop.

Celery 5.7 + kombu's Redis transport stopped such a worker with "Unrecoverable error:
AttributeError('NoneType' object has no attribute 'hostname')" (novitai/broker.py). A real
redis-server and a real worker (the webhooks worker's threads pool), with two slow tasks running
when Redis is killed; Redis comes back empty and a new task must run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from novitai.broker import redis_restore_guard

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="needs redis-server")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_start(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(REDIS), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def send(port: int, name: str, *args: object) -> None:
    from celery import Celery

    Celery(broker=f"redis://127.0.0.1:{port}/0").send_task(name, args=list(args))


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[dict[str, object]]:
    port = free_port()
    state: dict[str, object] = {"port": port, "server": redis_start(port, tmp_path)}
    yield state
    server = state["server"]
    assert isinstance(server, subprocess.Popen)
    server.kill()
    server.wait()


def run_worker(broker: dict[str, object], tmp_path: Path, *, guarded: bool) -> tuple[bool, str]:
    """Kills Redis under a worker running two slow tasks, brings it back empty, sends a task:
    (did the worker run it, the worker's log)."""
    port = int(str(broker["port"]))
    log = tmp_path / "worker.log"
    env = {**os.environ, "LOST_BROKER_URL": f"redis://127.0.0.1:{port}/0", "PYTHONPATH": str(ROOT)}
    env.pop("LOST_BROKER_GUARD", None)
    if guarded:
        env["LOST_BROKER_GUARD"] = "1"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.novitai.workers.lost_broker", "worker",
             "--pool=threads", "--concurrency=8", "--loglevel=INFO", "--without-mingle",
             "--without-gossip"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        assert wait_until(lambda: b"ready." in log.read_bytes(), 30), log.read_text()
        send(port, "lost_broker.slow", 1)
        send(port, "lost_broker.slow", 2)
        assert wait_until(lambda: log.read_bytes().count(b"received") >= 2, 10), log.read_text()
        server = broker["server"]
        assert isinstance(server, subprocess.Popen)
        server.kill()  # Redis gone with both tasks running (unacknowledged)
        server.wait()
        time.sleep(2)
        broker["server"] = redis_start(port, tmp_path)  # back, empty
        marker = tmp_path / "ran"
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and worker.poll() is None and not marker.exists():
            with contextlib.suppress(Exception):  # the broker may still be coming back
                send(port, "lost_broker.mark", str(marker))
            wait_until(marker.exists, 3)
        return marker.exists(), log.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def test_a_worker_reconnects_when_redis_goes_away_under_late_acked_tasks(
    broker: dict[str, object], tmp_path: Path
) -> None:
    ran, log = run_worker(broker, tmp_path, guarded=True)
    assert "Unrecoverable error" not in log
    assert ran, log


def test_the_guard_is_installed_once() -> None:
    import kombu.transport.redis as kombu_redis

    redis_restore_guard()
    first = kombu_redis.Channel._connparams
    assert redis_restore_guard() is False
    assert kombu_redis.Channel._connparams is first


def test_novitais_workers_install_the_guard_on_a_redis_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kombu.transport.redis as kombu_redis

    from novitai import celery as novitai_celery

    monkeypatch.delattr(kombu_redis.Channel, "_novitai_restore_guard", raising=False)
    monkeypatch.setattr(kombu_redis.Channel, "_connparams", kombu_redis.Channel._connparams)
    monkeypatch.setattr(novitai_celery.app.conf, "broker_url", "redis://127.0.0.1:6379/0")
    novitai_celery._tune_broker()
    assert getattr(kombu_redis.Channel, "_novitai_restore_guard", False) is True
