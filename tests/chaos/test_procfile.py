"""The chaos suite starts the Celery processes the Procfile ships, as it ships them."""

from __future__ import annotations

import socket
from pathlib import Path

from chaos.procfile import celery_processes, expand, read

ROOT = Path(__file__).resolve().parent.parent.parent


def test_variables_are_expanded_with_their_defaults() -> None:
    command = "celery --concurrency=${N:-2} --loglevel=${LEVEL:-INFO} $X ${Y}"
    assert expand(command, {"LEVEL": "WARNING", "X": "x"}) == (
        "celery --concurrency=2 --loglevel=WARNING x "
    )


def test_the_celery_processes_of_a_procfile(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "# processes\n"
        "web: python manage.py runserver 0.0.0.0:${WEB_PORT:-8000} --noreload\n"
        "worker: celery -A novitai worker --queues=default,provision --concurrency=${C:-2}"
        " --hostname=worker@%h\n"
        "hooks: celery -A novitai worker -Q webhooks -n hooks@%h\n"
        "beat: celery -A novitai beat --loglevel=INFO --pidfile=\n"
    )
    found = celery_processes(read(procfile), {"C": "3"}, celery="/v/celery", python="/v/python")
    assert list(found) == ["worker", "hooks", "beat"]
    worker, hooks, beat = found["worker"], found["hooks"], found["beat"]
    assert worker.argv == [
        "/v/celery",
        "-A",
        "novitai",
        "worker",
        "--queues=default,provision",
        "--concurrency=3",
        "--hostname=worker@%h",
    ]
    assert (worker.subcommand, worker.queues) == ("worker", ["default", "provision"])
    assert worker.hostname == f"worker@{socket.gethostname()}"
    assert (hooks.queues, hooks.hostname) == (["webhooks"], f"hooks@{socket.gethostname()}")
    assert (beat.subcommand, beat.queues) == ("beat", [])


def test_the_shipped_procfile_has_workers_for_every_queue_and_one_beat() -> None:
    found = celery_processes(read(ROOT / "Procfile"), {}, celery="celery", python="python")
    queues = {q for p in found.values() if p.subcommand == "worker" for q in p.queues}
    assert {"default", "provision", "monitor", "webhooks"} <= queues
    assert [p.name for p in found.values() if p.subcommand == "beat"] == ["beat"]
