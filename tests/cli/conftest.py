"""CLI fixtures: `novitai` run in-process (main(argv)) against a real HTTP server — pytest-django's
live_server, committed rows (transactional_db) — with the catalog synced from the sandbox.
Tasks the API enqueues are recorded, not sent (sent_tasks); a test runs what a worker would."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connections

from novitai.cli import main
from tests.instances.conftest import PRODUCT, TEMPLATE, catalog, novita  # noqa: F401 (fixtures)
from tests.jobs.conftest import SentTasks, sent_tasks  # noqa: F401 (a fixture)

POLL_INTERVAL = "0.05"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def server(
    live_server: Any,
    transactional_db: None,
    catalog: Any,  # noqa: F811
    sent_tasks: SentTasks,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """novitai over HTTP; the CLI's environment points at it (no key yet)."""
    monkeypatch.delenv("NOVITAI_API_KEY", raising=False)
    monkeypatch.setenv("NOVITAI_URL", live_server.url)
    monkeypatch.setenv("NOVITAI_POLL_INTERVAL", POLL_INTERVAL)
    return str(live_server.url)


@pytest.fixture
def cli(server: str, api_key: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """cli("list", "--json") → Run(code, out, err), with the tenant's key in NOVITAI_API_KEY.
    Every run asserts that the key is printed nowhere and that no traceback escaped."""
    monkeypatch.setenv("NOVITAI_API_KEY", api_key)

    def run(*argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), stdout=out, stderr=err)
        result = Run(code, out.getvalue(), err.getvalue())
        assert api_key not in result.out + result.err
        assert "Traceback" not in result.err
        return result

    return run


def create_args(name: str = "trainer-1", *extra: str) -> list[str]:
    return ["create", name, "--product", PRODUCT, "--template", TEMPLATE, *extra]


class Driver:
    """Runs `work` in a thread (as a worker would, beside the waiting CLI); join() re-raises
    what it raised. The thread's database connection is closed when it ends."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    def start(self) -> Driver:
        self.thread.start()
        return self

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the driver did not finish"
        if self.error is not None:
            raise self.error


@pytest.fixture
def drive() -> Iterator[Callable[[Callable[[], None]], Driver]]:
    drivers: list[Driver] = []

    def start(work: Callable[[], None]) -> Driver:
        driver = Driver(work).start()
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.thread.join(30)


def fields(out: str) -> dict[str, str]:
    """The key-value view of an instance: {"status": "ready", "novita id": "…", …} (first lines
    of multi-line values)."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        if line and not line[0].isspace():
            key, _, value = line.partition("  ")
            found[key] = value.strip()
    return found
