"""What the chaos suite runs against, and the faults it can cause.

    harness = Harness.boot(run_dir)     # own Postgres and Redis, sandbox, gunicorn, the Celery
                                        # processes of the Procfile, two tenants
    harness.reset()                     # between scenarios: rows, queues, caches, sandbox emptied
    harness.kill_pool_child("worker"); harness.kill_worker("events"); harness.restart("events")
    harness.redis.kill(); harness.redis.start(); harness.pg.stop(); harness.pg.start()
    harness.close()                     # also on Ctrl-C, a failure or exit

bench/stack.py starts and stops the processes (each in its own session, stopped by process
group); the Celery ones are read from the Procfile (chaos/procfile.py) so that a change of it is
what runs here. Web is gunicorn as docker-compose runs it (the Procfile's web is runserver, for
development), the sandbox is started with the suite's timing.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import random
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stack import BIN, PYTHON, ROOT, SANDBOX_KEY, Stack, StackError, free_port, register
from chaos import procfile
from chaos.procfile import CeleryProcess
from chaos.services import OwnPostgres, OwnRedis

DATABASE = "novitai_chaos"
TENANTS = ("alpha", "beta")

# The sandbox: running 2 s after a create (toCreate, creating 0.5 s each, pulling 1 s), the app
# answering 1 s later; every other transition of the "fast" preset (0.1-0.2 s).
SANDBOX_TIMING = ["--dwell", "toCreate=0.5", "--dwell", "creating=0.5", "--dwell", "pulling=1"]
SANDBOX_APP_BOOT = 1.0
SANDBOX_BOOT = 3.0  # create -> the app answers

# Settings the suite shortens so that each scenario ends within its time bound (every other
# one runs as shipped: MONITOR_INTERVAL_SECONDS 3, MONITOR_LOCK_SECONDS 60, WEBHOOK_TIMEOUT 10,
# WEBHOOK_RETRY_SCHEDULE, WORKER_CONCURRENCY, …). Each is printed with the results.
SUITE_SETTINGS = {
    # a create killed mid-way is taken over after its lease, not after 5 minutes
    "JOB_LEASE_SECONDS": "30",
    "JOB_REDISPATCH_SECONDS": "15",  # a lost provision message is sent again after 15 s, not 60
    "SWEEP_INTERVAL_SECONDS": "5",  # the jobs sweeper runs every 5 s, not 15
    "ORPHAN_GRACE_SECONDS": "15",  # an orphan is deleted after 15 s, not 10 minutes
    "CREATE_UNKNOWN_GRACE_SECONDS": "10",  # an unknown create is retried after 10 s, not 60
    "NOVITA_CREATE_TIMEOUT": "5",  # a hanging create times out after 5 s, not 30
    "HEALTH_QUEUE_MAX_AGE_SECONDS": "15",  # /health/ready: a queue not served for 15 s, not 120
    # every pass lists Novita, as before the steady interval (30 s with nothing in transit):
    # d counts listings per minute with one beat and two, g catches a pass in its listing
    "MONITOR_STEADY_INTERVAL_SECONDS": "0",
}


def _configuration_names() -> set[str]:
    """Every variable .env.example documents: none of the caller's may leak into the suite."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


@dataclass
class Harness:
    root: Path
    pg: OwnPostgres
    redis: OwnRedis
    stack: Stack
    celery: dict[str, CeleryProcess]
    tenants: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> key, secret
    restarts: int = 0
    # Celery processes that exited by themselves (not killed by the suite): "name (exit N)".
    crashes: list[str] = field(default_factory=list)

    # --- set-up and tear-down -----------------------------------------------------------------

    @classmethod
    def boot(cls, root: Path, *, log_level: str = "WARNING") -> Harness:
        pg, redis = OwnPostgres(root), OwnRedis(root)
        harness: Harness | None = None
        try:
            pg.init()
            pg.start()
            pg.create_database(DATABASE)
            redis.start()
            web_port, sandbox_port = free_port(), free_port()
            env = _environment(root, pg, redis, sandbox_port, log_level)
            stack = Stack(run_dir=root, env=env, web_port=web_port, sandbox_port=sandbox_port)
            register(stack)
            celery = procfile.celery_processes(
                procfile.read(ROOT / "Procfile"), env, celery=str(BIN / "celery"), python=PYTHON
            )
            harness = cls(root=root, pg=pg, redis=redis, stack=stack, celery=celery)
            atexit.register(harness.close)
            os.environ.clear()
            os.environ.update(env)
            import django

            django.setup()
            stack.manage("migrate", "--noinput", "-v", "0")
            stack.start_sandbox(SANDBOX_TIMING, SANDBOX_APP_BOOT)
            stack.start_web()
            for name in TENANTS:
                harness.tenants[name] = harness._tenant_create(name)
            stack.manage("catalog_sync")
            harness.start_celery()
            return harness
        except BaseException:
            if harness is not None:
                harness.close()
            else:
                redis.kill()
                with contextlib.suppress(StackError):
                    pg.stop()
            raise

    def close(self) -> None:
        self.stack.stop_all()
        self.redis.kill()
        with contextlib.suppress(StackError):
            self.pg.stop()

    def _tenant_create(self, name: str) -> tuple[str, str]:
        lines = dict(
            line.split(": ", 1)
            for line in self.stack.manage("tenant_create", name).splitlines()
            if ": " in line
        )
        return lines["api_key"].strip(), lines["webhook_secret"].strip()

    @property
    def sandbox(self) -> Any:
        from novita_sandbox.control import SandboxControl

        return SandboxControl(self.stack.sandbox_url, SANDBOX_KEY)

    # --- the Celery processes of the Procfile ------------------------------------------------

    @property
    def workers(self) -> list[str]:
        return [n for n, p in self.celery.items() if p.subcommand == "worker"]

    @property
    def beats(self) -> list[str]:
        return [n for n, p in self.celery.items() if p.subcommand == "beat"]

    def worker_of(self, queue: str) -> str:
        """The Procfile process that consumes `queue`."""
        for name in self.workers:
            if queue in self.celery[name].queues:
                return name
        raise StackError(f"no process of the Procfile consumes the {queue} queue")

    def start_celery(self, *names: str) -> None:
        """Starts the workers (then waits until each answers a ping) and beat, as the Procfile
        ships them; by default every one of them."""
        wanted = list(names or self.celery)
        for name in wanted:
            if self.celery[name].subcommand == "worker":
                self.stack.spawn(name, self.celery[name].argv)
        for name in wanted:
            if self.celery[name].subcommand == "worker":
                self._wait_for_worker(name)
        for name in wanted:
            if self.celery[name].subcommand == "beat":
                self.start_beat(name)

    def start_beat(self, name: str = "beat", *, as_name: str = "", var_dir: str = "") -> None:
        """A beat; with `var_dir`, one on "another machine" (its own schedule file)."""
        extra = {"NOVITAI_VAR_DIR": var_dir} if var_dir else None
        self.stack.spawn(as_name or name, self.celery[name].argv, extra_env=extra)
        time.sleep(1.0)
        self.stack.check_alive(as_name or name)

    def _wait_for_worker(self, name: str, timeout: float = 90.0) -> None:
        from novitai.celery import app

        hostname = self.celery[name].hostname
        deadline = time.monotonic() + timeout
        while True:
            self.stack.check_alive(name)
            with contextlib.suppress(Exception):
                if app.control.ping(destination=[hostname], timeout=1.0):
                    return
            if time.monotonic() > deadline:
                raise StackError(f"the Celery worker {name} ({hostname}) did not answer a ping")
            time.sleep(0.5)

    def stop_celery(self) -> None:
        """SIGKILL to every Celery process group (between scenarios: what they held is dropped
        with the rows and the queues)."""
        for name in [n for n in self.stack.procs if n in self.celery or n.startswith("beat")]:
            proc = self.stack.procs.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.stop(grace=5)

    def pool_children(self, name: str) -> list[int]:
        return self.stack.children(name)

    def kill_pool_child(self, name: str, pid: int | None = None) -> int | None:
        """SIGKILL one pool process of a worker (a random one unless `pid`); its master forks
        another. Returns the pid killed."""
        children = self.pool_children(name)
        if pid is None:
            if not children:
                return None
            pid = random.choice(children)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    def kill_worker(self, name: str) -> None:
        """SIGKILL to the whole worker (master and pool): what it had prefetched or was running
        stays unacknowledged in the broker."""
        proc = self.stack.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stop(grace=5)

    def restart_crashed(self) -> list[str]:
        """A Celery process that exited by itself is recorded and started again, as a
        supervisor (compose's restart policy) would; the crash still fails the scenario."""
        found = []
        for name in [n for n, p in self.stack.procs.items() if n in self.celery and not p.alive()]:
            proc = self.stack.procs.pop(name)
            found.append(f"{name} (exit {proc.popen.returncode})")
            proc.stop(grace=1)
            self.restart(name)
        self.crashes.extend(found)
        return found

    def restart(self, name: str) -> None:
        """Started again as the Procfile ships it (what a supervisor does after a crash)."""
        self.restarts += 1
        self.start_celery(name)

    # --- between scenarios ----------------------------------------------------------------

    def reset(self) -> None:
        """Every Celery process stopped, the rows provisioning writes emptied, Redis flushed
        (queues, caches, locks), the sandbox reset; then the Celery processes started again."""
        from django.db import connection

        from bench.db import clear_instances

        self.stop_celery()
        self.crashes.clear()
        connection.close()
        clear_instances()
        self.redis.client().flushall()
        self.sandbox.reset()
        self.start_celery()

    def versions(self) -> dict[str, str]:
        return {"postgres": self.pg.version(), "redis": self.redis.version()}


def _environment(
    root: Path, pg: OwnPostgres, redis: OwnRedis, sandbox_port: int, log_level: str
) -> dict[str, str]:
    drop = _configuration_names() | {"PYTEST_VERSION", "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "novitai.settings",
            "DEBUG": "false",
            "SECRET_KEY": "chaos-" + os.urandom(16).hex(),
            "SECURE_HTTPS": "false",  # plain HTTP on loopback
            "ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": pg.url(DATABASE),
            "REDIS_URL": redis.url,
            "NOVITA_API_KEY": SANDBOX_KEY,
            "NOVITA_API_BASE_URL": f"http://127.0.0.1:{sandbox_port}/gpu-instance/openapi/v1",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",  # the receivers are on loopback
            "LOG_LEVEL": log_level,
            "LOG_FORMAT": "json",
            # never throttled (the throttle's Redis counter still runs on every request)
            "API_THROTTLE_RATE": "100000000/min",
            "NOVITAI_VAR_DIR": str(root / "var"),
            **SUITE_SETTINGS,
        }
    )
    (root / "var").mkdir(exist_ok=True)
    return env


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
