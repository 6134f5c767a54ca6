"""The database down: 503 `service_unavailable` with Retry-After, in the envelope under /api/,
logged once as a warning — never a 500 — and the service answers again once it is back.

A throwaway Postgres cluster of the test's own, really stopped (`pg_ctl stop -m fast` cuts every
connection), under gunicorn started as compose starts it: a worker whose persistent connection
dies with the server, then a reconnect that is refused, then one that succeeds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.outages import PostgresCluster, free_port

REPO = Path(settings.BASE_DIR)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stack:
    cluster: PostgresCluster
    url: str
    key: str
    log: Path

    def get(self, path: str, *, cookie: str = "", method: str = "GET", body: Any = None) -> Answer:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if cookie:
            headers["Cookie"] = cookie
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cluster = PostgresCluster()
    cluster.start()
    cluster.create_database()
    var = tmp_path_factory.mktemp("var")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "CACHE_REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL"}
    }
    env.update(
        DEBUG="false",
        SECRET_KEY="a-test-secret-key-that-is-long-enough-for-django-0123456789",
        DATABASE_URL=cluster.url,
        NOVITAI_VAR_DIR=str(var),
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        LOG_LEVEL="INFO",
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)
    created = subprocess.run(
        [*manage, "tenant_create", "acme"], cwd=REPO, env=env, check=True, capture_output=True
    )
    key = re.search(r"api_key: (\S+)", created.stdout.decode())
    assert key is not None
    port = free_port()
    log = var / "gunicorn.log"
    with log.open("wb") as out:
        # compose's web command, one worker, on a free port
        command = ["gunicorn", "novitai.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        server = subprocess.Popen(
            [*command, "--workers", "1", "--access-logfile", "/dev/null"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(cluster, f"http://127.0.0.1:{port}", key.group(1), log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if stack.get("/health/live").status == 200:
                break
        except OSError:
            pass
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "gunicorn did not answer"
        time.sleep(0.2)
    yield stack
    server.terminate()
    server.wait(timeout=20)
    cluster.remove()


def test_a_database_outage_is_a_503_with_retry_after_and_never_a_500(stack: Stack) -> None:
    before = stack.get("/api/v1/instances/")
    assert before.status == 200, before.body
    assert before.json()["results"] == []

    stack.cluster.stop()
    answers = {
        "list": stack.get("/api/v1/instances/"),
        "create": stack.get(
            "/api/v1/instances/",
            method="POST",
            body={"name": "n", "product_name": "RTX 4090 24GB", "template_id": "212"},
        ),
        "root": stack.get("/api/v1/"),
    }
    for name, answer in answers.items():
        assert answer.status == 503, (name, answer.body)
        assert answer.headers["Retry-After"] == "5"
        error = answer.json()["error"]
        assert (error["code"], error["message"], error["details"]) == (
            "service_unavailable",
            "The database cannot be reached right now; try again shortly.",
            {},
        ), name
    # Outside the API (the admin reading a session): a plain 503, with Retry-After too.
    admin = stack.get("/admin/", cookie=f"sessionid={'s' * 32}")
    assert (admin.status, admin.headers["Retry-After"]) == (503, "5")
    assert admin.body == (
        b"Service unavailable: the database cannot be reached right now; try again shortly.\n"
    )
    ready = stack.get("/health/ready")
    assert ready.status == 503
    assert ready.json()["checks"]["database"]["status"] == "down"

    stack.cluster.start()
    after = stack.get("/api/v1/instances/")
    assert after.status == 200, after.body

    log = stack.log.read_text()
    assert "Traceback" not in log
    assert " ERROR " not in log
    # One warning per 503, nothing more.
    assert log.count("WARNING novitai.errors") == 4
    assert log.count("database unavailable: answered 503 (OperationalError: ") == 4
