"""SSH credentials: the one way to Novita's ssh password for an instance.

The representation carries where to ssh (`ssh {host, port, user, command}`, read once a run by
the monitoring pass, instances/monitoring/checks.py) and never the password. The password is
asked of Novita at the moment a tenant asks for it, on its own instance, shown to it once, and
the read is an event (`ssh_credentials_read`, with the actor, never the value). It is not
stored, cached, logged or put in a task argument: it lives in this call's memory only.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings

from instances.lifecycle import instance_event_record
from instances.models import Instance, InstanceStatus
from instances.monitoring.checks import access_of
from instances.selectors import SSH_STATUSES
from novitai.errors import Conflict, NotFound, UpstreamUnavailable
from novitai.locks import held_lock
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.ratelimit import Priority
from novitai.novita.types import Secret
from tenants.selectors import Tenant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SshCredentials:
    host: str
    port: int
    user: str
    command: str
    password: Secret = field(repr=False)


def instance_ssh_credentials_read(
    *, instance_id: uuid.UUID, tenant: Tenant, actor: str
) -> SshCredentials:
    """The ssh details and password of the tenant's own running instance, from Novita now.

    404 for another tenant's (or no) instance; 409 while it does not run or when Novita gives
    no ssh for it; 503 when Novita cannot be asked."""
    instance = Instance.objects.filter(pk=instance_id, tenant=tenant).first()
    if instance is None:
        raise NotFound("No such instance.", code="instance_not_found")
    if instance.status not in SSH_STATUSES or not instance.novita_instance_id:
        raise Conflict(
            f"An instance that is {instance.status} has no ssh access.",
            code="invalid_instance_state",
            details={"status": instance.status, "allowed_from": list(SSH_STATUSES)},
        )
    try:
        upstream = get_client().get_instance(instance.novita_instance_id)
    except novita.NotFound:
        raise Conflict("Novita no longer has the instance.", code="upstream_gone") from None
    except novita.NovitaError as exc:
        raise UpstreamUnavailable(f"Novita could not be asked: {exc.message}") from None
    ssh = upstream.ssh
    if ssh is None or not ssh.host:
        raise Conflict("Novita gives no ssh access to this instance.", code="no_ssh_access")
    instance_event_record(
        instance=instance,
        reason="ssh_credentials_read",
        message=f"The ssh credentials were read by {actor}.",
        actor=actor,
        data={"host": ssh.host, "port": ssh.port, "user": ssh.user},
    )
    return SshCredentials(
        host=ssh.host, port=ssh.port, user=ssh.user, command=ssh.command, password=ssh.password
    )


def instances_access_details_read(*, client: NovitaClient | None = None) -> int:
    """Where to ssh and the log address of ready instances that lack them (Novita's listing does
    not carry them; only an instance's own page does): each page read once a run, at low
    priority at the rate ceiling (after creates, changes and checks), at most
    ACCESS_DETAILS_BATCH_SIZE a run, oldest ready first. An instance without ssh stores a blank
    host, so its page is not read again this run. One run at a time (two would read the same
    pages): a run that finds another going returns 0. Returns the rows read."""
    with held_lock(ACCESS_LOCK) as held:
        if not held:
            return 0
        return _access_details_read(client or get_client())


ACCESS_LOCK = "instances.access_details_read"


def _access_details_read(client: NovitaClient) -> int:
    rows = list(
        Instance.objects.filter(status=InstanceStatus.READY, ssh={})
        .exclude(novita_instance_id="")
        .order_by("ready_at", "pk")
        .only("pk", "novita_instance_id")[: settings.ACCESS_DETAILS_BATCH_SIZE]
    )
    for row in rows:
        try:
            page = client.get_instance(row.novita_instance_id, priority=Priority.LOW)
        except novita.NovitaError as exc:
            logger.warning("access details of instance %s not read: %s", row.pk, exc)
            continue
        ssh, logs_url = access_of(page)
        # Only while it is still ready and unread: a new run (health checking) reads again.
        Instance.objects.filter(pk=row.pk, status=InstanceStatus.READY, ssh={}).update(
            ssh=ssh, logs_url=logs_url
        )
    return len(rows)
