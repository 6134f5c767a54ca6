"""One monitoring pass: the lock, the listing, a decision per watched row, the batched writes,
the health checks, then the deletes. The algorithm is in this package's docstring."""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from instances.health import CheckPlan
from instances.models import BillingMode, Instance, InstanceStatus
from instances.monitoring import checks, spot, sweeps, writes
from instances.monitoring.decisions import decide
from instances.monitoring.listing import Listing
from instances.monitoring.outcomes import (
    Adopt,
    CheckHealth,
    Counted,
    Delete,
    Flags,
    Identify,
    Move,
    Notice,
    Observe,
    Outcome,
    Outcomes,
    Recover,
    Release,
)
from instances.selectors import MONITOR_LAST_PASS_KEY, MONITOR_PASSES_KEY
from novitai.locks import held_lock
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient, get_client
from novitai.outages import cache_guard

logger = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_NAME = "instances.monitor"
AGAIN_KEY = "instances:monitor:again"
LISTED_AT_KEY = "instances:monitor:listed_at"

S = InstanceStatus
WATCHED = Q(
    status__in=[
        S.PROVISIONING,
        S.STARTING,
        S.HEALTH_CHECKING,
        S.READY,
        S.STOPPING,
        S.STOPPED,
        S.RESTARTING,
        S.TERMINATING,
        S.PREEMPTED,
    ]
) | Q(status=S.FAILED, released_at__isnull=True)
# Rows that a pass must look at every interval: everything in transit, and ready spot instances
# (a reclaim notice or a reclaim is seen only in the listing). Ready on-demand and stopped rows
# change upstream only by drift (deleted or started outside novitai), which a listing every
# MONITOR_STEADY_INTERVAL_SECONDS catches.
FAST = (WATCHED & ~Q(status__in=[S.READY, S.STOPPED])) | Q(
    status=S.READY, billing_mode=BillingMode.SPOT
)


@dataclass
class PassReport:
    upstream: int = 0
    rows: int = 0
    transitions: int = 0
    health_checked: int = 0
    deletes: int = 0
    orphans_deleted: int = 0
    skipped: bool = False
    steady: bool = False  # nothing needed a look this interval: no listing was made
    again: bool = False  # a tick was skipped while this pass ran: run the next one now
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def monitor_pass(*, client: NovitaClient | None = None) -> PassReport:
    """One pass, unless another holds the lock (then an empty, skipped report, and the pass
    that holds it is asked to go again: see `again`)."""
    with held_lock(LOCK_NAME) as held:
        if not held:
            _noted("monitor_again", lambda: cache.set(AGAIN_KEY, True, timeout=_again_ttl()))
            return PassReport(skipped=True)
        _noted("monitor_again", lambda: cache.delete(AGAIN_KEY))
        if _steady():
            _count_pass()  # a pass that found nothing to look at is still a live monitor
            return PassReport(steady=True)
        report = MonitorPass(client or get_client()).run()
    # A tick that came while this pass ran was skipped: rather than wait for the next tick
    # (up to one interval more of notification lag), the caller runs the next pass now.
    again = cache_guard("monitor_again", lambda: cache.get(AGAIN_KEY), None, cache=cache)
    report.again = bool(again)
    return report


def _steady() -> bool:
    """True when nothing is in transit (nor a ready spot instance) and the last listing is less
    than MONITOR_STEADY_INTERVAL_SECONDS old: then this pass lists nothing. Without the cache
    (Redis down) every pass lists, as before."""
    steady = float(settings.MONITOR_STEADY_INTERVAL_SECONDS)
    if steady <= float(settings.MONITOR_INTERVAL_SECONDS):
        return False
    listed_at = cache_guard(
        "monitor_listed_at", lambda: cache.get(LISTED_AT_KEY), None, cache=cache
    )
    if listed_at is None or time.time() - float(listed_at) >= steady:
        return False
    return not Instance.objects.filter(FAST).exists()


def _again_ttl() -> float:
    return max(2 * settings.MONITOR_INTERVAL_SECONDS, 1)


def _noted(operation: str, call: Callable[[], object]) -> None:
    """Bookkeeping in the cache that a pass can do without (Redis down): not made."""
    cache_guard(operation, call, None, cache=cache)


def _count_pass() -> None:
    def count() -> None:
        if not cache.add(MONITOR_PASSES_KEY, 1, timeout=None):
            try:
                cache.incr(MONITOR_PASSES_KEY)
            except ValueError:
                cache.set(MONITOR_PASSES_KEY, 1, timeout=None)
        cache.set(MONITOR_LAST_PASS_KEY, time.time(), timeout=None)

    _noted("monitor_passes", count)


def guarded(row: Instance, step: Callable[[], None]) -> None:
    """One instance's trouble must not stop the pass for every other one: the row is looked at
    again next pass."""
    try:
        step()
    except novita.NovitaError as exc:
        logger.warning("monitor: instance %s not advanced: %s", row.pk, exc)
    except Exception:
        logger.exception("monitor: instance %s not advanced", row.pk)


class MonitorPass:
    """A pass: what the decisions ask for is collected here and written in batches."""

    def __init__(self, client: NovitaClient) -> None:
        self.client = client
        self.report = PassReport()
        self.listing = Listing(client=client, listed_at=timezone.now(), now=timezone.now())
        self.batch_size = int(settings.MONITOR_WRITE_BATCH_SIZE)
        self.stored_endpoints: dict[Any, list[dict[str, Any]]] = {}
        self.reclaimed_offers: set[tuple[str, str]] = set()  # (product, cluster) marked
        # What the decisions asked for, written in batches.
        self.moves: list[Move] = []
        self.observed: list[Instance] = []  # rows whose upstream status changed (in memory)
        self.released: list[Instance] = []
        self.flags: list[Flags] = []
        self.deletes: list[Delete] = []
        self.plans: list[tuple[Instance, CheckPlan]] = []

    def run(self) -> PassReport:
        listed_at = timezone.now()
        try:
            upstream = self.client.list_instances()
        except novita.NovitaError as exc:
            # A partial or failed listing must never be read as "those instances are gone".
            logger.warning("monitor pass skipped: listing Novita's instances failed: %s", exc)
            self.report.skipped = True
            return self.report
        self.listing = Listing(client=self.client, listed_at=listed_at, now=timezone.now())
        self.listing.add(upstream)
        listed = listed_at.timestamp()
        _noted("monitor_listed_at", lambda: cache.set(LISTED_AT_KEY, listed, timeout=None))
        self.report.upstream = len(upstream)
        rows = self.watched_rows()
        for row in rows:
            if row.updated_at >= listed_at:
                continue  # changed after the listing: judged next pass
            guarded(row, functools.partial(self.decide, row))
        self.write("upstream status(es)", self.observed, self.observed_write)
        self.apply_moves()  # their follow-ups plan health checks
        self.write("release(s)", self.released, self.releases_write)
        self.health_check()
        self.write("endpoint flag update(s)", self.flags, writes.flags_write)
        self.apply_moves()
        self.absorb(sweeps.orphans(rows, self.listing))
        self.send_deletes()
        _count_pass()
        logger.debug("monitor pass: %s", self.report)
        return self.report

    def watched_rows(self) -> list[Instance]:
        # Not the secrets (envs, the tenant's webhook secrets): nothing here needs them, and
        # each row's would be decrypted.
        rows = list(
            Instance.objects.filter(WATCHED)
            .select_related("tenant", "current_job")
            .defer("envs", "tenant__webhook_secret", "tenant__previous_webhook_secret")
        )
        self.report.rows = len(rows)
        self.stored_endpoints = {row.pk: row.endpoints for row in rows}
        self.stored_ssh = {row.pk: row.ssh for row in rows}
        return rows

    # --- what the decisions ask for -----------------------------------------------------------

    def decide(self, row: Instance) -> None:
        self.absorb(decide(row, self.listing))

    def absorb(self, outcomes: Outcomes) -> None:
        """Each outcome as it comes: collected for the writes, or acted on at once."""
        for outcome in outcomes:
            self.absorb_one(outcome)

    def absorb_one(self, outcome: Outcome) -> None:
        if isinstance(outcome, Move | Observe | Delete | Release | Flags):
            self.collect(outcome)
        else:
            self.act(outcome)

    def collect(self, outcome: Move | Observe | Delete | Release | Flags) -> None:
        """For the writes (and the deletes), made once every row is decided."""
        if isinstance(outcome, Move):
            self.moves.append(outcome)
        elif isinstance(outcome, Observe):
            row = outcome.row
            if row.upstream_status != outcome.status:
                row.upstream_status, row.upstream_seen_at = outcome.status, self.listing.now
                self.observed.append(row)
        elif isinstance(outcome, Delete):
            self.deletes.append(outcome)
        elif isinstance(outcome, Release):
            self.released.append(outcome.row)
        else:
            self.flags.append(outcome)

    def act(self, outcome: CheckHealth | Recover | Adopt | Identify | Notice | Counted) -> None:
        """At once: a plan (it may read the instance's page), a recovery, an adoption."""
        if isinstance(outcome, CheckHealth):
            self.plans.append((outcome.row, checks.plan(outcome.row, outcome.item, self.client)))
        elif isinstance(outcome, Recover):
            self.absorb(spot.recover(outcome.row, outcome.item, self.reclaimed_offers))
        elif isinstance(outcome, Adopt):
            if writes.adoption_write(outcome.row, outcome.item, now=self.listing.now):
                self.count(S.STARTING)
        elif isinstance(outcome, Identify):
            writes.identity_write(outcome.row, outcome.novita_id)
        elif isinstance(outcome, Notice):
            writes.notice_write(outcome.row, outcome.reclaim_at)
        else:
            self.count(outcome.to_status)

    def count(self, to_status: str) -> None:
        self.report.transitions += 1
        self.report.counts[to_status] += 1

    # --- writes -------------------------------------------------------------------------------

    def write(self, what: str, items: Sequence[T], write: Callable[[Sequence[T]], object]) -> None:
        writes.in_batches(what, items, write, size=self.batch_size)

    def observed_write(self, batch: Sequence[Instance]) -> None:
        writes.upstream_statuses_write(batch, seen_at=self.listing.now)

    def releases_write(self, batch: Sequence[Instance]) -> None:
        writes.releases_write(batch, now=self.listing.now)

    def apply_moves(self) -> None:
        moves, self.moves = self.moves, []
        # Alike transitions side by side: a batch writes each kind with one statement.
        moves.sort(key=lambda m: (m.transition.from_status, m.transition.to_status))

        def write(batch: Sequence[Move]) -> None:
            for move in writes.moves_write(batch):
                if move.counted:
                    self.count(move.transition.to_status)
                if move.then is not None:
                    guarded(move.transition.instance, functools.partial(self.absorb_one, move.then))

        self.write("transition(s)", moves, write)

    def health_check(self) -> None:
        if not self.plans:
            return
        results = checks.run([plan for _, plan in self.plans])
        for row, plan in self.plans:
            self.report.health_checked += 1
            verdict = checks.verdict(
                row,
                plan,
                results.get(plan.key, []),
                stored=self.stored_endpoints.get(row.pk),
                now=self.listing.now,
                stored_ssh=self.stored_ssh.get(row.pk),
            )
            if verdict is not None:
                self.absorb_one(verdict)

    def send_deletes(self) -> None:
        sent = sweeps.deletes_send(self.deletes, self.client)
        self.report.deletes += sent.deletes
        self.report.orphans_deleted += sent.orphans
        now = timezone.now()
        self.write(
            "delete time(s)", sent.requested, lambda batch: writes.delete_times_write(batch, at=now)
        )
        self.write("event(s)", sent.events, writes.events_write)
