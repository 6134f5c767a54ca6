"""The provision task: create the instance on Novita, cheapest acceptable offer first.

    claim the job → pending → provisioning
    → a create of unknown outcome is looked up by its exact name before anything else
    → template (cached) → offers (catalog) → for each offer, at most PROVISION_MAX_OFFERS:
        write intent (create_sent_at, the offer) with a conditional UPDATE
        → create_instance → capacity error: remember it, next offer
                          → unknown outcome: look up by name (found: adopt; else wait for the
                            grace period, look again, and only then create again)
                          → an id: recorded → starting; the job waits for the monitoring pass
    → no offer left: with capacity_wait_seconds, → waiting_for_capacity (instances/capacity.py
      tries it again, every acceptable offer each time, until the wait is over)
    → failed (no_capacity, quota_exceeded, upstream_rejected, upstream_error, …) otherwise.

No transaction is open across a Novita call; every write after a call is conditional, so a copy
of this task running late (its lease expired) changes nothing that matters. Never two GPUs: the
name is fixed before the first create, a create is repeated only once a lookup by name found
nothing for CREATE_UNKNOWN_GRACE_SECONDS, and a second instance found under the name is deleted.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.selectors import (
    Offer,
    OfferSelection,
    RejectReason,
    catalog_last_sync_at,
    offers_select,
)
from catalog.services import (
    TemplateConfig,
    catalog_ensure_fresh,
    offer_capacity_failed,
    template_get,
)
from instances.ledger import prices_capture
from instances.lifecycle import Transition, instance_event_record, instance_transition_apply
from instances.metrics import DUPLICATES_DELETED
from instances.models import BillingMode, FailureReason, Instance, InstanceStatus, SpotFallback
from jobs.selectors import Job
from jobs.services import job_cancel, job_claim, job_defer, job_retry_later, job_wait
from novitai.errors import ServiceError, UpstreamUnavailable
from novitai.logging import log_context
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.types import (
    BillingMethod,
    CreateInstanceRequest,
    EnvVar,
    NetworkStorageMount,
    NovitaInstanceStatus,
)

logger = logging.getLogger(__name__)

# Statuses in which the provision job has nothing left to do but wait for the monitor.
HANDED_OVER = (InstanceStatus.STARTING, InstanceStatus.HEALTH_CHECKING, InstanceStatus.READY)
# Why an offer is left out that may change by itself: an instance may wait for it.
TRANSIENT_REJECTIONS = frozenset(
    {
        RejectReason.UNAVAILABLE,
        RejectReason.NOT_ENOUGH_GPUS,
        RejectReason.CAPACITY_RECENTLY_FAILED,
    }
)


class Stop(Exception):
    """Provisioning ends for this run (the job's outcome is already written)."""


def load_instance(instance_id: Any) -> Instance | None:
    return Instance.objects.select_related("tenant", "current_job").filter(pk=instance_id).first()


def retry_or_fail(
    *, instance: Instance, job: Job, error: Exception, what: str, on_exhausted: Any = None
) -> None:
    """A retryable error: retry later with backoff, or fail once attempts are used up."""
    message = f"{what}: {error}"
    if job.attempts >= job.max_attempts:
        if on_exhausted is not None:
            on_exhausted(message)
            return
        instance_transition_apply(
            transition=Transition.to_failed(
                instance=instance,
                reason=FailureReason.UPSTREAM_ERROR,
                message=f"Novita kept failing ({job.attempts} attempts). Last error: {message}",
            )
        )
        return
    job_retry_later(job=job, error=message, retry_after=getattr(error, "retry_after", None))


def instance_job_claim(*, job_id: str) -> tuple[Job, Instance] | None:
    """Claims the job and reads its instance; a job that is no longer the instance's current
    one (the instance was deleted, or moved on) is cancelled instead."""
    job = job_claim(job_id=job_id)
    if job is None:
        return None
    instance = load_instance(job.subject_id)
    if instance is None or instance.current_job_id != job.pk:
        job_cancel(job=job, reason="superseded: the instance moved on")
        return None
    instance.current_job = job
    return job, instance


def instance_provision_run(*, job_id: str, capacity_retry: bool = False) -> None:
    """Runs the provision job. `capacity_retry`: an attempt of an instance waiting for capacity
    (instances/capacity.py): every acceptable offer, those remembered as short of capacity too."""
    claimed = instance_job_claim(job_id=job_id)
    if claimed is None:
        return
    job, instance = claimed
    with log_context(job_id=str(job.pk), instance_id=str(instance.pk)):
        if job.exhausted:
            instance_transition_apply(
                transition=Transition.to_failed(
                    instance=instance,
                    reason=FailureReason.UPSTREAM_ERROR,
                    message=f"Provisioning gave up after {job.max_attempts} attempts.",
                )
            )
            return
        if instance.status == InstanceStatus.PENDING:
            instance_transition_apply(
                transition=Transition(
                    instance=instance,
                    to_status=InstanceStatus.PROVISIONING,
                    reason="provisioning_started",
                    message="Choosing an offer and creating the instance on Novita.",
                )
            )
            instance = load_instance(job.subject_id) or instance
            instance.current_job = job
        if instance.status in HANDED_OVER:
            job_wait(job=job)
            return
        if instance.status != InstanceStatus.PROVISIONING:
            job_cancel(job=job, reason=f"the instance is {instance.status}")
            return
        with contextlib.suppress(Stop):
            Provisioner(instance, job, get_client(), capacity_retry=capacity_retry).run()


class Provisioner:
    def __init__(
        self, instance: Instance, job: Job, client: NovitaClient, *, capacity_retry: bool = False
    ) -> None:
        self.instance = instance
        self.job = job
        self.client = client
        self.capacity_retry = capacity_retry
        self.fallen_back = False
        self.spot_transient = False

    # --- the steps ----------------------------------------------------------------------------

    def run(self) -> None:  # noqa: C901 - the provisioning steps, each its own outcome
        if self.instance.novita_instance_id:
            self.record_created(self.instance.novita_instance_id)
        if self.instance.create_sent_at is not None:
            self.resolve_unknown()
        template = self.template()
        while True:
            offer = self.next_offer(template)
            if not self.write_intent(offer):
                self.moved_on()
            try:
                novita_id = self.client.create_instance(self.create_request(template, offer))
            except novita.CapacityUnavailable as exc:
                self.capacity_failed(offer, exc)
                continue
            except novita.UnknownOutcome as exc:
                instance_event_record(
                    instance=self.instance,
                    reason="create_outcome_unknown",
                    message=f"The create's answer was lost ({exc.message}); "
                    "looking the instance up by name.",
                    data=offer_data(offer),
                )
                self.resolve_unknown()
                continue  # nothing found after the grace period: create again
            except (novita.RateLimited, novita.Unavailable) as exc:
                self.clear_intent()
                self.retry_or_fail(exc, "creating the instance")
            except novita.QuotaExceeded as exc:
                self.clear_intent()
                self.fail(FailureReason.QUOTA_EXCEEDED, f"Novita refused: {exc.message}")
            except (novita.RejectedInput, novita.NotFound, novita.InvalidStateChange) as exc:
                self.clear_intent()
                self.fail(FailureReason.UPSTREAM_REJECTED, f"Novita refused: {exc.message}")
            except novita.NovitaError as exc:  # AuthFailed and anything else not retryable
                self.clear_intent()
                self.fail(FailureReason.UPSTREAM_ERROR, f"Novita failed: {exc.message}")
            self.record_created(novita_id, offer)

    def template(self) -> TemplateConfig:
        try:
            return template_get(template_id=self.instance.template_id)
        except UpstreamUnavailable as exc:
            self.retry_or_fail(exc, "fetching the template")
        except ServiceError as exc:  # TemplateNotFound
            self.fail(FailureReason.TEMPLATE_NOT_FOUND, exc.message)

    def next_offer(self, template: TemplateConfig) -> Offer:
        """The best offer not tried yet in the billing mode being tried; none left: fall back
        from spot to on demand (spot_fallback), then wait for capacity or fail."""
        instance = self.instance
        mode = instance.billing_mode
        tried = [t for t in instance.offers_tried if t.get("billing_mode", mode) == mode]
        rejected: tuple[Any, ...] = ()
        if len(tried) < settings.PROVISION_MAX_OFFERS:
            selection = self.select(mode, template)
            done = {(t["product_id"], t["cluster_id"]) for t in tried}
            for offer in selection.offers:
                if (offer.novita_product_id, offer.cluster_id) not in done:
                    return offer
            rejected = selection.rejected
        if tried:
            message = f"No capacity in the {len(tried)} offer(s) tried: {describe_tried(tried)}."
        else:
            reasons = "; ".join(r.message for r in rejected) or "none matches"
            message = f"No offer is available: {reasons}"
        transient = bool(tried) or any(r.reason in TRANSIENT_REJECTIONS for r in rejected)
        if mode == BillingMode.SPOT and instance.spot_fallback == SpotFallback.ON_DEMAND:
            self.fall_back(message)
            self.spot_transient = transient  # spot capacity may come back: worth a wait
            return self.next_offer(template)
        transient = transient or self.spot_transient
        if len(instance.offers_tried) > len(tried):  # both modes were tried: name them all
            every = instance.offers_tried
            message = f"No capacity in the {len(every)} offer(s) tried: {describe_tried(every)}."
        self.no_capacity(message, transient=transient)

    def select(self, mode: str, template: TemplateConfig) -> OfferSelection:
        instance = self.instance
        try:
            catalog_ensure_fresh()
            return offers_select(
                product_names=instance.product_names,
                gpu_num=instance.gpu_num,
                region=instance.preferred_region or None,
                billing_mode=mode,
                max_price_per_hour=instance.max_price_per_hour,
                rootfs_size=instance.rootfs_size,
                min_cuda_version=template.min_cuda_version,
                cluster_id=volumes_cluster(instance),
                # Capacity is remembered per offer, not per billing mode: after a fall back
                # from spot, on-demand offers are tried though spot was short there.
                ignore_capacity_memory=self.capacity_retry or self.fallen_back,
            )
        except UpstreamUnavailable as exc:
            self.retry_or_fail(exc, "reading the catalog")
        except ServiceError as exc:
            self.fail(FailureReason.NO_CAPACITY, f"No offer can be chosen: {exc.message}")

    def fall_back(self, why: str) -> None:
        """spot → on demand (spot_fallback on_demand), with an event saying why."""
        updated = Instance.objects.filter(
            pk=self.instance.pk, status=InstanceStatus.PROVISIONING, billing_mode=BillingMode.SPOT
        ).update(billing_mode=BillingMode.ON_DEMAND, updated_at=timezone.now())
        if not updated:
            self.moved_on()
        self.instance.billing_mode = BillingMode.ON_DEMAND
        self.fallen_back = True
        bound = self.instance.max_price_per_hour
        within = f", within {bound} USD/h" if bound is not None else ""
        instance_event_record(
            instance=self.instance,
            reason="spot_fallback",
            message=f"{why} No spot offer can be had: trying on-demand offers (spot_fallback "
            f"on_demand{within}).",
            data={"billing_mode_requested": BillingMode.SPOT, "billing_mode": "on_demand"},
        )

    def create_request(self, template: TemplateConfig, offer: Offer) -> CreateInstanceRequest:
        instance = self.instance
        envs: dict[str, str] = {e.key: e.value for e in template.envs}
        envs.update({e["key"]: e["value"] for e in instance.envs})
        return CreateInstanceRequest(
            name=instance.novita_name,
            product_id=offer.novita_product_id,
            gpu_num=instance.gpu_num,
            rootfs_size=instance.rootfs_size,
            image_url=template.image,
            cluster_id=offer.cluster_id,
            billing_mode=BillingMethod.SPOT
            if instance.billing_mode == "spot"
            else BillingMethod.ON_DEMAND,
            ports=template.ports,
            envs=tuple(EnvVar(key=k, value=v) for k, v in envs.items()),
            image_auth_id=template.image_auth_id,
            command=template.start_command,
            entrypoint=template.entrypoint,
            min_cuda_version=template.min_cuda_version,
            network_storages=tuple(
                NetworkStorageMount(id=v["novita_storage_id"], mount_point=v["mount_path"])
                for v in instance.volumes
            ),
        )

    # --- writes -------------------------------------------------------------------------------

    def write_intent(self, offer: Offer) -> bool:
        """Before the call: the offer and create_sent_at, only while still provisioning with
        no create in flight. From here on an instance may exist under our name."""
        now = timezone.now()
        fields = {
            "create_sent_at": now,
            "novita_product_id": offer.novita_product_id,
            "product_name": offer.product_name,
            "region": offer.region_code,
            "cluster_id": offer.cluster_id,
            "price_per_hour": offer.price_per_hour,
            "updated_at": now,
        }
        updated = Instance.objects.filter(
            pk=self.instance.pk,
            status=InstanceStatus.PROVISIONING,
            create_sent_at__isnull=True,
            novita_instance_id="",
        ).update(**fields)
        if updated:
            for name, value in fields.items():
                setattr(self.instance, name, value)
            prices_capture(self.instance, offer, at=now)
        return bool(updated)

    def clear_intent(self, **extra: Any) -> None:
        """The create certainly did not happen: no instance can exist under our name now."""
        sent = self.instance.create_sent_at
        Instance.objects.filter(
            pk=self.instance.pk, create_sent_at=sent, novita_instance_id=""
        ).update(create_sent_at=None, updated_at=timezone.now(), **extra)
        self.instance.create_sent_at = None
        for name, value in extra.items():
            setattr(self.instance, name, value)

    def capacity_failed(self, offer: Offer, exc: novita.NovitaError) -> None:
        tried = [*self.instance.offers_tried, {**offer_data(offer), "outcome": "no_capacity"}]
        with transaction.atomic():
            self.clear_intent(offers_tried=tried)
            instance_event_record(
                instance=self.instance,
                reason="offer_no_capacity",
                message=f"No capacity for {offer.product_name} in {offer.region_code}: "
                f"{exc.message}. Trying the next offer.",
                data=offer_data(offer),
            )
        offer_capacity_failed(
            novita_product_id=offer.novita_product_id, cluster_id=offer.cluster_id
        )
        logger.info(
            "instance %s: no capacity for %s in %s",
            self.instance.pk,
            offer.novita_product_id,
            offer.cluster_id,
        )

    def record_created(self, novita_id: str, offer: Offer | None = None) -> NoReturn:
        """Records the upstream id (whatever our status is now: a delete must find it), and
        moves provisioning → starting. A different id recorded first is a duplicate: delete."""
        now = timezone.now()
        duplicate = False
        with transaction.atomic():
            recorded = Instance.objects.filter(pk=self.instance.pk, novita_instance_id="").update(
                novita_instance_id=novita_id,
                create_sent_at=None,
                provisioned_at=now,
                updated_at=now,
            )
            fresh = load_instance(self.instance.pk)
            if fresh is None:
                raise Stop
            fresh.current_job = self.job
            if not recorded and fresh.novita_instance_id != novita_id:
                duplicate = True
            elif fresh.status == InstanceStatus.PROVISIONING:
                instance_transition_apply(
                    transition=Transition(
                        instance=fresh,
                        to_status=InstanceStatus.STARTING,
                        reason="created",
                        message=f"Created on Novita as {novita_id}"
                        + (f" ({offer.product_name} in {offer.region_code})." if offer else "."),
                        data={
                            "novita_instance_id": novita_id,
                            **(offer_data(offer) if offer else {}),
                        },
                    )
                )
        self.instance = fresh
        if duplicate:
            self.delete_duplicate(novita_id)
        if fresh.status in HANDED_OVER:
            job_wait(job=self.job)
        raise Stop

    def delete_duplicate(self, novita_id: str) -> None:
        logger.warning(
            "instance %s: second upstream instance %s under %s; deleting it",
            self.instance.pk,
            novita_id,
            self.instance.novita_name,
        )
        try:
            self.client.delete_instance(novita_id)
        except novita.NotFound:
            pass
        except novita.NovitaError:
            # The monitoring pass deletes any other instance under a live row's name.
            logger.warning("could not delete duplicate %s yet", novita_id, exc_info=True)
            return
        DUPLICATES_DELETED.inc()
        instance_event_record(
            instance=self.instance,
            reason="duplicate_deleted",
            message=f"A second upstream instance ({novita_id}) was found and deleted.",
            data={"novita_instance_id": novita_id},
        )

    def resolve_unknown(self) -> None:
        """A create may have happened: look for it by name. Found: adopt it (and delete any
        other). Not found: wait until CREATE_UNKNOWN_GRACE_SECONDS after the create was sent,
        look again, and only then return so that the caller creates again."""
        sent = self.instance.create_sent_at
        assert sent is not None
        try:
            found = self.client.find_instances_by_name(self.instance.novita_name)
        except (novita.RateLimited, novita.Unavailable) as exc:
            self.retry_or_fail(exc, "looking the instance up by name")
        except novita.NovitaError as exc:
            self.fail(FailureReason.UPSTREAM_ERROR, f"Looking the instance up failed: {exc}")
        alive = [i for i in found if i.status not in NovitaInstanceStatus.REMOVING_STATES]
        if alive:
            keep, extra = alive[0], alive[1:]
            for other in extra:
                self.delete_duplicate(other.id)
            instance_event_record(
                instance=self.instance,
                reason="create_found_by_name",
                message=f"The create had happened: adopted {keep.id}.",
                data={"novita_instance_id": keep.id, "found": len(alive)},
            )
            self.record_created(keep.id)
        grace_end = sent + timedelta(seconds=settings.CREATE_UNKNOWN_GRACE_SECONDS)
        if timezone.now() < grace_end:
            job_defer(
                job=self.job,
                until=grace_end,
                reason="create outcome unknown: looking the instance up by name again "
                "after the grace period",
            )
            raise Stop
        with transaction.atomic():
            self.clear_intent()
            instance_event_record(
                instance=self.instance,
                reason="create_not_found",
                message=f"No instance named {self.instance.novita_name} appeared within "
                f"{settings.CREATE_UNKNOWN_GRACE_SECONDS}s: the create did not happen.",
            )

    # --- outcomes -----------------------------------------------------------------------------

    def moved_on(self) -> NoReturn:
        """The instance left `provisioning` under us: adopted by the monitoring pass (the job
        waits for it), or deleted (the delete's job owns it now)."""
        fresh = load_instance(self.instance.pk)
        if fresh is not None and fresh.status in HANDED_OVER:
            job_wait(job=self.job)
        raise Stop

    def no_capacity(self, message: str, *, transient: bool) -> NoReturn:
        """No offer left: wait for capacity when the instance may (capacity_wait_seconds, the
        wait not over, and what is missing may come back), else fail no_capacity."""
        instance = self.instance
        if transient and instance.capacity_wait_seconds > 0:
            now = timezone.now()
            since = instance.waiting_since or now
            if now < capacity_deadline(instance, since):
                self.wait_for_capacity(message, since, now)
            message += f" {waited_text(instance, now)}"
        self.fail(FailureReason.NO_CAPACITY, message)

    def wait_for_capacity(self, message: str, since: datetime, now: datetime) -> NoReturn:
        """provisioning → waiting_for_capacity (its webhook the first time only); the job waits
        for the capacity sweep, which tries again (instances/capacity.py)."""
        fresh = load_instance(self.instance.pk)
        if fresh is None or fresh.status != InstanceStatus.PROVISIONING:
            self.moved_on()
        fresh.current_job = self.job
        deadline = capacity_deadline(fresh, since)
        attempts = fresh.capacity_attempts + 1
        next_at = min(now + timedelta(seconds=capacity_backoff_seconds(attempts)), deadline)
        with transaction.atomic():
            waiting = instance_transition_apply(
                transition=Transition(
                    instance=fresh,
                    to_status=InstanceStatus.WAITING_FOR_CAPACITY,
                    reason="waiting_for_capacity",
                    message=f"{message} Waiting for capacity until {iso(deadline)} (attempt "
                    f"{attempts}): tried again when the catalog shows an acceptable offer, at "
                    f"the latest at {iso(next_at)}.",
                    fields={
                        "waiting_since": since,
                        "next_attempt_at": next_at,
                        "capacity_attempts": attempts,
                        "capacity_checked_at": catalog_last_sync_at(),
                        "create_sent_at": None,
                    },
                    data={
                        "attempt": attempts,
                        "wait_until": iso(deadline),
                        "next_attempt_at": iso(next_at),
                        "offers_tried": fresh.offers_tried,
                    },
                    notify=fresh.waiting_since is None,
                )
            )
            if waiting:
                job_wait(job=self.job)
        self.instance = fresh
        raise Stop

    def fail(self, reason: FailureReason, message: str) -> NoReturn:
        fresh = load_instance(self.instance.pk)
        if fresh is not None and fresh.status == InstanceStatus.PROVISIONING:
            fresh.current_job = self.job
            instance_transition_apply(
                transition=Transition.to_failed(instance=fresh, reason=reason, message=message)
            )
        else:
            job_cancel(job=self.job, reason=message)
        raise Stop

    def retry_or_fail(self, error: Exception, what: str) -> NoReturn:
        fresh = load_instance(self.instance.pk) or self.instance
        fresh.current_job = self.job
        retry_or_fail(instance=fresh, job=self.job, error=error, what=what)
        raise Stop


def volumes_cluster(instance: Instance) -> str | None:
    """The cluster of the instance's volumes (its offers are that cluster's); None: any."""
    return str(instance.volumes[0]["cluster_id"]) if instance.volumes else None


def offer_data(offer: Offer) -> dict[str, Any]:
    return {
        "product_id": offer.novita_product_id,
        "product_name": offer.product_name,
        "region": offer.region_code,
        "cluster_id": offer.cluster_id,
        "price_per_hour": str(offer.price_per_hour),
        "billing_mode": offer.billing_mode,
    }


def capacity_deadline(instance: Instance, since: datetime) -> datetime:
    """When an instance that waits for capacity since `since` stops waiting."""
    return since + timedelta(seconds=instance.capacity_wait_seconds)


def capacity_backoff_seconds(attempts: int) -> float:
    """The longest pause after the nth attempt: CAPACITY_RETRY_BASE_SECONDS, doubling, capped at
    CAPACITY_RETRY_MAX_SECONDS (no jitter: waiting instances of one request keep their order)."""
    base = float(settings.CAPACITY_RETRY_BASE_SECONDS)
    return min(base * 2 ** max(attempts - 1, 0), float(settings.CAPACITY_RETRY_MAX_SECONDS))


def waited_text(instance: Instance, now: datetime) -> str:
    since = instance.waiting_since or now
    seconds = round((now - since).total_seconds())
    return (
        f"Waited {seconds}s for capacity (of {instance.capacity_wait_seconds}s allowed, "
        f"{instance.capacity_attempts} attempt(s))."
    )


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def describe_tried(tried: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{t['product_name']} in {t['region']}"
        + (" (spot)" if t.get("billing_mode") == BillingMode.SPOT else "")
        for t in tried
    )


def grace_over(sent: datetime | None, now: datetime) -> bool:
    """A create sent at `sent` has surely landed in listings (or never happened) by now."""
    return sent is None or now - sent >= timedelta(seconds=settings.CREATE_UNKNOWN_GRACE_SECONDS)
