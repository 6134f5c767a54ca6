"""The per-status state machine of the monitoring pass: what one row's status, read against
Novita's listing, asks for.

Each decision is a generator that yields outcomes (outcomes.py) and writes nothing itself; the
pass absorbs each outcome as it comes (a Recover or an Adopt acts at once, the rest is written in
batches). Helpers that both find something and ask for something (`alive`, `halted`) are used
with `yield from`, which hands back what they found.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from django.conf import settings

from instances.lifecycle import Transition
from instances.models import FailureReason, Instance, InstanceStatus
from instances.monitoring import checks, spot, sweeps
from instances.monitoring.listing import Listing
from instances.monitoring.outcomes import (
    Adopt,
    CheckHealth,
    Decision,
    Delete,
    Move,
    Observe,
    Outcome,
    Recover,
)
from instances.services import Action
from jobs.selectors import JobStatus
from novitai.novita.types import NovitaInstance, NovitaInstanceStatus

S = InstanceStatus
N = NovitaInstanceStatus
GONE = {N.REMOVED}
HALTED = {N.EXITED, N.TO_STOP, N.STOPPING}


def decide(row: Instance, listing: Listing) -> Decision:
    """What the row's status asks for, against the listing."""
    yield from DECISIONS[row.status](row, listing)


# --- what the decisions share -------------------------------------------------------------------


def move(  # noqa: PLR0913 - a Transition's fields, and Move's two
    row: Instance,
    to_status: str,
    reason: str,
    message: str,
    *,
    fields: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    job_outcome: str | None = None,
    then: CheckHealth | Recover | None = None,
    counted: bool = True,
) -> Move:
    """A transition from the status the row was read with."""
    transition = Transition(
        instance=row,
        to_status=to_status,
        reason=reason,
        message=message,
        fields=fields or {},
        data=data,
        job_outcome=job_outcome,
    )
    return Move(transition, then=then, counted=counted)


def fail(row: Instance, reason: FailureReason, message: str) -> Move:
    return Move(Transition.to_failed(instance=row, reason=reason, message=message))


def unhealthy(row: Instance) -> list[dict[str, Any]]:
    return [{**e, "healthy": False} for e in row.endpoints]


def observed(row: Instance, item: NovitaInstance) -> Observe:
    return Observe(row, item.status + (f"/{item.spot_status}" if item.spot_status else ""))


def failure_of(upstream: NovitaInstance) -> tuple[FailureReason, str] | None:
    """An upstream failure Novita reports (statusError), classified."""
    error = upstream.status_error
    if not (error.state or error.message):
        return None
    text = f"{error.state} {error.message}".casefold()
    if "pull" in text or "image" in text:
        return FailureReason.IMAGE_PULL_FAILED, f"Novita could not pull the image: {error.message}"
    return FailureReason.UPSTREAM_ERROR, f"Novita reports an error: {error.message or error.state}"


def alive(row: Instance, listing: Listing) -> Generator[Outcome, None, NovitaInstance | None]:
    """The row's upstream instance while it exists (its status observed); None — with the row
    failed as vanished — once Novita no longer has it or is removing it."""
    item = listing.upstream_of(row)
    if item is None or item.status in GONE or item.status in (N.TO_REMOVE, N.REMOVING):
        yield fail(
            row,
            FailureReason.UPSTREAM_VANISHED,
            f"Novita no longer has instance {row.novita_instance_id}.",
        )
        return None
    yield observed(row, item)
    reclaim_notice = spot.notice(row, item)
    if reclaim_notice is not None:
        yield reclaim_notice
    return item


def halted(row: Instance, item: NovitaInstance, listing: Listing) -> Generator[Outcome, None, bool]:
    """Spot reclaim → preempted (then recovered, if asked for and the reclaim is over); an
    error Novita reports → failed. True if handled."""
    if spot.reclaimed(row, item):
        yield spot.preemption(row, item, listing.now)
        return True
    failure = failure_of(item) if item.status in HALTED or item.status in GONE else None
    if failure is not None:
        yield fail(row, *failure)
        return True
    return False


# --- per status ---------------------------------------------------------------------------------


def provisioning(row: Instance, listing: Listing) -> Decision:
    """The provision job creates; the pass catches up with what it recorded, and adopts a create
    whose answer was lost once it shows up under the row's name (later ones are duplicates)."""
    if row.novita_instance_id:  # recorded while the row was not provisioning: catch up
        yield move(row, S.STARTING, "created", f"Created on Novita as {row.novita_instance_id}.")
        return
    found = listing.named(row)
    if not found:
        return  # the provision job creates, waits or looks up by name itself
    yield Adopt(row, found[0])
    for other in found[1:]:
        yield Delete(row, other.id, "duplicate")


def booting(row: Instance, listing: Listing) -> Decision:
    """starting / restarting: until Novita says running, then health checks."""
    if not row.novita_instance_id:
        return
    item = yield from alive(row, listing)
    if item is None or not listing.action_confirmed(row):
        return
    if (yield from halted(row, item, listing)):
        return
    if item.status == N.RUNNING:
        yield move(
            row,
            S.HEALTH_CHECKING,
            "running",
            "Novita reports it running; checking the application.",
            # a new run: its ssh details are read again (a start may move the port)
            fields={"endpoints": checks.endpoints_of(item, []), "ssh": {}, "logs_url": ""},
            then=CheckHealth(row, item),
        )
    elif item.status == N.EXITED:
        yield booting_exited(row)
    elif listing.overdue(row):
        yield fail(
            row,
            FailureReason.STARTUP_TIMEOUT,
            f"Novita did not start it within {settings.STARTUP_TIMEOUT_SECONDS}s "
            f"(last status {item.status}).",
        )


def booting_exited(row: Instance) -> Move:
    """Novita stopped it while it started: a start goes back to stopped, anything else fails."""
    job = row.current_job
    if job is not None and job.kind == Action.START:
        return move(
            row,
            S.STOPPED,
            "start_failed",
            "Novita stopped it again while it started.",
            fields={"endpoints": unhealthy(row)},
            job_outcome=JobStatus.FAILED,
        )
    return fail(row, FailureReason.UPSTREAM_ERROR, "Novita stopped it while it started.")


def health_checking(row: Instance, listing: Listing) -> Decision:
    item = yield from alive(row, listing)
    if item is None or (yield from halted(row, item, listing)):
        return
    if item.status in HALTED:
        yield fail(
            row,
            FailureReason.UPSTREAM_ERROR,
            "Novita reports it stopped before its application answered.",
        )
    elif listing.overdue(row):
        yield fail(
            row,
            FailureReason.HEALTH_CHECK_TIMEOUT,
            f"The application did not pass its health checks within "
            f"{settings.HEALTH_CHECK_TIMEOUT_SECONDS}s.",
        )
    elif item.status == N.RUNNING:
        yield CheckHealth(row, item)


def ready(row: Instance, listing: Listing) -> Decision:
    item = yield from alive(row, listing)
    if item is None or (yield from halted(row, item, listing)):
        return
    if item.status == N.EXITED:
        yield move(
            row,
            S.STOPPED,
            "stopped_upstream",
            "Novita reports it stopped (not through novitai).",
            fields={"stopped_at": listing.now, "endpoints": unhealthy(row)},
        )


def stopping(row: Instance, listing: Listing) -> Decision:
    item = yield from alive(row, listing)
    if item is None or not listing.action_confirmed(row):
        return
    if item.status == N.EXITED:
        yield move(
            row,
            S.STOPPED,
            "stopped",
            "Novita reports it stopped.",
            fields={"stopped_at": listing.now, "endpoints": unhealthy(row)},
            job_outcome=JobStatus.SUCCEEDED,
        )
    elif listing.overdue(row):
        yield fail(
            row,
            FailureReason.STOP_TIMEOUT,
            f"Novita did not stop it within {settings.STOP_TIMEOUT_SECONDS}s "
            f"(last status {item.status}); it is deleted instead.",
        )


def stopped(row: Instance, listing: Listing) -> Decision:
    item = yield from alive(row, listing)
    if item is not None and item.status == N.RUNNING and not spot.reclaimed(row, item):
        # Started outside novitai: it bills, so it is watched (and reported) again. (A spot
        # instance still running in its reclaim notice is not: it is on its way out.)
        yield move(
            row,
            S.HEALTH_CHECKING,
            "started_upstream",
            "Novita reports it running (not started through novitai).",
            fields={"endpoints": checks.endpoints_of(item, [])},
        )


def preempted(row: Instance, listing: Listing) -> Decision:
    """A reclaimed spot instance: recovered once the reclaim is over (on_preempt restart or
    reprovision); started outside novitai, watched again; otherwise left as it is."""
    if not spot.recoverable(row):
        yield from stopped(row, listing)
        return
    item = listing.upstream_of(row) if row.novita_instance_id else None
    if item is not None:
        yield observed(row, item)
    if item is not None and item.status == N.RUNNING and not spot.reclaimed(row, item):
        yield from stopped(row, listing)  # started outside novitai
        return
    yield Recover(row, item)


DECISIONS: dict[str, Callable[[Instance, Listing], Decision]] = {
    S.PROVISIONING: provisioning,
    S.STARTING: booting,
    S.RESTARTING: booting,
    S.HEALTH_CHECKING: health_checking,
    S.READY: ready,
    S.STOPPING: stopping,
    S.STOPPED: stopped,
    S.PREEMPTED: preempted,
    S.TERMINATING: sweeps.teardown,
    S.FAILED: sweeps.teardown,
}
