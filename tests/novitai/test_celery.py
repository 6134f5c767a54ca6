"""The request id travels with a task: published in its headers, restored in the worker."""

from __future__ import annotations

from kombu import Connection

from novitai.celery import app
from novitai.logging import get_request_id, set_request_id


def test_request_id_is_published_with_the_task() -> None:
    set_request_id("req-celery-1")
    try:
        with Connection("memory://") as conn:
            app.send_task("tests.noop", args=["an-id"], connection=conn, queue="probe")
            message = conn.SimpleQueue("probe").get(timeout=2)
    finally:
        set_request_id(None)
    assert message.headers["request_id"] == "req-celery-1"
    assert message.headers["task"] == "tests.noop"


def test_request_id_is_restored_in_the_worker() -> None:
    seen: list[str | None] = []

    @app.task(name="tests.capture_request_id", shared=False)
    def capture() -> None:
        seen.append(get_request_id())

    capture.apply(headers={"request_id": "req-celery-2"})
    capture.apply()
    assert seen[0] == "req-celery-2"
    assert seen[1] is not None
    assert seen[1].startswith("task-")
    assert get_request_id() is None
