"""Writes on instances that answer API calls: create, start, stop, restart, delete, retry.

None of them calls Novita: each writes the instance's new status, its event and a job in one
transaction, and the job's task (sent on commit) makes the call. The catalog is read before the
transaction (validation), the tenant row is locked inside it (quotas).
"""

from __future__ import annotations

import copy
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalog.errors import NoOfferAvailable, TemplateNotFound, UnknownProduct, UnknownRegion
from catalog.selectors import (
    RejectReason,
    offers_select,
    product_rootfs_limits,
    region_resolve,
)
from catalog.services import TemplateConfig, catalog_reading, template_get
from instances.lifecycle import (
    Transition,
    instance_event_record,
    instance_transition_apply,
    needs_upstream_cleanup,
)
from instances.metrics import CAPACITY_WAITS
from instances.models import (
    Instance,
    InstanceEvent,
    InstanceStatus,
    OnIdle,
    OnPreempt,
    SpotFallback,
)
from instances.provisioning import TRANSIENT_REJECTIONS
from instances.volumes import Placement, volumes_placement
from jobs.selectors import Job, job_get
from jobs.services import job_cancel, job_create, job_retry_hook_register
from novitai.errors import Conflict, NotFound, ServiceError, ValidationFailed
from tenants.selectors import Tenant, tenant_get, tenant_locked

logger = logging.getLogger(__name__)

SUBJECT = "instance"
TASK_PROVISION = "instances.provision"
TASK_ACTION = "instances.action"
SPOT_RECOVERY = "spot_recovery"  # the reason of the events of an automatic spot recovery
DEFAULT_ROOTFS_GB = 60
DEFAULT_EXPECTED_STATUS = ((200, 399),)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Action:
    PROVISION = "provision"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    DELETE = "delete"


# action -> (statuses it may start from, the status it moves to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    Action.START: ((InstanceStatus.STOPPED, InstanceStatus.PREEMPTED), InstanceStatus.STARTING),
    Action.STOP: ((InstanceStatus.READY, InstanceStatus.HEALTH_CHECKING), InstanceStatus.STOPPING),
    Action.RESTART: (
        (InstanceStatus.READY, InstanceStatus.HEALTH_CHECKING),
        InstanceStatus.RESTARTING,
    ),
}
TRANSIT_OF = {action: to for action, (_, to) in ACTIONS.items()} | {
    Action.DELETE: InstanceStatus.TERMINATING
}


def novita_name_for(instance_id: uuid.UUID) -> str:
    """The upstream name: "<prefix>-<12 hex digits of our id>", fixed before any create call."""
    return f"{settings.NOVITA_NAME_PREFIX}-{instance_id.hex[:12]}"


# --- the create request -----------------------------------------------------------------------


@dataclass(frozen=True)
class HealthCheckSpec:
    path: str = "/"
    ports: tuple[int, ...] | None = None  # None: every http port of the template
    expected_status: tuple[tuple[int, int], ...] = DEFAULT_EXPECTED_STATUS
    timeout_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ports": list(self.ports) if self.ports is not None else None,
            "expected_status": [list(r) for r in self.expected_status],
            "timeout_seconds": self.timeout_seconds,
        }


@dataclass(frozen=True)
class InstanceRequest:
    """A create request whose shape is valid (the serializer's output)."""

    name: str
    template_id: str
    product_names: tuple[str, ...]
    gpu_num: int = 1
    rootfs_size: int | None = None
    region: str | None = None
    billing_mode: str = "on_demand"
    max_price_per_hour: Decimal | None = None
    envs: tuple[tuple[str, str], ...] = ()
    webhook_url: str = ""
    health_check: HealthCheckSpec = HealthCheckSpec()
    on_preempt: str = OnPreempt.NOTIFY
    idle_timeout_seconds: int | None = None
    on_idle: str = OnIdle.STOP
    volumes: tuple[tuple[uuid.UUID, str], ...] = ()  # (volume id, mount path)
    idle_policy: tuple[float, int] | None = None  # (gpu_utilization_below, for_seconds)
    capacity_wait_seconds: int = 0
    spot_fallback: str = ""
    max_spend_usd: Decimal | None = None
    on_max_spend: str = "stop"
    expires_at: datetime | None = None
    on_expire: str = "delete"


@dataclass(frozen=True)
class InstanceSpec:
    """A create request checked against the catalog: what instance_create writes."""

    request: InstanceRequest
    rootfs_size: int
    region_code: str  # the preferred region, resolved ("" for none)
    # The mounts as stored (instances/models.py, Instance.volumes), and their cluster.
    volumes: tuple[dict[str, str], ...] = ()
    cluster_id: str | None = None
    # The dearest acceptable offer's hourly price: what a budget admits it at (USD).
    rate_usd_per_hour: Decimal = Decimal(0)


def _rootfs_check(request: InstanceRequest, rootfs_size: int) -> None:
    """400 when no product of the requested names takes a root disk of that size."""
    limits = product_rootfs_limits(request.product_names)
    if not limits:
        return  # unknown products: offers_require says so
    if any(low <= rootfs_size and (not high or rootfs_size <= high) for _, low, high in limits):
        return
    bounds = sorted({f"{name}: {low}-{high or '∞'} GB" for name, low, high in limits})
    raise ValidationFailed(
        f"rootfs_size {rootfs_size} GB is outside the limits of the requested products.",
        code="rootfs_out_of_range",
        details={"rootfs_size": [f"Allowed: {'; '.join(bounds)}."]},
    )


def _health_check_ports_check(request: InstanceRequest, template: TemplateConfig) -> None:
    ports = request.health_check.ports
    if ports is None:
        return
    known = {p.port for p in template.ports}
    unknown = sorted(set(ports) - known)
    if unknown:
        raise ValidationFailed(
            "health_check.ports names ports the template does not expose.",
            details={
                "health_check": {
                    "ports": [
                        f"Not ports of template {template.id}: {unknown}; "
                        f"it exposes {sorted(known)}."
                    ]
                }
            },
        )


# The request fields each catalog check reads: a check runs only when all of them are valid.
_CHECK_FIELDS = {
    "template": {"template_id"},
    "region": {"region"},
    "rootfs": {"product_names", "rootfs_size"},
    "health_check": {"health_check", "template_id"},
    # With gpu_num, billing_mode or max_price wrong, their defaults stand in: the names are
    # still checked (and "no offer" is said only once everything else is right).
    "products": {"product_names"},
}


def problem_field_details(problem: ServiceError) -> dict[str, Any]:
    """The problem as {field: [messages]}, for a 400 that reports several at once."""
    if isinstance(problem, TemplateNotFound):
        return {"template_id": [problem.message]}
    if isinstance(problem, UnknownProduct):
        return {"product_names": [problem.message]}
    if isinstance(problem.details, dict) and problem.details:
        return problem.details
    return {"non_field_errors": [problem.message]}


def instance_request_problems(  # noqa: C901, PLR0912 - one check per catalog rule, each collected
    *,
    request: InstanceRequest,
    unchecked: frozenset[str] = frozenset(),
    tenant: Tenant | None = None,
) -> tuple[InstanceSpec | None, list[ServiceError]]:
    """Every catalog check of a create request (template cached; products, regions and rootfs
    limits from the catalog's rows), each problem collected, none raised: the spec when there
    is none. Checks reading a field named in `unchecked` (invalid in the request) are skipped,
    so that the serializer can report its problems and these together. Writes nothing; a
    template Novita cannot be asked for (503) is raised."""
    problems: list[ServiceError] = []

    def runs(check: str) -> bool:
        return not (_CHECK_FIELDS[check] & unchecked)

    with catalog_reading():
        template: TemplateConfig | None = None
        if runs("template"):
            try:
                template = template_get(template_id=request.template_id)
            except TemplateNotFound as exc:
                problems.append(exc)
        rootfs_size = request.rootfs_size or (
            (template.rootfs_size or DEFAULT_ROOTFS_GB) if template is not None else None
        )
        region_code = ""
        if request.region and runs("region"):
            try:
                region_code = region_resolve(request.region).code
            except UnknownRegion as exc:
                problems.append(exc)
        placement = Placement()
        if request.volumes and tenant is not None:
            try:
                placement = volumes_placement(
                    tenant=tenant, volumes=request.volumes, region_code=region_code
                )
            except ValidationFailed as exc:
                problems.append(exc)
            region_code = region_code or placement.region_code
        if rootfs_size is not None and runs("rootfs"):
            try:
                _rootfs_check(request, rootfs_size)
            except ValidationFailed as exc:
                problems.append(exc)
        if template is not None and runs("health_check"):
            try:
                _health_check_ports_check(request, template)
            except ValidationFailed as exc:
                problems.append(exc)
        rate = Decimal(0)
        if runs("products"):
            selection = offers_select(
                product_names=list(request.product_names),
                gpu_num=request.gpu_num,
                region=region_code or None,
                billing_mode=request.billing_mode,
                max_price_per_hour=request.max_price_per_hour,
                rootfs_size=rootfs_size,
                cluster_id=placement.cluster_id,
            )
            unknown = [
                r.product_name
                for r in selection.rejected
                if r.reason == RejectReason.PRODUCT_NOT_FOUND
            ]
            rate = max((o.price_per_hour for o in selection.offers), default=Decimal(0))
            if unknown:
                problems.append(
                    UnknownProduct(
                        f"No product is named {' or '.join(repr(n) for n in unknown)}.",
                        details={"product_names": unknown},
                    )
                )
            elif (
                not selection.offers
                and not problems
                and not unchecked
                and not _may_wait(request, selection.rejected)
                and not _on_demand_offers(request, region_code, rootfs_size)
            ):
                # Only once everything else is right: another problem may be the cause.
                names = " or ".join(request.product_names)
                problems.append(
                    NoOfferAvailable(
                        f"No offer for {request.gpu_num} x {names} ({request.billing_mode}).",
                        details={"rejected": selection.rejected_details()},
                    )
                )
    if problems or rootfs_size is None:
        return None, problems
    spec = InstanceSpec(
        request=request,
        rootfs_size=rootfs_size,
        region_code=region_code,
        volumes=placement.mounts,
        cluster_id=placement.cluster_id,
        rate_usd_per_hour=rate,
    )
    return spec, []


def _may_wait(request: InstanceRequest, rejected: Any) -> bool:
    """No offer now, but the request waits for capacity and what is missing may come back."""
    return request.capacity_wait_seconds > 0 and any(
        r.reason in TRANSIENT_REJECTIONS for r in rejected
    )


def _on_demand_offers(request: InstanceRequest, region_code: str, rootfs_size: int | None) -> bool:
    """A spot request that falls back to on demand has an on-demand offer."""
    if request.spot_fallback != SpotFallback.ON_DEMAND or request.billing_mode != "spot":
        return False
    selection = offers_select(
        product_names=list(request.product_names),
        gpu_num=request.gpu_num,
        region=region_code or None,
        billing_mode="on_demand",
        max_price_per_hour=request.max_price_per_hour,
        rootfs_size=rootfs_size,
    )
    return bool(selection.offers) or _may_wait(request, selection.rejected)


def request_problems_error(problems: list[ServiceError]) -> ServiceError:
    """One problem as it is (its own code and status); several as one 400 naming every field."""
    if len(problems) == 1:
        return problems[0]
    details: dict[str, Any] = {}
    for problem in problems:
        for field, messages in problem_field_details(problem).items():
            if isinstance(messages, list) and isinstance(details.get(field), list):
                details[field] = [*details[field], *messages]
            else:
                details[field] = messages
    return ValidationFailed(
        f"The request is not valid: {len(problems)} problems ({', '.join(details)}).",
        details=details,
    )


def instance_request_check(
    *, request: InstanceRequest, tenant: Tenant | None = None
) -> InstanceSpec:
    """Checks a create request against the catalog (and the tenant's volumes): every problem at
    once. One problem is raised as it is (404 template_not_found or product_not_found, 400
    rootfs_out_of_range, …); several are one 400 validation_error whose details name every
    field. Writes nothing."""
    spec, problems = instance_request_problems(request=request, tenant=tenant)
    if problems:
        raise request_problems_error(problems)
    assert spec is not None
    return spec


def _quota_check(tenant: Tenant, gpu_num: int) -> None:
    if tenant.max_instances is None and tenant.max_gpus is None:
        return
    usage = Instance.objects.filter(tenant=tenant).exclude(status=InstanceStatus.TERMINATED)
    # A waiting instance counts toward the instance quota, not the GPU quota: it holds none.
    holding = ~Q(status=InstanceStatus.WAITING_FOR_CAPACITY)
    totals = usage.aggregate(n=Count("id"), gpus=Coalesce(Sum("gpu_num", filter=holding), 0))
    if tenant.max_instances is not None and totals["n"] + 1 > tenant.max_instances:
        raise Conflict(
            f"The tenant's quota of {tenant.max_instances} instance(s) is used up "
            "(instances count until they are terminated).",
            code="quota_exceeded",
            details={"max_instances": tenant.max_instances, "instances": totals["n"]},
        )
    if tenant.max_gpus is not None and totals["gpus"] + gpu_num > tenant.max_gpus:
        raise Conflict(
            f"The tenant's quota of {tenant.max_gpus} GPU(s) would be exceeded "
            f"({totals['gpus']} in use, {gpu_num} asked for).",
            code="quota_exceeded",
            details={"max_gpus": tenant.max_gpus, "gpus": totals["gpus"], "requested": gpu_num},
        )


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"An instance named {name!r} exists already (names are free again once terminated).",
        code="instance_name_taken",
        details={"name": [f"{name!r} is taken."]},
    )


def _first_money_due(request: InstanceRequest) -> datetime | None:
    """A new instance costs nothing yet: only its expiry (and its warning) can be due."""
    if request.expires_at is None:
        return None
    warning = timedelta(seconds=float(settings.EXPIRY_WARNING_SECONDS))
    return request.expires_at - warning


@transaction.atomic(savepoint=False)
def instance_create(*, tenant: Tenant, spec: InstanceSpec, actor: str) -> Instance:
    """Writes the instance (pending), its first event and its provision job; the job's task is
    sent after commit. Quotas are checked with the tenant row locked."""
    request = spec.request
    locked = tenant_locked(tenant_id=tenant.pk)
    live = Instance.objects.filter(tenant=locked).exclude(status=InstanceStatus.TERMINATED)
    if live.filter(name=request.name).exists():
        raise _name_taken(request.name)
    _quota_check(locked, request.gpu_num)
    from instances.budget import budget_admit

    budget_admit(tenant=locked, usd_per_hour=spec.rate_usd_per_hour, now=timezone.now())

    instance_id = uuid.uuid4()
    job = job_create(
        kind=Action.PROVISION,
        task_name=TASK_PROVISION,
        subject_type=SUBJECT,
        subject_id=instance_id,
        tenant=locked,
    )
    now = timezone.now()
    # No savepoint: an IntegrityError (a race past the name check, which the tenant lock makes
    # unlikely) aborts the whole transaction, which the 409 below rolls back anyway.
    try:
        instance = Instance.objects.create(
            id=instance_id,
            tenant=locked,
            name=request.name,
            status=InstanceStatus.PENDING,
            template_id=request.template_id,
            product_names=list(request.product_names),
            gpu_num=request.gpu_num,
            rootfs_size=spec.rootfs_size,
            preferred_region=spec.region_code,
            billing_mode=request.billing_mode,
            billing_mode_requested=request.billing_mode,
            spot_fallback=request.spot_fallback,
            max_price_per_hour=request.max_price_per_hour,
            envs=[{"key": k, "value": v} for k, v in request.envs],
            health_check=request.health_check.as_json(),
            volumes=list(spec.volumes),
            webhook_url=request.webhook_url,
            on_preempt=request.on_preempt,
            on_idle=request.on_idle,
            capacity_wait_seconds=request.capacity_wait_seconds,
            idle_timeout=(
                timedelta(seconds=request.idle_timeout_seconds)
                if request.idle_timeout_seconds is not None
                else None
            ),
            idle_gpu_below=request.idle_policy[0] if request.idle_policy else None,
            idle_gpu_for=(
                timedelta(seconds=request.idle_policy[1]) if request.idle_policy else None
            ),
            novita_name=novita_name_for(instance_id),
            current_job=job,
            created_at=now,
            max_spend_usd=request.max_spend_usd,
            on_max_spend=request.on_max_spend,
            expires_at=request.expires_at,
            on_expire=request.on_expire,
            money_due_at=_first_money_due(request),
            admission_rate_usd_per_hour=spec.rate_usd_per_hour,
        )
    except IntegrityError:
        raise _name_taken(request.name) from None
    InstanceEvent.objects.create(
        instance=instance,
        from_status="",
        to_status=InstanceStatus.PENDING,
        reason="requested",
        message="Create requested.",
        actor=actor,
        data={"products": list(request.product_names), "region": spec.region_code or None},
        at=now,
    )
    logger.info("instance %s (%s) requested", instance.pk, instance.name)
    return instance


# --- start, stop, restart, delete -------------------------------------------------------------


def _locked(instance_id: uuid.UUID, tenant: Tenant | None) -> Instance:
    qs = Instance.objects.select_for_update().filter(pk=instance_id)
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    instance = qs.first()
    if instance is None:
        raise NotFound("No such instance.", code="instance_not_found")
    # Related rows read after the lock (select_related with FOR UPDATE would lock them too).
    instance.tenant = tenant_get(tenant_id=instance.tenant_id)
    instance.current_job = (
        job_get(job_id=instance.current_job_id) if instance.current_job_id else None
    )
    return instance


def _invalid_state(action: str, instance: Instance, allowed: tuple[str, ...]) -> Conflict:
    return Conflict(
        f"Cannot {action} an instance that is {instance.status}.",
        code="invalid_instance_state",
        details={"status": instance.status, "allowed_from": list(allowed)},
    )


def _supersede_job(instance: Instance, action: str) -> None:
    job = instance.current_job
    if job is not None and job.is_active:
        job_cancel(job=job, reason=f"superseded by {action}")


def _action_job(instance: Instance, action: str) -> Job:
    return job_create(
        kind=action,
        task_name=TASK_ACTION,
        subject_type=SUBJECT,
        subject_id=instance.pk,
        tenant=instance.tenant,
    )


@transaction.atomic
def instance_action_request(
    *,
    instance_id: uuid.UUID,
    tenant: Tenant | None,
    action: str,
    actor: str,
    reason: str | None = None,
    message: str | None = None,
    fields: dict[str, Any] | None = None,
) -> Instance:
    """start, stop or restart: 409 naming the status when the status does not allow it.
    `reason` and `message` name why in the event when novitai itself asks (idle, spot
    recovery); `fields` are written with the transition."""
    allowed, to_status = ACTIONS[action]
    instance = _locked(instance_id, tenant)
    if instance.status not in allowed:
        raise _invalid_state(action, instance, allowed)
    if action == Action.START:
        _start_admit(instance)
    _supersede_job(instance, action)
    job = _action_job(instance, action)
    instance_transition_apply(
        transition=Transition(
            instance=instance,
            to_status=to_status,
            reason=reason or f"{action}_requested",
            message=message or f"{action.capitalize()} requested.",
            actor=actor,
            fields={**(fields or {}), "current_job": job},
        )
    )
    return instance


def _start_admit(instance: Instance) -> None:
    """A start is admitted by the tenant's budget like a create (the tenant row locked)."""
    from instances.budget import budget_admit

    locked = tenant_locked(tenant_id=instance.tenant_id)
    rate = max(Decimal(instance.admission_rate_usd_per_hour), Decimal(instance.price_per_hour or 0))
    budget_admit(tenant=locked, usd_per_hour=rate, now=timezone.now())


@transaction.atomic
def instance_delete_request(
    *,
    instance_id: uuid.UUID,
    tenant: Tenant | None,
    actor: str,
    reason: str | None = None,
    message: str | None = None,
) -> Instance:
    """→ terminating, with a delete job. Idempotent: an instance already terminating or
    terminated is answered as it is (same job). `reason`/`message` as instance_action_request."""
    instance = _locked(instance_id, tenant)
    if instance.status in (InstanceStatus.TERMINATING, InstanceStatus.TERMINATED):
        return instance
    _supersede_job(instance, Action.DELETE)
    if instance.status == InstanceStatus.WAITING_FOR_CAPACITY and not needs_upstream_cleanup(
        instance
    ):
        # Nothing exists on Novita for it: terminated at once, no call.
        instance_transition_apply(
            transition=Transition(
                instance=instance,
                to_status=InstanceStatus.TERMINATED,
                reason=reason or "delete_requested",
                message=(message or "Delete requested.")
                + " It was waiting for capacity: nothing existed on Novita.",
                actor=actor,
                fields={"terminated_at": timezone.now(), "next_attempt_at": None},
            )
        )
        CAPACITY_WAITS.labels(outcome="deleted").inc()
        return instance
    job = _action_job(instance, Action.DELETE)
    instance_transition_apply(
        transition=Transition(
            instance=instance,
            to_status=InstanceStatus.TERMINATING,
            reason=reason or "delete_requested",
            message=message or "Delete requested.",
            actor=actor,
            fields={"current_job": job, "delete_requested_at": None},
        )
    )
    return instance


# --- heartbeats -------------------------------------------------------------------------------

# Where a caller's activity means something: on its way to ready, or ready.
HEARTBEAT_STATUSES: tuple[str, ...] = (
    InstanceStatus.PENDING,
    InstanceStatus.PROVISIONING,
    InstanceStatus.STARTING,
    InstanceStatus.HEALTH_CHECKING,
    InstanceStatus.READY,
    InstanceStatus.RESTARTING,
)


def _heartbeat_write(scope: QuerySet[Instance]) -> tuple[bool, Instance]:
    updated = scope.filter(status__in=HEARTBEAT_STATUSES).update(last_active_at=timezone.now())
    instance = scope.select_related("current_job", "tenant").first()
    if instance is None:
        raise NotFound("No such instance.", code="instance_not_found")
    return bool(updated), instance


def instance_heartbeat(*, instance_id: uuid.UUID, tenant: Tenant | None) -> Instance:
    """Records activity (`last_active_at` = now), which puts off an idle stop: one conditional
    UPDATE, no lock, no event (callers may send one every few seconds). 404 when the tenant has
    no such instance, 409 naming the status when it is not one of HEARTBEAT_STATUSES. Returns
    the instance as written, for its representation."""
    scope = Instance.objects.filter(pk=instance_id)
    if tenant is not None:
        scope = scope.filter(tenant=tenant)
    updated, instance = _heartbeat_write(scope)
    if not updated and instance.status in HEARTBEAT_STATUSES:
        # It moved into a status that takes heartbeats between the two statements: once more.
        updated, instance = _heartbeat_write(scope)
    if not updated:
        raise _invalid_state("heartbeat", instance, HEARTBEAT_STATUSES)
    return instance


# --- settings that change while it lives ----------------------------------------------------

UNCHANGED: Any = object()  # a field of InstanceChanges not given


@dataclass(frozen=True)
class InstanceChanges:
    """What a PATCH changes: None for on_preempt, UNCHANGED for the others, means leave it."""

    on_preempt: str | None = None
    on_idle: str | None = None
    idle_timeout_seconds: Any = UNCHANGED  # int seconds, None (never), or UNCHANGED
    webhook_url: Any = UNCHANGED  # a URL, None (no webhooks), or UNCHANGED
    capacity_wait_seconds: int | None = None
    max_spend_usd: Any = UNCHANGED  # USD, None (no cap), or UNCHANGED
    on_max_spend: str | None = None
    expires_at: Any = UNCHANGED  # a time, None (never), or UNCHANGED
    on_expire: str | None = None


@transaction.atomic
def instance_settings_update(
    *, instance_id: uuid.UUID, tenant: Tenant | None, changes: InstanceChanges, actor: str
) -> Instance:
    """Changes on_preempt, idle_timeout and webhook_url of a live instance, with an event naming
    what changed (from == to status). 409 once it is terminating or terminated; 400 for
    on_preempt other than notify on an on-demand instance."""
    instance = _locked(instance_id, tenant)
    if instance.status in (InstanceStatus.TERMINATING, InstanceStatus.TERMINATED):
        raise _invalid_state(
            "change", instance, tuple(s for s in InstanceStatus.values if s not in (
                InstanceStatus.TERMINATING, InstanceStatus.TERMINATED))
        )  # fmt: skip
    fields: dict[str, Any] = {}
    if changes.on_preempt is not None:
        if changes.on_preempt != OnPreempt.NOTIFY and instance.billing_mode != "spot":
            raise ValidationFailed(
                "Only a spot instance is reclaimed.",
                details={"on_preempt": ["This instance is not billed as spot."]},
            )
        fields["on_preempt"] = changes.on_preempt
    if changes.on_idle is not None:
        fields["on_idle"] = changes.on_idle
    if changes.idle_timeout_seconds is not UNCHANGED:
        seconds = changes.idle_timeout_seconds
        fields["idle_timeout"] = timedelta(seconds=seconds) if seconds is not None else None
    if changes.webhook_url is not UNCHANGED:
        fields["webhook_url"] = changes.webhook_url or ""
    if changes.capacity_wait_seconds is not None:
        # Counted from when it began waiting: a longer one extends the wait of a waiting instance.
        fields["capacity_wait_seconds"] = changes.capacity_wait_seconds
    fields.update(_money_changes(instance, changes))
    changed = sorted(
        k for k, v in fields.items() if getattr(instance, k) != v and k in _SHOWN_SETTINGS
    )
    if changed:
        Instance.objects.filter(pk=instance.pk).update(**fields, updated_at=timezone.now())
        for name, value in fields.items():
            setattr(instance, name, value)
        instance_event_record(
            instance=instance,
            reason="settings_changed",
            message=f"Changed: {', '.join(changed)}.",
            actor=actor,
            data={"changed": changed},
        )
    return instance


_SHOWN_SETTINGS = frozenset(
    {"on_preempt", "on_idle", "idle_timeout", "webhook_url", "max_spend_usd", "on_max_spend",
     "expires_at", "on_expire", "capacity_wait_seconds"}
)  # fmt: skip


def _money_changes(instance: Instance, changes: InstanceChanges) -> dict[str, Any]:
    """A new cap or expiry re-arms it (its marker cleared); the sweep's due time follows."""
    from instances.money import money_due_at_of

    fields: dict[str, Any] = {}
    if changes.max_spend_usd is not UNCHANGED and changes.max_spend_usd != instance.max_spend_usd:
        fields["max_spend_usd"] = changes.max_spend_usd
        fields["spend_limit_reached_at"] = None
    if changes.on_max_spend is not None:
        fields["on_max_spend"] = changes.on_max_spend
    if changes.expires_at is not UNCHANGED and changes.expires_at != instance.expires_at:
        fields["expires_at"] = changes.expires_at
        fields["expiry_warned_at"] = fields["expired_at"] = None
    if changes.on_expire is not None:
        fields["on_expire"] = changes.on_expire
    if not fields:
        return fields
    after = copy.copy(instance)
    for name, value in fields.items():
        setattr(after, name, value)
    fields["money_due_at"] = money_due_at_of(after)
    return fields


# --- retries by an operator -------------------------------------------------------------------


def _instance_of(job: Job) -> Instance:
    instance = _locked(job.subject_id, None)
    if instance.current_job_id != job.pk:
        raise Conflict(
            "This job is no longer the instance's current one; act on the instance instead.",
            code="job_superseded",
        )
    return instance


def _provision_afresh() -> dict[str, Any]:
    """The columns of an instance that go back to before its first create when it is provisioned
    again (an operator's retry, a spot recovery)."""
    return {
        "failure_reason": "",
        "failure_message": "",
        "novita_instance_id": "",
        "novita_product_id": "",
        "product_name": "",
        "region": "",
        "cluster_id": "",
        "price_per_hour": None,
        "offers_tried": [],
        "create_sent_at": None,
        "delete_requested_at": None,
        "released_at": None,
        "upstream_status": "",
        "upstream_seen_at": None,
        "endpoints": [],
        "provisioned_at": None,
        "ready_at": None,
        "waiting_since": None,
        "next_attempt_at": None,
        "capacity_attempts": 0,
        "capacity_checked_at": None,
    }


@transaction.atomic
def instance_reprovision(*, instance_id: uuid.UUID, message: str, actor: str = "system") -> str:
    """A reclaimed spot instance (preempted) → pending with a new provision job, under a new
    upstream name (`<name>-r<n>`): the old upstream instance keeps the old name, so no lookup by
    name can take it for the new one, and once it has no owner the orphan sweep deletes it if
    nothing else does. Returns the old upstream id (for the caller to delete)."""
    instance = _locked(instance_id, None)
    if instance.status != InstanceStatus.PREEMPTED:
        raise _invalid_state("reprovision", instance, (InstanceStatus.PREEMPTED,))
    old_id = instance.novita_instance_id
    recoveries = instance.recoveries + 1
    _supersede_job(instance, Action.PROVISION)
    job = job_create(
        kind=Action.PROVISION,
        task_name=TASK_PROVISION,
        subject_type=SUBJECT,
        subject_id=instance.pk,
        tenant=instance.tenant,
    )
    instance_transition_apply(
        transition=Transition(
            instance=instance,
            to_status=InstanceStatus.PENDING,
            reason=SPOT_RECOVERY,
            message=message,
            actor=actor,
            fields={
                **_provision_afresh(),
                "novita_name": f"{novita_name_for(instance.pk)}-r{recoveries}",
                "recoveries": recoveries,
                "current_job": job,
            },
            data={"how": "reprovision", "replaced": old_id or None, "recovery": recoveries},
        )
    )
    return old_id


def _retry_provision(job: Job, actor: str) -> None:
    instance = _instance_of(job)
    if instance.status in (InstanceStatus.PENDING, InstanceStatus.PROVISIONING):
        return
    if instance.status != InstanceStatus.FAILED:
        raise Conflict(
            f"Only a failed instance can be provisioned again; this one is {instance.status}.",
            code="invalid_instance_state",
            details={"status": instance.status},
        )
    if instance.released_at is None:
        raise Conflict(
            "Novita has not yet confirmed that the failed attempt's GPU is gone; retry shortly.",
            code="cleanup_pending",
        )
    instance_transition_apply(
        transition=Transition(
            instance=instance,
            to_status=InstanceStatus.PENDING,
            reason="retry",
            message="Provisioning retried by an operator.",
            actor=actor,
            fields=_provision_afresh(),
        )
    )


def _retry_action(job: Job, actor: str) -> None:
    instance = _instance_of(job)
    transit = TRANSIT_OF[job.kind]
    if instance.status == transit:
        return
    allowed = ACTIONS[job.kind][0] if job.kind in ACTIONS else ()
    if instance.status not in allowed:
        raise _invalid_state(job.kind, instance, allowed)
    instance_transition_apply(
        transition=Transition(
            instance=instance,
            to_status=transit,
            reason="retry",
            message=f"{job.kind.capitalize()} retried by an operator.",
            actor=actor,
        )
    )


def retry_hooks_register() -> None:
    job_retry_hook_register(task_name=TASK_PROVISION, hook=_retry_provision)
    job_retry_hook_register(task_name=TASK_ACTION, hook=_retry_action)


def instance_retry(*, instance_id: uuid.UUID, actor: str = "operator") -> Instance:
    """An operator retries the instance's current job (a failed provisioning or action)."""
    from jobs.services import job_retry

    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is None:
        raise NotFound("No such instance.", code="instance_not_found")
    if instance.current_job_id is None:
        raise Conflict("The instance has no job to retry.", code="job_not_retryable")
    job_retry(job_id=instance.current_job_id, actor=actor)
    return Instance.objects.select_related("current_job", "tenant").get(pk=instance_id)


def actor_of(principal: Any) -> str:
    """ "tenant:<name>" for an API key, "staff:<username>" for a staff session."""
    tenant = getattr(principal, "tenant", None)
    if tenant is not None:
        return f"tenant:{tenant.name}"
    return f"staff:{getattr(principal, 'username', '?')}"
