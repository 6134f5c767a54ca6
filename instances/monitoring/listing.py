"""What one monitoring pass sees of Novita: its instances as listed, and the pass's clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from instances.models import Instance
from instances.services import Action
from jobs.selectors import JobStatus
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient, oldest_first
from novitai.novita.types import NovitaInstance, NovitaInstanceStatus


@dataclass
class Listing:
    """Novita's instances by id and by name, listed at `listed_at`; `now` (a little later: the
    listing took that long) is the time decisions are made at."""

    client: NovitaClient
    listed_at: datetime
    now: datetime
    by_id: dict[str, NovitaInstance] = field(default_factory=dict)
    by_name: dict[str, list[NovitaInstance]] = field(default_factory=lambda: defaultdict(list))

    def add(self, items: Iterable[NovitaInstance]) -> None:
        for item in items:
            self.by_id[item.id] = item
            self.by_name[item.name].append(item)

    def upstream_of(self, row: Instance) -> NovitaInstance | None:
        """The row's instance: from the listing, or — when the listing lacks it — from a get
        (a listing may lag behind a create); None once Novita says it does not exist."""
        item = self.by_id.get(row.novita_instance_id)
        if item is not None:
            return item
        try:
            return self.client.get_instance(row.novita_instance_id)
        except novita.NotFound:
            return None

    def named(self, row: Instance) -> list[NovitaInstance]:
        """Live upstream instances under the row's name, oldest first."""
        return oldest_first(
            i
            for i in self.by_name.get(row.novita_name, [])
            if i.status not in NovitaInstanceStatus.REMOVING_STATES
        )

    def action_confirmed(self, row: Instance) -> bool:
        """For a start/stop/restart: its call was accepted before the listing was taken."""
        job = row.current_job
        if job is None or job.kind not in (Action.START, Action.STOP, Action.RESTART):
            return True
        return (
            job.status != JobStatus.PENDING
            and job.status != JobStatus.RUNNING
            and (job.updated_at < self.listed_at)
        )

    def overdue(self, row: Instance) -> bool:
        """The row's phase deadline has passed."""
        return row.phase_deadline_at is not None and self.now >= row.phase_deadline_at
