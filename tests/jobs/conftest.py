"""Fixtures of the jobs tests (the instances tests import `sent_tasks` too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from novitai.celery import app


@dataclass
class SentTasks:
    """Tasks sent to the broker: (name, args, options). The broker itself is not asserted on:
    what novitai asked it to carry is."""

    calls: list[tuple[str, list[Any], dict[str, Any]]] = field(default_factory=list)

    @property
    def names_and_args(self) -> list[tuple[str, list[Any]]]:
        return [(name, args) for name, args, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> SentTasks:
    recorder = SentTasks()

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> None:
        recorder.calls.append((name, list(args or []), options))

    monkeypatch.setattr(app, "send_task", send_task)
    return recorder
