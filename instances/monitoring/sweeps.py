"""What the monitoring pass deletes on Novita: teardown of terminating and failed instances,
orphans, duplicates — the promise that no GPU bills without an owner and no request gets two.

- Teardown: a terminating instance, or a failed one with something left upstream, has every
  instance under its id or its name deleted until Novita reports none (removed or not found);
  only then is it terminated (or released). A delete not confirmed is asked again every
  DELETE_REISSUE_SECONDS.
- Orphans: an instance under our name prefix (NOVITA_NAME_PREFIX) that no live row owns is
  deleted once it has been seen for ORPHAN_GRACE_SECONDS (the first sighting is kept in the
  cache: without the cache nothing is old enough to delete).
- Duplicates: a second instance under the name of a row that has its own id.

The deletes are sent after the pass's writes, each Novita instance once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache

from instances.lifecycle import Transition, instance_event_build
from instances.metrics import DUPLICATES_DELETED, ORPHANS_DELETED
from instances.models import Instance, InstanceEvent, InstanceStatus
from instances.monitoring.listing import Listing
from instances.monitoring.outcomes import Decision, Delete, Identify, Move, Release
from instances.provisioning import grace_over
from jobs.selectors import JobStatus
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient
from novitai.novita.types import NovitaInstance, NovitaInstanceStatus
from novitai.outages import cache_guard

logger = logging.getLogger(__name__)

S = InstanceStatus
ORPHAN_KEY = "instances:orphan:{}"


# --- teardown -----------------------------------------------------------------------------------


def teardown(row: Instance, listing: Listing) -> Decision:
    """terminating, and failed with something left upstream: delete every instance under its id
    or name, until Novita reports none (removed or not found)."""
    present: dict[str, NovitaInstance] = {}
    if row.novita_instance_id:
        item = listing.upstream_of(row)
        if item is not None and item.status != NovitaInstanceStatus.REMOVED:
            present[item.id] = item
    for item in listing.named(row):
        present.setdefault(item.id, item)
    if present:
        yield from _delete_present(row, present, listing)
        return
    if not grace_over(row.create_sent_at, listing.now):
        return  # a create may still land under our name: look again next pass
    if row.status == S.TERMINATING:
        yield Move(
            Transition(
                instance=row,
                to_status=S.TERMINATED,
                reason="deleted",
                message="Novita confirms it is gone.",
                fields={
                    "terminated_at": listing.now,
                    "endpoints": [{**e, "healthy": False} for e in row.endpoints],
                },
                job_outcome=JobStatus.SUCCEEDED,
            )
        )
    else:
        yield Release(row)


def _delete_present(
    row: Instance, present: dict[str, NovitaInstance], listing: Listing
) -> Decision:
    if not row.novita_instance_id:
        # The create whose outcome was unknown landed: its outcome is known now.
        yield Identify(row, next(iter(present)))
    asked = row.delete_requested_at
    if asked is None or listing.now - asked >= timedelta(seconds=settings.DELETE_REISSUE_SECONDS):
        for item in present.values():
            yield Delete(row, item.id, row.status)
    if row.status == S.TERMINATING and listing.overdue(row):
        logger.error(
            "instance %s: Novita has not removed %s after %ss; still asking",
            row.pk,
            ", ".join(present),
            settings.DELETE_TIMEOUT_SECONDS,
        )
        deadline = listing.now + timedelta(seconds=settings.DELETE_TIMEOUT_SECONDS)
        yield Move(
            Transition(
                instance=row,
                to_status=row.status,
                reason="delete_overdue",
                message="Novita has not removed it in time; the delete is asked again.",
                fields={"phase_deadline_at": deadline},
            ),
            counted=False,
        )


# --- orphans and duplicates ---------------------------------------------------------------------


def orphans(rows: Iterable[Instance], listing: Listing) -> Decision:
    """Deletes for the orphans whose grace is over, and for duplicates of watched rows."""
    prefix = f"{settings.NOVITA_NAME_PREFIX}-"
    watched = {row.novita_name: row for row in rows}
    unknown = [n for n in listing.by_name if n.startswith(prefix) and n not in watched]
    owned = {
        name: (status, released)
        for name, status, released in Instance.objects.filter(novita_name__in=unknown).values_list(
            "novita_name", "status", "released_at"
        )
    }
    for name in unknown:
        status, released = owned.get(name, (None, None))
        live_owner = (
            status is not None
            and status != S.TERMINATED
            and not (status == S.FAILED and released is not None)
        )
        if live_owner:
            continue  # pending (no job claimed yet) and the like: its job owns it
        for item in listing.by_name[name]:
            if item.status not in NovitaInstanceStatus.REMOVING_STATES and _orphan_due(
                item, owner=status
            ):
                yield Delete(None, item.id, "orphan")
    # A second instance under the name of a row that has its own: a duplicate.
    for row in watched.values():
        if not row.novita_instance_id or row.status in (S.TERMINATING, S.FAILED):
            continue
        for item in listing.named(row):
            if item.id != row.novita_instance_id:
                yield Delete(row, item.id, "duplicate")


def _orphan_due(item: NovitaInstance, *, owner: str | None) -> bool:
    """Seen for ORPHAN_GRACE_SECONDS (its first sighting kept in the cache)."""
    key = ORPHAN_KEY.format(item.id)
    first_seen = time.time()
    # Without the cache (Redis down) every orphan is seen for the first time: none is deleted
    # before the cache answers again and its grace has run out there.
    if not cache_guard(
        "orphan_seen",
        lambda: cache.add(key, first_seen, timeout=settings.ORPHAN_GRACE_SECONDS * 3 + 60),
        True,
        cache=cache,
    ):
        first_seen = float(
            cache_guard("orphan_seen", lambda: cache.get(key), None, cache=cache) or first_seen
        )
    age = time.time() - first_seen
    if age < settings.ORPHAN_GRACE_SECONDS:
        logger.info("orphan candidate %s (%s), seen %.0fs ago", item.id, item.name, age)
        return False
    logger.warning(
        "deleting orphan %s (%s): its owner is %s",
        item.id,
        item.name,
        owner or "unknown to novitai",
    )
    return True


# --- the deletes --------------------------------------------------------------------------------


@dataclass
class Sent:
    """What sending the deletes did, for the pass to write and report."""

    deletes: int = 0
    orphans: int = 0
    events: list[InstanceEvent] = field(default_factory=list)  # duplicates deleted
    requested: list[Any] = field(default_factory=list)  # ids of rows whose delete was asked


def deletes_send(deletes: Sequence[Delete], client: NovitaClient) -> Sent:
    """Sends each Novita instance's delete once (the first reason wins); a delete Novita refuses
    is asked again next pass. Not found and invalid state change count as done."""
    sent = Sent()
    done: set[str] = set()
    for delete in deletes:
        if delete.novita_id in done:
            continue
        done.add(delete.novita_id)
        try:
            client.delete_instance(delete.novita_id)
        except (novita.NotFound, novita.InvalidStateChange):
            pass
        except novita.NovitaError as exc:
            logger.warning("delete of %s (%s) failed: %s", delete.novita_id, delete.why, exc)
            continue
        _count(delete, sent)
    return sent


def _count(delete: Delete, sent: Sent) -> None:
    sent.deletes += 1
    if delete.why == "orphan":
        ORPHANS_DELETED.inc()
        sent.orphans += 1
    elif delete.why == "duplicate" and delete.row is not None:
        DUPLICATES_DELETED.inc()
        sent.events.append(
            instance_event_build(
                instance=delete.row,
                reason="duplicate_deleted",
                message=f"A second upstream instance ({delete.novita_id}) was deleted.",
                data={"novita_instance_id": delete.novita_id},
            )
        )
    if delete.row is not None and delete.why != "duplicate":
        sent.requested.append(delete.row.pk)
