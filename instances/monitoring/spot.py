"""Spot reclaims: a spot instance Novita reclaims becomes preempted, and — created with
on_preempt restart or reprovision, recoveries left — is recovered once the reclaim is over.

Novita gives a reclaimed spot instance a notice period in which it still runs (spotStatus
reclaiming); a start then would race the reclaim, so recovery waits until Novita reports it
exited or gone. A restart starts the same instance (its disk kept); a reprovision provisions a
new one through the offer list, the reclaimed offer remembered as short of capacity.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings

from catalog.services import offer_capacity_failed
from instances.lifecycle import SYSTEM, Transition
from instances.metrics import SPOT_RECOVERIES
from instances.models import Instance, InstanceStatus, OnPreempt
from instances.monitoring.outcomes import Counted, Delete, Move, Notice, Outcome, Recover
from instances.services import (
    SPOT_RECOVERY,
    Action,
    instance_action_request,
    instance_reprovision,
)
from jobs.selectors import JobStatus
from novitai.errors import Conflict
from novitai.novita.types import NovitaInstance, NovitaInstanceStatus

logger = logging.getLogger(__name__)

S = InstanceStatus
N = NovitaInstanceStatus
SPOT_RECLAIMED = {"reclaiming", "terminated"}
GONE = {N.REMOVED}


def reclaimed(row: Instance, item: NovitaInstance) -> bool:
    return row.billing_mode == "spot" and item.spot_status in SPOT_RECLAIMED


def notice(row: Instance, item: NovitaInstance) -> Notice | None:
    """A reclaim notice (spotStatus notified, with its reclaim time) not yet told."""
    if row.billing_mode != "spot" or item.spot_status != "notified" or item.spot_reclaim_time <= 0:
        return None
    at = datetime.fromtimestamp(item.spot_reclaim_time, tz=UTC)
    if row.spot_reclaim_at == at:
        return None
    return Notice(row, at)


def recoverable(row: Instance) -> bool:
    """Created with on_preempt restart or reprovision, and recoveries left."""
    return (
        row.on_preempt != OnPreempt.NOTIFY and row.recoveries < settings.SPOT_RECOVERY_MAX_ATTEMPTS
    )


def preemption(row: Instance, item: NovitaInstance, now: datetime) -> Move:
    """→ preempted; then recovered (if asked for and the reclaim is over)."""
    message = "Novita reclaimed the spot instance."
    if row.on_preempt != OnPreempt.NOTIFY and not recoverable(row):
        message += (
            f" Automatic recovery is used up ({row.recoveries} of "
            f"{settings.SPOT_RECOVERY_MAX_ATTEMPTS}): it stays preempted."
        )
    transition = Transition(
        instance=row,
        to_status=S.PREEMPTED,
        reason="preempted",
        message=message,
        fields={"stopped_at": now, "endpoints": [{**e, "healthy": False} for e in row.endpoints]},
        data={"spot_status": item.spot_status, "upstream_status": item.status},
        job_outcome=JobStatus.FAILED,
    )
    return Move(transition, then=Recover(row, item))


def recover(
    row: Instance, item: NovitaInstance | None, marked: set[tuple[str, str]]
) -> list[Outcome]:
    """Starts a preempted instance again, or provisions a new one, once Novita has finished
    reclaiming it (exited, or gone); until then it waits. Acts at once (each is a transaction of
    its own); answers what is left for the pass: the reclaimed instance to delete, the count.
    `marked`: the offers this pass already remembered as short of capacity."""
    if not recoverable(row):
        return []
    gone = item is None or item.status in GONE or item.status in N.REMOVING_STATES
    if not gone and item is not None and item.status != N.EXITED:
        return []
    attempt = f"recovery {row.recoveries + 1} of {settings.SPOT_RECOVERY_MAX_ATTEMPTS}"
    restart = row.on_preempt == OnPreempt.RESTART and not gone
    outcomes: list[Outcome] = []
    try:
        if restart:
            instance_action_request(
                instance_id=row.pk,
                tenant=None,
                action=Action.START,
                actor=SYSTEM,
                reason=SPOT_RECOVERY,
                message=f"Starting it again after the reclaim ({attempt}).",
                fields={"recoveries": row.recoveries + 1},
            )
        else:
            old_id = _reprovision(row, attempt, marked)
            if old_id and not gone:
                outcomes.append(Delete(None, old_id, "replaced"))
    except Conflict:
        return []  # it moved meanwhile (a delete, a start by its owner): theirs to follow
    how = OnPreempt.RESTART if restart else OnPreempt.REPROVISION
    SPOT_RECOVERIES.labels(mode=how).inc()
    logger.info("spot instance %s reclaimed: recovered by %s (%s)", row.pk, how, attempt)
    outcomes.append(Counted(S.STARTING if restart else S.PENDING))
    return outcomes


def _reprovision(row: Instance, attempt: str, marked: set[tuple[str, str]]) -> str:
    """A new provision job; returns the reclaimed instance's id (to delete)."""
    # Reclaimed for want of capacity: the next offers come from elsewhere. Marked before the new
    # provision job exists (it must not pick this offer), and once a pass (a mass reclaim of one
    # offer is one write and one catalog invalidation).
    offer = (row.novita_product_id, row.cluster_id)
    if all(offer) and offer not in marked:
        offer_capacity_failed(novita_product_id=offer[0], cluster_id=offer[1])
        marked.add(offer)
    why = "" if row.on_preempt == OnPreempt.REPROVISION else " (nothing left to start)"
    return instance_reprovision(
        instance_id=row.pk,
        message=f"Provisioning a new instance after the reclaim{why} ({attempt}).",
    )
