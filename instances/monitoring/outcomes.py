"""What a decision of the monitoring pass asks for. Decisions yield these; the pass
(passes.py) collects them and writes them in batches, or acts on them at once where noted."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

from instances.lifecycle import Transition
from instances.models import Instance
from novitai.novita.types import NovitaInstance


@dataclass(frozen=True)
class Observe:
    """Novita's status of the row, as listed (written only when it changed)."""

    row: Instance
    status: str


@dataclass(frozen=True)
class CheckHealth:
    """Health-check the row's application (its instance runs): planned at once, checked with
    every other row's after the first batch of transitions."""

    row: Instance
    item: NovitaInstance


@dataclass(frozen=True)
class Recover:
    """Recover a reclaimed spot instance (spot.py), at once: its start or new provision is a
    transaction of its own."""

    row: Instance
    item: NovitaInstance | None


@dataclass(frozen=True)
class Move:
    """A transition from the status the row was read with, written with its batch; `then` is
    absorbed once it happened (not when the row moved meanwhile). `counted`: in the report's
    transitions (a deadline pushed out within one status is not)."""

    transition: Transition
    then: CheckHealth | Recover | None = None
    counted: bool = True


@dataclass(frozen=True)
class Adopt:
    """A create whose answer was lost is found under the row's name: record its id and move the
    row on to starting, at once and in one transaction (rare)."""

    row: Instance
    item: NovitaInstance


@dataclass(frozen=True)
class Identify:
    """What is being torn down turns out to have an id upstream: record it, at once."""

    row: Instance
    novita_id: str


@dataclass(frozen=True)
class Delete:
    """Delete an instance on Novita, after the writes. `row`: the instance it belongs to (None
    for an orphan, or a reclaimed instance already replaced); `why`: the row's status for a
    teardown, or "duplicate", "orphan", "replaced"."""

    row: Instance | None
    novita_id: str
    why: str


@dataclass(frozen=True)
class Release:
    """A failed row with nothing left upstream: released."""

    row: Instance


@dataclass(frozen=True)
class Flags:
    """New health flags of a row still checking (and its access details, read once a run)."""

    row_id: Any
    endpoints: list[dict[str, Any]]
    ssh: dict[str, Any]
    logs_url: str


@dataclass(frozen=True)
class Notice:
    """A spot reclaim notice (spotStatus notified) not yet told: its event and webhook (at
    once, a transaction of its own: rare)."""

    row: Instance
    reclaim_at: Any  # datetime


@dataclass(frozen=True)
class Counted:
    """A change made outside the batches (an adoption, a recovery), counted in the report."""

    to_status: str


Outcome = (
    Observe
    | CheckHealth
    | Recover
    | Move
    | Adopt
    | Identify
    | Delete
    | Release
    | Flags
    | Notice
    | Counted
)
# A decision: yields what it asks for; `yield from` a helper returns what the helper found.
Decision = Generator[Outcome, None, None]
Outcomes = Iterable[Outcome]
