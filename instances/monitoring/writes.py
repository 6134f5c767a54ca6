"""The monitoring pass's writes: in batches of MONITOR_WRITE_BATCH_SIZE rows, each batch a few
statements whatever its size (bulk UPDATEs through instances/bulk.py, bulk INSERTs), so that a
pass's queries grow with batches, not with instances.

Each write is conditional where a row may have moved since it was read: transitions on the
status read (instance_transitions_apply locks the batch's rows and skips those that moved),
releases on failed-and-unreleased, health flags on health_checking, upstream statuses on an
older listing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from instances.bulk import rows_update
from instances.ledger import ledger_close, ledger_observe
from instances.lifecycle import (
    Transition,
    instance_event_build,
    instance_transition_apply,
    instance_transitions_apply,
)
from instances.models import Instance, InstanceEvent, InstanceStatus
from instances.monitoring.outcomes import Flags, Move
from instances.selectors import instance_representation
from novitai.novita.types import NovitaInstance
from webhooks.services import WebhookEvent, webhook_events_record

logger = logging.getLogger(__name__)
T = TypeVar("T")
S = InstanceStatus


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_batches(
    what: str, items: Sequence[T], write: Callable[[Sequence[T]], object], *, size: int
) -> None:
    """`write` each batch of `items`; a batch that fails is logged and left for the next pass
    (every write here is decided afresh from the next listing)."""
    for batch in chunks(items, size):
        try:
            write(batch)
        except Exception:
            logger.exception("monitor: %d %s not written; judged again next pass", len(batch), what)


def moves_write(batch: Sequence[Move]) -> list[Move]:
    """One transaction of transitions; answers those that happened."""
    done = instance_transitions_apply(transitions=[m.transition for m in batch])
    happened = {t.instance.pk for t in done}
    return [m for m in batch if m.transition.instance.pk in happened]


def upstream_statuses_write(rows: Sequence[Instance], *, seen_at: datetime) -> None:
    """The upstream statuses that changed, one statement. They are observations of the listing,
    which no decision reads back (every pass judges its own listing), so they are written
    without a transition's status condition: a row that moved since it was read still had this
    upstream status when the listing was taken. What is kept is the order of listings: only a
    newer listing overwrites a status (two passes despite the lock)."""
    older = Q(upstream_seen_at__isnull=True) | Q(upstream_seen_at__lt=seen_at)
    rows_update(
        Instance.objects.filter(older),
        {
            row.pk: {"upstream_status": row.upstream_status, "upstream_seen_at": seen_at}
            for row in rows
        },
    )
    ledger_observe(rows, at=seen_at)


def releases_write(rows: Sequence[Instance], *, now: datetime) -> None:
    """Failed rows with nothing left upstream: `released_at` and a "released" event, for those
    still failed and unreleased (locked: two passes never both release one)."""
    with transaction.atomic():
        ids = set(
            Instance.objects.select_for_update()
            .filter(pk__in=[row.pk for row in rows], status=S.FAILED, released_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not ids:
            return
        Instance.objects.filter(pk__in=ids).update(released_at=now, create_sent_at=None)
        ledger_close([row for row in rows if row.pk in ids], at=now)
        InstanceEvent.objects.bulk_create(
            instance_event_build(
                instance=row, reason="released", message="Novita confirms nothing is left of it."
            )
            for row in rows
            if row.pk in ids
        )


def flags_write(flags: Sequence[Flags]) -> None:
    """New health flags of rows still checking, one conditional statement."""
    rows_update(
        Instance.objects.filter(status=S.HEALTH_CHECKING),
        {f.row_id: {"endpoints": f.endpoints, "ssh": f.ssh, "logs_url": f.logs_url} for f in flags},
    )


def delete_times_write(ids: Sequence[Any], *, at: datetime) -> None:
    Instance.objects.filter(pk__in=ids).update(delete_requested_at=at)


def events_write(events: Sequence[InstanceEvent]) -> None:
    InstanceEvent.objects.bulk_create(events)


def adoption_write(row: Instance, item: NovitaInstance, *, now: datetime) -> bool:
    """A create found by name: its id recorded and the row moved on to starting, in one
    transaction (not in a batch: rare). True when it moved."""
    with transaction.atomic():
        adopted = Instance.objects.filter(pk=row.pk, novita_instance_id="").update(
            novita_instance_id=item.id, create_sent_at=None, provisioned_at=now
        )
        if not adopted:
            return False
        row.novita_instance_id, row.create_sent_at = item.id, None
        row.provisioned_at = now
        return instance_transition_apply(
            transition=Transition(
                instance=row,
                to_status=S.STARTING,
                reason="created",
                message=f"Created on Novita as {item.id} (found by name).",
                data={"novita_instance_id": item.id, "found_by": "monitor"},
            )
        )


def notice_write(row: Instance, reclaim_at: datetime) -> bool:
    """A spot reclaim notice: `spot_reclaim_at`, an event and the instance.preemption_notice
    webhook (its body the representation, with `spot_reclaim_at`), once per reclaim time."""
    with transaction.atomic():
        told = (
            Instance.objects.filter(pk=row.pk)
            .filter(Q(spot_reclaim_at__isnull=True) | ~Q(spot_reclaim_at=reclaim_at))
            .update(spot_reclaim_at=reclaim_at)
        )
        if not told:
            return False
        row.spot_reclaim_at = reclaim_at
        when = reclaim_at.isoformat().replace("+00:00", "Z")
        instance_event_build(
            instance=row,
            reason="preemption_notice",
            message=f"Novita will reclaim the spot instance at {when}.",
            data={"spot_reclaim_at": when},
        ).save(force_insert=True)
        if row.webhook_url:
            webhook_events_record(
                events=[
                    WebhookEvent(
                        tenant=row.tenant,
                        url=row.webhook_url,
                        event_type="instance.preemption_notice",
                        data=instance_representation(row),
                        instance_id=row.pk,
                        occurred_at=timezone.now(),
                    )
                ]
            )
    logger.info("instance %s: reclaim notice, reclaimed at %s", row.pk, when)
    return True


def identity_write(row: Instance, novita_id: str) -> None:
    """The id of a create whose outcome was unknown, found while tearing it down."""
    Instance.objects.filter(pk=row.pk, novita_instance_id="").update(
        novita_instance_id=novita_id, create_sent_at=None
    )
