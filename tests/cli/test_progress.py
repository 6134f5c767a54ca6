"""The waiter's own logic with a scripted client (no server): outages waited through, paging of
events past the first page, errors that end the wait. The real server is in test_wait.py."""

from __future__ import annotations

import io
from typing import Any

import pytest

from novitai.cli.client import ApiError, Page, Unreachable
from novitai.cli.progress import ENDED_ELSEWHERE, REACHED, Waiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Scripted:
    """Each GET of the instance takes the next step of `steps` (the last one repeats): a
    status, whose transition is the latest event visible from then on, or an exception,
    raised. Events are served in pages as the API does."""

    def __init__(self, steps: list[Any], events: list[dict[str, Any]]) -> None:
        self.steps = steps
        self.events = events
        self.visible = 0
        self.pages: list[tuple[int, int]] = []

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        while self.visible < len(self.events) and (
            self.visible == 0 or self.events[self.visible - 1]["to_status"] != step
        ):
            self.visible += 1
        return {"id": "i-1", "status": step, "endpoints": []}

    def page(self, path: str, params: dict[str, Any]) -> Page:
        number, size = params["page"], params["page_size"]
        self.pages.append((number, size))
        shown = self.events[: self.visible]
        chunk = shown[(number - 1) * size : number * size]
        return Page(len(shown), chunk, has_next=number * size < len(shown))


def event(index: int, before: str, after: str) -> dict[str, Any]:
    return {"from_status": before, "to_status": after, "reason": f"r{index}", "message": ""}


def waiter(client: Scripted, target: str, *, seen: int = 0) -> tuple[Waiter, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    made = Waiter(
        client,  # type: ignore[arg-type]
        "i-1",
        target=target,
        out=out,
        started=0.0,
        timeout=60,
        poll_interval=1.0,
        events_seen=seen,
        clock=clock,
        sleep=clock.sleep,
    )
    return made, out, clock


def test_an_outage_is_said_once_and_waited_through() -> None:
    down = Unreachable("http://x", "connection refused")
    client = Scripted(
        ["stopping", down, down, ApiError(503, "upstream_unavailable", "busy"), "stopped"],
        [event(1, "ready", "stopping"), event(2, "stopping", "stopped")],
    )
    run, out, _ = waiter(client, "stopped")
    assert run.run({"id": "i-1", "status": "stopping"}).code == REACHED
    assert out.getvalue().splitlines() == [
        "[    0.0s] ready → stopping  r1",
        "[    1.0s] cannot reach novitai at http://x: connection refused; still waiting",
        "[    4.0s] novitai answers again",
        "[    4.0s] stopping → stopped  r2",
        "[    4.0s] stopped",
    ]


@pytest.mark.parametrize(
    "error",
    [ApiError(404, "instance_not_found", "No such instance."), ApiError(401, "auth", "no")],
)
def test_an_error_that_waiting_cannot_mend_ends_it(error: ApiError) -> None:
    run, _, _ = waiter(Scripted([error], []), "ready")
    with pytest.raises(ApiError) as raised:
        run.run({"id": "i-1", "status": "pending"})
    assert raised.value is error


def test_events_past_the_first_page_follow_the_ones_seen() -> None:
    history = [event(i, "a", "a") for i in range(450)] + [event(450, "stopping", "stopped")]
    client = Scripted(["stopped"], history)
    run, out, _ = waiter(client, "stopped", seen=400)
    assert run.run({"id": "i-1", "status": "stopping"}).code == REACHED
    assert client.pages == [(2, 200), (3, 200)]  # the page of the 400th, then on
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[:2] == ["a  r400", "a  r401"]
    assert lines[-2:] == ["stopping → stopped  r450", "stopped"]
    assert len(lines) == 52


def test_a_newer_event_than_the_instance_read_is_read_again_at_once() -> None:
    client = Scripted(["health_checking", "ready"], [event(1, "health_checking", "ready")])
    client.visible = 1  # the event is committed after the instance was read
    run, out, clock = waiter(client, "ready")
    assert run.run({"id": "i-1", "status": "health_checking"}).code == REACHED
    assert clock.now == 0.0  # no poll interval slept
    assert out.getvalue().splitlines()[0] == "[    0.0s] health_checking → ready  r1"


def test_a_settled_status_that_is_not_the_target_ends_the_wait() -> None:
    run, out, _ = waiter(Scripted(["stopped"], []), "terminated")
    outcome = run.run({"id": "i-1", "status": "terminating"})
    assert outcome.code == ENDED_ELSEWHERE
    assert out.getvalue() == "[    0.0s] ended stopped, not terminated\n"


def test_each_step_shows_its_own_time_not_the_poll_that_saw_it() -> None:
    history = [
        {**event(1, "ready", "stopping"), "at": "2026-11-26T12:00:00.000000Z"},
        {**event(2, "stopping", "stopped"), "at": "2026-11-26T12:00:01.500000Z"},
    ]
    client = Scripted(["stopping", "stopping", "stopping", "stopped"], history)
    out, clock = io.StringIO(), Clock()
    clock.now = 0.2  # the stop request was answered 0.2 s after the command began
    run = Waiter(
        client,  # type: ignore[arg-type]
        "i-1",
        target="stopped",
        out=out,
        started=0.0,
        timeout=60,
        poll_interval=1.0,
        answered_at=0.2,
        clock=clock,
        sleep=clock.sleep,
    )
    assert run.run({"id": "i-1", "status": "stopping"}).code == REACHED
    assert out.getvalue().splitlines() == [
        "[    0.2s] ready → stopping  r1",
        "[    1.7s] stopping → stopped  r2",  # seen by the poll at 3.2 s
        "[    3.2s] stopped",
    ]
