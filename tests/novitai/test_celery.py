"""The request id travels with a task: published in its headers, restored in the worker."""

from __future__ import annotations

from kombu import Connection

from novitai.celery import app
from novitai.logging import get_request_id, set_request_id
from tests.cli.test_client_only import run_python


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


def test_a_django_process_binds_every_task_to_novitais_app() -> None:
    """`novitai/__init__.py` imports nothing: the app registry loads the Celery app, so that in a
    web process (which never imports novitai.celery itself) the tasks and `current_app` are
    novitai's, with its broker, and `celery -A novitai` still finds it."""
    script = (
        "import django, os\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'novitai.settings'\n"
        "django.setup()\n"
        "import sys\n"
        "from celery import current_app\n"
        "from instances.tasks import monitor\n"
        "from jobs.tasks import sweep\n"
        "from celery.app.utils import find_app\n"
        "novitai_app = sys.modules['novitai.celery'].app\n"
        "print(monitor.app is novitai_app, sweep.app is novitai_app, current_app.main,\n"
        "      find_app('novitai') is novitai_app, current_app.conf.broker_url == "
        "novitai_app.conf.broker_url)\n"
    )
    done = run_python(script)
    assert done.stdout == "True True novitai True True\n", done.stderr
