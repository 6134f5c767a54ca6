"""The chaos suite's own Postgres cluster and Redis, on free ports of 127.0.0.1, so that it can
stop, kill and restart them (the machine's shared ones are never touched).

    pg = OwnPostgres(root); pg.start(); pg.create_database("novitai_chaos"); pg.stop()
    redis = OwnRedis(root); redis.start(); redis.kill(); redis.start()  # restarted empty

Postgres: a throwaway cluster (initdb, trust auth, fsync off: it lives for one run and every
stop is clean), run as the `postgres` user when the suite runs as root, its socket in its own
folder. Redis: no persistence (`--save "" --appendonly no`), so a kill and a start is a Redis
restarted empty, with every queued message gone.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from bench.stack import StackError, free_port, wait_until


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise StackError("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parent.parent.name
    return tuple(int(x) for x in part.split(".") if x.isdigit())


class OwnPostgres:
    def __init__(self, root: Path) -> None:
        self.bin = _postgres_bin()
        self.home = root / "postgres"
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"
        self.port = free_port()
        self.running = False

    def _as_postgres(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, argv: list[str], what: str) -> None:
        done = subprocess.run(
            self._as_postgres(argv), capture_output=True, text=True, check=False, cwd="/"
        )
        if done.returncode != 0:
            raise StackError(f"{what} failed:\n{done.stdout}\n{done.stderr}")

    def init(self) -> None:
        self.home.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
            # the run folder above is root's (0700): let the postgres user reach its own folder
            parent = self.home.parent
            parent.chmod(parent.stat().st_mode | 0o011)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            "initdb",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._run(
            [
                *(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options),
                *("-l", str(self.log), "-w", "-t", "60", "start"),
            ],
            "pg_ctl start",
        )
        self.running = True
        wait_until(self.answers, timeout=30, what=f"PostgreSQL on 127.0.0.1:{self.port}")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast`: every connection is closed, new ones are refused."""
        if not self.running:
            return
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"],
            "pg_ctl stop",
        )
        self.running = False

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def answers(self) -> bool:
        with self.connect():
            return True

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def version(self) -> str:
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


class OwnRedis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.log_path = root / "redis.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        if shutil.which("redis-server") is None:
            raise StackError("redis-server is not installed")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=2)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: self.client().ping(), timeout=20, what=f"Redis on 127.0.0.1:{self.port}")

    def kill(self) -> None:
        """SIGKILL: whatever Redis held (queues, unacked messages, caches, locks) is gone."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        self.popen = None
        if self._log is not None:
            self._log.close()
            self._log = None
        # the port is free again once the kernel has closed the listening socket
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                self.client().ping()
            except Exception:
                return
            time.sleep(0.05)

    def version(self) -> str:
        return str(self.client().info("server").get("redis_version"))
