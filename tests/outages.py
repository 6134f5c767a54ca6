"""Real dependencies that a test can take down: a redis-server of its own, settings pointing the
caches and the broker at it, a closed port. Never the shared Redis or Postgres."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from novitai.celery import app


def free_port() -> int:
    """A port nothing listens on (it was free a moment ago: connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server on a port of its own, in memory only; kill() is SIGKILL, start() again
    brings it back (empty) on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def client(self, db: int) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=2)


def redis_caches(url: str) -> dict[str, Any]:
    """settings.CACHES as REDIS_URL would make them, at `url` (database 11, as tests use)."""
    return {
        alias: {
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "LOCATION": f"{url}/11",
            "KEY_PREFIX": f"novitai:{alias}",
            "TIMEOUT": 300,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
        for alias in settings.NOVITAI_CACHES
    }


def _reset_broker_pools() -> None:
    """The app looks its pools up again, by URL, in kombu's registry (never closed here: the
    registry hands the same pool back to the next lookup of that URL)."""
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def broker_at(url: str) -> Iterator[None]:
    """The Celery app publishes to `url` inside the block (its connection pools rebuilt)."""
    old_url, old_options = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = url
    app.conf.broker_transport_options = {"socket_timeout": 2, "socket_connect_timeout": 2}
    _reset_broker_pools()
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = old_url, old_options
        _reset_broker_pools()


class PostgresCluster:
    """A throwaway Postgres cluster of the test's own (initdb in a temp folder, a free port),
    which a test can really stop and start again. Never the shared one on 5432."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [
            shutil.which("initdb") or ""
        ]
        if not found[-1]:
            pytest.skip("Postgres' initdb is not installed")
        self.bin = Path(found[-1]).parent
        # Its own folder under /tmp: pytest's are private to the user running the tests.
        self.directory = Path(tempfile.mkdtemp(prefix="novitai-pg-"))
        directory = self.directory
        self.data = directory / "data"
        self.port = free_port()
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(directory, user="postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/novitai"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.data / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE novitai")

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: every connection is cut, no new one is accepted."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        """Stopped (if it runs) and deleted."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
