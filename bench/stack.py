"""What the benchmarks run against: Postgres, Redis, the sandbox, gunicorn, a Celery worker, beat.

    stack = Stack.prepare(run_dir)      # services up, a fresh novitai_bench database, env
    stack.start_sandbox(); stack.start_web(); stack.start_worker(); stack.start_beat()
    ...
    stack.stop_all()                    # also on Ctrl-C, a failure or exit (atexit)

Every process is started in its own session and stopped by its process group (SIGTERM, then
SIGKILL), so nothing is left behind. Their output goes to log files in the run folder.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# BENCH_REDIS_PORT and BENCH_DATABASE: another Redis and database than the defaults (several
# checkouts on one machine).
REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("BENCH_REDIS_PORT", "6379"))
BROKER_DB, CACHE_DB = 14, 15
DATABASE = os.environ.get("BENCH_DATABASE", "novitai_bench")
SANDBOX_KEY = "bench-sandbox-key"
ALL_QUEUES = "default,provision,monitor,webhooks"
# High enough never to throttle a benchmark (the throttle itself still runs on every request).
THROTTLE_RATE = "100000000/min"

# How the sandbox is started: 5 s from create to running, the app answers 2 s later
# (scenario 1). Other transitions use the "fast" preset.
SANDBOX_TIMING = ["--dwell", "toCreate=1", "--dwell", "creating=1", "--dwell", "pulling=3"]
SANDBOX_APP_BOOT = 2.0


class StackError(RuntimeError):
    """Something the benchmarks need is missing or did not come up."""


def say(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # anything a not-yet-ready service raises
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(interval)


# --- Postgres and Redis -----------------------------------------------------------------------


def _pg_connect(dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(dbname=dbname, connect_timeout=2, autocommit=True, **PG)  # type: ignore[arg-type]


def _pg_up() -> bool:
    with _pg_connect():
        return True


def _redis() -> Any:
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2)


def _redis_up() -> bool:
    return bool(_redis().ping())


def ensure_services() -> None:
    """Postgres on 127.0.0.1:5432 and Redis on :6379, started the way .ci/run does if they do
    not answer; a clear error otherwise."""
    try:
        _pg_up()
    except Exception:
        say("  PostgreSQL does not answer on 127.0.0.1:5432: starting it (pg_ctlcluster)")
        clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if clusters:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[0], "main", "start"],
                check=False,
            )
        wait_until(_pg_up, timeout=60, what="PostgreSQL on 127.0.0.1:5432 (user postgres)")
    try:
        _redis_up()
    except Exception:
        say("  Redis does not answer on 127.0.0.1:6379: starting it")
        if shutil.which("redis-server") is None:
            raise StackError(
                "Redis is not running on 127.0.0.1:6379 and redis-server is not installed"
            ) from None
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                REDIS_HOST,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=False,
        )
        wait_until(_redis_up, timeout=30, what="Redis on 127.0.0.1:6379")


def fresh_database() -> None:
    with _pg_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def flush_redis() -> None:
    for db in (BROKER_DB, CACHE_DB):
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=2).flushdb()


def service_versions() -> dict[str, str]:
    with _pg_connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    info = _redis().info("server")
    return {"postgres": str(row[0]) if row else "?", "redis": str(info.get("redis_version"))}


def flush_broker() -> int:
    """Drops every queued message (tasks a scenario enqueued for a worker that is not running)."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=BROKER_DB, socket_timeout=2)
    dropped = sum(int(client.llen(q)) for q in ("default", "provision", "monitor", "webhooks"))
    client.flushdb()
    return dropped


# --- processes --------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to its process group, SIGKILL to the group after `grace` seconds."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                say(f"  {self.name} did not stop within {grace:.0f}s: killing it")
        # The leader may be gone while its children live on (a prefork pool): kill the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self.log.close()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    run_dir: Path
    env: dict[str, str]
    web_port: int
    sandbox_port: int
    procs: dict[str, Proc] = field(default_factory=dict)
    _tenant: tuple[str, str] | None = None

    # --- set-up ---------------------------------------------------------------------------

    @classmethod
    def prepare(cls, run_dir: Path) -> Stack:
        run_dir.mkdir(parents=True, exist_ok=True)
        web_port, sandbox_port = free_port(), free_port()
        env = {
            "DJANGO_SETTINGS_MODULE": "novitai.settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + os.urandom(16).hex(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_HTTPS": "false",  # plain HTTP on loopback
            "ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "DATABASE_URL": f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{DATABASE}",
            "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}",
            "CELERY_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
            "CACHE_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{CACHE_DB}",
            "NOVITA_API_KEY": SANDBOX_KEY,
            "NOVITA_API_BASE_URL": f"http://127.0.0.1:{sandbox_port}/gpu-instance/openapi/v1",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "API_THROTTLE_RATE": THROTTLE_RATE,
            "NOVITAI_VAR_DIR": str(run_dir / "var"),
        }
        # Nothing of the caller's own novitai configuration leaks in (a .env beside manage.py
        # is read with overwrite=False: every variable it could set is set here).
        os.environ.update(env)
        for name in (
            "PYTEST_VERSION",
            "NOVITA_RATE_LIMIT",
            "NOVITA_RATE_LIMIT_BURST",
            "NOVITA_RATE_LIMIT_PER_SECOND",
            "MONITOR_INTERVAL_SECONDS",
            "MONITOR_STEADY_INTERVAL_SECONDS",
        ):
            os.environ.pop(name, None)
        return cls(
            run_dir=run_dir, env=dict(os.environ), web_port=web_port, sandbox_port=sandbox_port
        )

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def tenant(self) -> tuple[str, str]:
        """(api_key, webhook_secret) of the benchmarks' tenant, created once (tenant_create)."""
        if self._tenant is None:
            lines = dict(
                line.split(": ", 1)
                for line in self.manage("tenant_create", "bench").splitlines()
                if ": " in line
            )
            self._tenant = (lines["api_key"].strip(), lines["webhook_secret"].strip())
        return self._tenant

    def spawn(self, name: str, argv: list[str], *, extra_env: dict[str, str] | None = None) -> Proc:
        log_path = self.run_dir / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = Proc(name, popen, log_path, log)
        self.procs[name] = proc
        return proc

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            proc = self.procs.get(name)
            if proc is not None and not proc.alive():
                raise StackError(
                    f"{name} exited with {proc.popen.returncode}; its log ends:\n{proc.tail()}"
                )

    # --- the processes ----------------------------------------------------------------------

    def start_sandbox(
        self, timing: list[str] | None = None, app_boot: float = SANDBOX_APP_BOOT
    ) -> None:
        """`timing`: --dwell flags (default SANDBOX_TIMING, scenario 1's)."""
        self.spawn(
            "sandbox",
            [
                PYTHON,
                "-m",
                "novita_sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.sandbox_port),
                "--api-key",
                SANDBOX_KEY,
                *(SANDBOX_TIMING if timing is None else timing),
                "--app-boot",
                str(app_boot),
            ],
        )

        def up() -> bool:
            self.check_alive("sandbox")
            with urllib.request.urlopen(f"{self.sandbox_url}/_sandbox/stats", timeout=2):  # noqa: S310
                return True

        wait_until(up, timeout=30, what="the sandbox")

    def start_web(self) -> None:
        """As docker-compose runs it: gunicorn with gunicorn.conf.py and 3 sync workers."""
        prometheus = self.run_dir / "prometheus-web"
        self.spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "novitai.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "3",
            ],
            extra_env={"PROMETHEUS_MULTIPROC_DIR": str(prometheus)},
        )

        def up() -> bool:
            self.check_alive("web")
            with urllib.request.urlopen(f"{self.web_url}/health/live", timeout=2):  # noqa: S310
                return len(self.children("web")) >= 3

        wait_until(up, timeout=60, what="gunicorn")

    def start_worker(
        self,
        name: str = "worker",
        queues: str = ALL_QUEUES,
        concurrency: int = 4,
        pool: str = "prefork",
    ) -> None:
        """By default one worker for every queue, concurrency 4 (prefork)."""
        prometheus = self.run_dir / f"prometheus-{name}"
        prometheus.mkdir(exist_ok=True)
        started = time.time()
        self.spawn(
            name,
            [
                str(BIN / "celery"),
                "-A",
                "novitai",
                "worker",
                "--loglevel=WARNING",
                f"--queues={queues}",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                f"--hostname=bench-{name}@%h",
            ],
            extra_env={"PROMETHEUS_MULTIPROC_DIR": str(prometheus)},
        )

        def up() -> bool:
            self.check_alive(name)
            from django.core.cache import cache

            from novitai.celery import WORKER_HEARTBEAT_KEY

            beat = cache.get(WORKER_HEARTBEAT_KEY)
            return (
                bool(beat)
                and str(beat["hostname"]).startswith(f"bench-{name}@")
                and float(beat["at"]) >= started
            )

        wait_until(up, timeout=90, what=f"the Celery worker {name} (its heartbeat)")

    def start_beat(self) -> None:
        self.spawn(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "novitai",
                "beat",
                "--loglevel=WARNING",
                f"--schedule={self.run_dir / 'celerybeat-schedule'}",
                "--pidfile=",
            ],
        )
        time.sleep(1.0)
        self.check_alive("beat")

    def stop(self, *names: str) -> None:
        for name in names:
            proc = self.procs.pop(name, None)
            if proc is not None:
                proc.stop()

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    # --- process figures ---------------------------------------------------------------------

    def children(self, name: str) -> list[int]:
        import psutil

        proc = self.procs.get(name)
        if proc is None or not proc.alive():
            return []
        try:
            return [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def tree(self, name: str) -> list[int]:
        proc = self.procs.get(name)
        return [proc.pid, *self.children(name)] if proc is not None else []


def memory_of(pid: int) -> dict[str, Any] | None:
    """Current and peak resident set size of a process, in MiB (/proc/<pid>/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return {
        "rss_mib": round(values.get("VmRSS", 0.0), 1),
        "peak_mib": round(values.get("VmHWM", 0.0), 1),
        "pss_mib": _pss_mib(pid),
    }


def _pss_mib(pid: int) -> float | None:
    """Proportional set size (/proc/<pid>/smaps_rollup): shared pages counted once across the
    processes that share them, so that the sum over processes is what the stack holds."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def memory(stack: Stack) -> dict[str, Any]:
    """Current and peak RSS of every process of web (gunicorn master and workers), the worker(s)
    (main process and prefork pool) and beat."""
    snapshot: dict[str, Any] = {}
    for name in [n for n in stack.procs if n.startswith(("web", "worker", "beat"))]:
        pids = stack.tree(name)
        processes = [{"pid": pid, **m} for pid in pids if (m := memory_of(pid)) is not None]
        children = processes[1:] or processes
        snapshot[name] = {
            "processes": processes,
            "workers_peak_max_mib": max((p["peak_mib"] for p in children), default=None),
            "workers_rss_sum_mib": round(sum(p["rss_mib"] for p in children), 1),
            "all_rss_sum_mib": round(sum(p["rss_mib"] for p in processes), 1),
            "all_pss_sum_mib": round(sum(p["pss_mib"] or 0.0 for p in processes), 1),
        }
    return snapshot


# --- stopping on Ctrl-C, a failure or exit -----------------------------------------------------

_stacks: list[Stack] = []


def register(stack: Stack) -> None:
    """Whatever happens, the stack's processes are stopped: atexit, and SIGTERM/SIGHUP turned
    into SystemExit (Ctrl-C is KeyboardInterrupt already) so that `finally` blocks run."""
    if not _stacks:
        atexit.register(_stop_registered)

        def on_signal(signum: int, frame: object) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
    _stacks.append(stack)


def _stop_registered() -> None:
    while _stacks:
        _stacks.pop().stop_all()
