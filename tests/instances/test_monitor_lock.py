"""The monitor pass's lock dies with its holder: a pass SIGKILLed while holding it (a real process)
delays the next one by no more than about two intervals, and two live passes never overlap."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from instances.monitoring import PassReport, monitor_pass
from tests.e2e.conftest import REPO, _database_url
from tests.instances.helpers import wait_for

pytestmark = pytest.mark.django_db

HOLDER = """
import time
import django
django.setup()
from instances.monitoring import monitor_pass

class Holding:
    def list_instances(self):
        print("holding", flush=True)
        time.sleep(3600)

monitor_pass(client=Holding())
"""


class Empty:
    """Novita with nothing listed: a pass that gets the lock runs to its end at once."""

    def list_instances(self) -> list[Any]:
        return []


def a_pass() -> PassReport:
    return monitor_pass(client=Empty())  # type: ignore[arg-type]


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[bytes]]:
    """Another process in the middle of a pass: it took the lock and waits on Novita's list."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "novitai.settings",
        "DATABASE_URL": _database_url(),
        "NOVITAI_VAR_DIR": str(settings.VAR_DIR),
    }
    if settings.REDIS_URL:  # the cache the starting commit's lock lived in
        env["CACHE_REDIS_URL"] = str(settings.CACHES["default"]["LOCATION"])
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER], cwd=REPO, env=env, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    assert ready, "the holder did not start"
    assert process.stdout.readline() == b"holding\n"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def test_a_pass_killed_while_holding_the_lock_delays_the_next_by_at_most_two_intervals(
    holder: subprocess.Popen[bytes],
) -> None:
    assert a_pass().skipped is True  # two live passes never overlap
    assert a_pass().skipped is True

    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    reports: list[PassReport] = []

    def a_pass_ran() -> bool:
        reports.append(a_pass())
        return not reports[-1].skipped

    wait_for(
        a_pass_ran,
        timeout=2 * settings.MONITOR_INTERVAL_SECONDS,
        interval=0.05,
        what="a pass after the holder was killed",
    )
    assert (reports[-1].upstream, reports[-1].rows) == (0, 0)
