"""The monitoring pass: one listing of Novita's instances advances every instance we watch.

    instances.monitor (beat, every MONITOR_INTERVAL_SECONDS; one pass at a time by a lock that
    dies with its holder, novitai/locks.py — a killed pass delays the next by no more than the
    next tick — and safe if two run anyway: every change is a conditional UPDATE)

1. List Novita's instances, every page (upstream calls grow with pages, not with instances).
2. Read every watched row at once (one query): in transit, ready/stopped (drift), terminating,
   failed with something left upstream.
3. Decide per row against the listing; health-check the rows whose instance runs, concurrently;
   write only what changed (a transition, new endpoint flags, the upstream status).
4. Delete what must go: failed instances' GPUs, deletes not yet carried out, duplicates, and
   orphans (our name prefix, no live row) after ORPHAN_GRACE_SECONDS.

Where each part lives:

    passes.py     the pass: lock, listing, one decision per row, writes in batches, then deletes
    listing.py    what the pass sees of Novita (by id, by name; a get when the listing lags)
    outcomes.py   what a decision asks for (a transition, a delete, a release, a health check…)
    decisions.py  the per-status state machine: provisioning, booting, health_checking, ready,
                  stopping, stopped, preempted — functions that yield outcomes
    spot.py       spot reclaims: recognised, and recovered by a start or a new provision
    sweeps.py     teardown (terminating, failed), orphans and duplicates, the deletes sent
    checks.py     health-check orchestration: endpoints, what to check, what the results mean
    writes.py     the batched writes (bulk statements, one transaction per batch of transitions)

Writes are collected while deciding and made in batches of MONITOR_WRITE_BATCH_SIZE rows, so
that a pass's queries grow with batches, not with instances: the upstream statuses, endpoint
flags and delete bookkeeping by bulk statements; the transitions through
`instance_transitions_apply`, one transaction per batch (rows locked, those moved meanwhile
skipped with nothing written, as `instance_transition_apply` skips them). A transition that leads
to more in the same pass (running → health_checking, then its health checks) continues once its
batch has committed.

A row changed after the listing was taken is left for the next pass (the listing may predate
that change), and so is a start/stop/restart whose call has not been confirmed sent before it.

Each pass counts itself and its end time in the cache; instances.selectors reads them
(monitor_passes_count, monitor_last_pass_at) for /health/ready and the summary.
"""

from instances.monitoring.passes import LOCK_NAME, MonitorPass, PassReport, monitor_pass

__all__ = ["LOCK_NAME", "MonitorPass", "PassReport", "monitor_pass"]
