"""The invariant checker: what must hold once the system has quiesced after a fault.

It judges a Snapshot — plain data read from Postgres (rows, notifiable events, deliveries), the
sandbox's control API (every upstream instance) and the suite's own records (the API's answers,
the creates it accepted, what the webhook receivers got) — and knows nothing of how they were
read, so that its logic is tested on its own (tests/chaos/test_oracle.py).

The invariants (issue 10):

- every accepted create (202) reached its expected end (ready, or the end the scenario expects);
- no instance row holds two live upstream instances (a duplicate GPU);
- no live upstream instance without a live row (an orphan: a GPU billing for nobody; a failed
  row's GPU counts, it must have been deleted);
- every notifiable event has its delivery, and every delivery reached its receiver: exactly
  once per webhook-id (the same webhook-id twice is one delivery received twice: allowed,
  counted), never a second POST of it while the first is still being answered, every signature
  valid;
- no 5xx from the API outside a database outage, and during one only 503 `service_unavailable`
  with Retry-After; every request answered.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# Statuses of a row that owns its upstream instance. A terminated row owns nothing; a failed
# row's upstream GPU must have been deleted (a failure leaves nothing billing).
NOT_LIVE = frozenset({"terminated", "failed"})
DB_OUTAGE = "db_outage"


@dataclass(frozen=True)
class Row:
    """An instance row of ours."""

    id: str  # uuid, with dashes
    status: str
    novita_instance_id: str = ""
    failure_reason: str = ""


@dataclass(frozen=True)
class Upstream:
    """An instance in the sandbox's ledger (removed ones too)."""

    id: str
    name: str
    live: bool  # not removed


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery row (the outbox): its event_id is the webhook-id."""

    webhook_id: str
    event_type: str
    instance_id: str
    target_url: str
    status: str = "pending"


@dataclass(frozen=True)
class Received:
    """One POST a receiver of the suite got."""

    url: str
    webhook_id: str
    event_type: str
    instance_id: str
    started: float  # when its body had been read
    finished: float | None  # when its answer was complete or the connection closed
    signature_valid: bool = True


@dataclass(frozen=True)
class Response:
    """One answer of novitai's API to the suite (status 0: no answer at all)."""

    sent: float
    answered: float
    method: str
    kind: str  # create, list, retrieve, stop, health, ...
    status: int
    retry_after: str | None = None
    code: str = ""  # the error envelope's code


@dataclass(frozen=True)
class Accepted:
    """A create the API answered 202, and the statuses it may end in."""

    id: str
    expect: frozenset[str] = frozenset({"ready"})


@dataclass
class Snapshot:
    prefix: str  # NOVITA_NAME_PREFIX
    rows: list[Row] = field(default_factory=list)
    upstream: list[Upstream] = field(default_factory=list)
    # (instance id, webhook event type) of every notifiable transition of a row with a URL.
    events: list[tuple[str, str]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    receiver_urls: frozenset[str] = frozenset()  # deliveries to these are judged
    responses: list[Response] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    # (name, start, end) of the scenario's phases, to say where a 5xx happened. Inside a phase
    # named DB_OUTAGE a 503 `service_unavailable` with Retry-After is allowed.
    phases: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class Verdict:
    not_at_end: dict[str, str] = field(default_factory=dict)  # id -> status (or "missing")
    duplicate_gpus: dict[str, list[str]] = field(default_factory=dict)  # row id -> upstream ids
    orphans: list[str] = field(default_factory=list)  # upstream ids
    events_without_delivery: dict[str, int] = field(default_factory=dict)  # "id type" -> n
    missing_deliveries: list[str] = field(default_factory=list)  # webhook-ids never received
    received_twice: dict[str, int] = field(default_factory=dict)  # webhook-id -> times
    concurrent_resends: list[str] = field(default_factory=list)  # webhook-ids
    unknown_received: list[str] = field(default_factory=list)  # webhook-ids not in the outbox
    bad_signatures: int = 0
    server_errors: dict[str, int] = field(default_factory=dict)  # "<status> <phase>" -> n
    forbidden_errors: int = 0  # 5xx outside a DB outage, or not a proper 503 inside one
    unanswered: int = 0
    accepted: int = 0
    at_end: int = 0
    deliveries: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations()

    @property
    def converged(self) -> bool:
        """The state has reached what it must: every create at its end, no duplicate, no
        orphan, every delivery received. (The other violations are history — a 5xx answered,
        a delivery POSTed twice — that no waiting undoes.)"""
        return not (
            self.not_at_end
            or self.duplicate_gpus
            or self.orphans
            or self.events_without_delivery
            or self.missing_deliveries
        )

    def violations(self) -> list[str]:  # noqa: C901 - one branch per invariant, in the README's order
        found = []
        if self.not_at_end:
            found.append(f"{len(self.not_at_end)} accepted create(s) not at their end")
        if self.duplicate_gpus:
            found.append(f"{len(self.duplicate_gpus)} row(s) with two live upstream instances")
        if self.orphans:
            found.append(f"{len(self.orphans)} live upstream instance(s) without a live row")
        if self.events_without_delivery:
            found.append(f"{sum(self.events_without_delivery.values())} event(s) not in the outbox")
        if self.missing_deliveries:
            found.append(f"{len(self.missing_deliveries)} delivery(ies) never received")
        if self.concurrent_resends:
            found.append(f"{len(self.concurrent_resends)} delivery(ies) POSTed again mid-attempt")
        if self.unknown_received:
            found.append(f"{len(self.unknown_received)} webhook(s) received that no row sent")
        if self.bad_signatures:
            found.append(f"{self.bad_signatures} webhook(s) with a bad signature")
        if self.forbidden_errors:
            found.append(f"{self.forbidden_errors} 5xx answer(s) outside what a DB outage allows")
        if self.unanswered:
            found.append(f"{self.unanswered} API request(s) without an answer")
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": self.violations(),
            "accepted": self.accepted,
            "at_end": self.at_end,
            "not_at_end": self.not_at_end,
            "duplicate_gpus": self.duplicate_gpus,
            "orphans": self.orphans,
            "events_without_delivery": self.events_without_delivery,
            "deliveries": self.deliveries,
            "missing_deliveries": self.missing_deliveries,
            "received_twice": self.received_twice,
            "concurrent_resends": self.concurrent_resends,
            "unknown_received": self.unknown_received,
            "bad_signatures": self.bad_signatures,
            "server_errors": self.server_errors,
            "forbidden_errors": self.forbidden_errors,
            "unanswered": self.unanswered,
        }


def owner_key(name: str, prefix: str) -> str | None:
    """The 12 hex digits of the row an upstream name belongs to: "<prefix>-<12 hex>", or
    "<prefix>-<12 hex>-r<n>" after a spot reprovision (instances.services.novita_name_for)."""
    match = re.fullmatch(rf"{re.escape(prefix)}-([0-9a-f]{{12}})(?:-r\d+)?", name)
    return match.group(1) if match else None


def row_key(row_id: str) -> str:
    return row_id.replace("-", "")[:12]


def phases_of(response: Response, phases: list[tuple[str, float, float]]) -> list[str]:
    """The phases the request was in flight during (at some moment of each)."""
    return [
        name for name, start, end in phases if response.sent <= end and response.answered >= start
    ]


def judge(snapshot: Snapshot) -> Verdict:
    verdict = Verdict()
    _judge_ends(snapshot, verdict)
    _judge_upstream(snapshot, verdict)
    _judge_webhooks(snapshot, verdict)
    _judge_api(snapshot, verdict)
    return verdict


def _judge_ends(snapshot: Snapshot, verdict: Verdict) -> None:
    rows = {row.id: row for row in snapshot.rows}
    verdict.accepted = len(snapshot.accepted)
    for accepted in snapshot.accepted:
        row = rows.get(accepted.id)
        if row is None:
            verdict.not_at_end[accepted.id] = "missing"
        elif row.status not in accepted.expect:
            reason = f" ({row.failure_reason})" if row.failure_reason else ""
            verdict.not_at_end[accepted.id] = row.status + reason
        else:
            verdict.at_end += 1


def _judge_upstream(snapshot: Snapshot, verdict: Verdict) -> None:
    rows_by_key = {row_key(row.id): row for row in snapshot.rows}
    owned = {
        row.novita_instance_id
        for row in snapshot.rows
        if row.status not in NOT_LIVE and row.novita_instance_id
    }
    live_by_row: dict[str, list[str]] = defaultdict(list)
    for item in snapshot.upstream:
        key = owner_key(item.name, snapshot.prefix)
        if key is None or not item.live:
            continue  # not ours (another deployment's prefix), or gone
        row = rows_by_key.get(key)
        if row is not None:
            live_by_row[row.id].append(item.id)
        if item.id not in owned:
            verdict.orphans.append(item.id)
    verdict.duplicate_gpus = {
        row_id: sorted(ids) for row_id, ids in live_by_row.items() if len(ids) > 1
    }
    verdict.orphans.sort()


def _judge_webhooks(snapshot: Snapshot, verdict: Verdict) -> None:
    deliveries = [d for d in snapshot.deliveries if d.target_url in snapshot.receiver_urls]
    verdict.deliveries = len(deliveries)
    # The outbox: every notifiable transition has its delivery row.
    expected = Counter(f"{instance_id} {event_type}" for instance_id, event_type in snapshot.events)
    written = Counter(f"{d.instance_id} {d.event_type}" for d in snapshot.deliveries)
    verdict.events_without_delivery = {
        key: count - written[key] for key, count in expected.items() if count > written[key]
    }
    by_id: dict[str, list[Received]] = defaultdict(list)
    for received in snapshot.received:
        by_id[received.webhook_id].append(received)
        if not received.signature_valid:
            verdict.bad_signatures += 1
    known = {d.webhook_id for d in snapshot.deliveries}
    verdict.missing_deliveries = sorted(
        d.webhook_id for d in deliveries if d.webhook_id not in by_id
    )
    verdict.unknown_received = sorted(webhook_id for webhook_id in by_id if webhook_id not in known)
    for webhook_id, arrivals in by_id.items():
        if len(arrivals) > 1:
            verdict.received_twice[webhook_id] = len(arrivals)
        if _overlapping(arrivals):
            verdict.concurrent_resends.append(webhook_id)
    verdict.concurrent_resends.sort()


def _overlapping(arrivals: list[Received]) -> bool:
    """A POST of the webhook arrived while an earlier one of it was still being answered."""
    ordered = sorted(arrivals, key=lambda a: a.started)
    for earlier, later in itertools.pairwise(ordered):
        end = earlier.finished if earlier.finished is not None else float("inf")
        if later.started < end:
            return True
    return False


def _judge_api(snapshot: Snapshot, verdict: Verdict) -> None:
    counts: Counter[str] = Counter()
    for response in snapshot.responses:
        if response.status == 0:
            verdict.unanswered += 1
            continue
        if response.status < 500:
            continue
        during = phases_of(response, snapshot.phases)
        outage = DB_OUTAGE in during
        label = DB_OUTAGE if outage else (during[0] if during else "outside any phase")
        counts[f"{response.status} {label}"] += 1
        proper_503 = (
            response.status == 503
            and response.code == "service_unavailable"
            and bool(response.retry_after)
        )
        if not (outage and proper_503):
            verdict.forbidden_errors += 1
    verdict.server_errors = dict(sorted(counts.items()))
