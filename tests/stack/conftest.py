"""The real thing, as a user runs it: a fresh checkout of this tree in a temporary folder, `make
run` in it (every process of the Procfile: web, the workers, beat, the sandbox and embedded
mode's own Redis), and the README's own command lines against it.

These are slow (a `make run` is about 15 s to ready), so they are markers of their own, left out
of `make test` (pyproject's addopts) and run by .ci/run: `pytest -m stack` (first contact, the
restart, embedded mode without Redis) and `pytest -m browser` (tests/stack/test_browser.py).

The checkout shares this tree's `.venv` (a symlink: installing again would take a minute and is
what CI's `make venv` on a fresh clone already proves); nothing else is shared: its own var/,
its own ports, none of the test suite's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a user's shell would not have: the suite's own variables and every novitai setting.
SUITE_ONLY = ("PYTEST_", "DJANGO_", "DEBUG", "SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL",
              "REDIS_URL", "CACHE_REDIS_URL", "CELERY_BROKER_URL", "EMBEDDED_REDIS",
              "NOVITAI_", "NOVITA_", "WEB_", "SANDBOX_", "FLOWER_", "PROMETHEUS_")  # fmt: skip
READY_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SUITE_ONLY)}
    env.update(extra)
    return env


def fresh_checkout(target: Path) -> Path:
    """This tree's files as git sees them (tracked, and new ones not ignored), in `target`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(REPO / ".venv")
    return target


def http(url: str, *, method: str = "GET", body: Any = None, key: str = "",
         timeout: float = 10) -> tuple[int, Any]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
            status = int(response.status)
    except urllib.error.HTTPError as error:
        text, status = error.read().decode(), error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, str(error)  # nothing listening (yet)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc), to check that none is left behind."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        nxt = [c for p in frontier for c in children.get(p, [])]
        found.update(nxt)
        frontier = nxt
    return found


def alive(pids: set[int]) -> set[int]:
    """Those still running (a zombie has exited: it waits for a reaper, holding nothing)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                running.add(pid)
    return running


@dataclass
class Stack:
    """`make run` in a checkout: start, stop (Ctrl-C), and what it printed."""

    root: Path
    web_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def log(self) -> Path:
        return self.root / f"make-run-{self.runs}.log"

    def env(self, **extra: str) -> dict[str, str]:
        return user_env(NOVITAI_URL=self.url, **self.extra_env, **extra)

    def start(self, *make_args: str) -> None:
        assert self.process is None
        self.runs += 1
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["make", "run", f"WEB_PORT={self.web_port}", f"SANDBOX_PORT={self.sandbox_port}",
                 *make_args],
                cwd=self.root, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches all of it
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"make run exited: {self.tail()}"
            status, body = http(f"{self.url}/health/ready", timeout=5)
            worker = isinstance(body, dict) and body["checks"]["worker"]["status"] == "ok"
            if status == 200 and worker:
                return
            time.sleep(0.5)
        raise AssertionError(f"make run never became ready: {self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def interrupt(self) -> set[int]:
        """Ctrl-C: SIGINT to the process group, as a terminal sends it. Returns the processes
        still running afterwards (none, if honcho's shutdown is clean)."""
        assert self.process is not None
        tree = descendants(self.process.pid)
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=40)
        finally:
            self.process = None
        deadline = time.monotonic() + 10
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        return alive(tree)

    def kill(self) -> None:
        """After a failure: Ctrl-C, then SIGKILL to whatever is left of the tree (honcho puts
        each process in a session of its own: a signal to make's group alone misses them)."""
        if self.process is None:
            return
        tree = descendants(self.process.pid)
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        for pid in alive(tree | {self.process.pid}):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    def demo(self) -> dict[str, str]:
        """The API key and admin password `make run` printed (and keeps in var/)."""
        credentials = json.loads((self.root / "var" / "demo-credentials.json").read_text())
        printed = (self.root / f"make-run-{self.runs}.log").read_text()
        assert f"api_key:         {credentials['api_key']}" in printed
        return credentials

    def sh(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """A command line, run by bash in the checkout, as a user's terminal would."""
        return subprocess.run(
            ["bash", "-c", command], cwd=self.root, env=self.env(), capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One `make run` in a fresh checkout for the session (embedded mode, its own Redis)."""
    running = Stack(fresh_checkout(tmp_path_factory.mktemp("checkout")))
    running.start()
    try:
        yield running
    finally:
        running.kill()


def readme_commands() -> list[str]:
    """Every command line of the README's ```sh blocks (comments and continuations joined)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip() if not line.startswith("#") else ""
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands
