"""GPU instances, their history, and the Idempotency-Key records of the create API.

Lifecycle (docs/architecture.md §4):

    pending → provisioning → starting → health_checking → ready
    provisioning ⇄ waiting_for_capacity → failed (no_capacity: the wait is over) | terminated
    ready ⇄ stopping → stopped → starting → health_checking → ready
    ready → restarting → health_checking → ready
    any → terminating → terminated        (only once Novita confirms)
    failed (with a reason; its upstream GPU is deleted), preempted (a reclaimed spot instance)

Every change of `status` is a conditional UPDATE (`WHERE status = <the status read>`) and writes
an InstanceEvent in the same transaction.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from novitai.crypto import EncryptedJSONField


class InstanceStatus(models.TextChoices):
    PENDING = "pending", "pending"
    PROVISIONING = "provisioning", "provisioning"
    # No acceptable offer can be had; tried again until capacity_wait_seconds have passed.
    WAITING_FOR_CAPACITY = "waiting_for_capacity", "waiting for capacity"
    STARTING = "starting", "starting"
    HEALTH_CHECKING = "health_checking", "health checking"
    READY = "ready", "ready"
    STOPPING = "stopping", "stopping"
    STOPPED = "stopped", "stopped"
    RESTARTING = "restarting", "restarting"
    TERMINATING = "terminating", "terminating"
    TERMINATED = "terminated", "terminated"
    FAILED = "failed", "failed"
    PREEMPTED = "preempted", "preempted"


class FailureReason(models.TextChoices):
    NO_CAPACITY = "no_capacity", "no capacity in any acceptable offer"
    IMAGE_PULL_FAILED = "image_pull_failed", "the image could not be pulled"
    STARTUP_TIMEOUT = "startup_timeout", "Novita did not start it in time"
    HEALTH_CHECK_TIMEOUT = "health_check_timeout", "the application did not answer in time"
    STOP_TIMEOUT = "stop_timeout", "Novita did not stop it in time"
    UPSTREAM_ERROR = "upstream_error", "Novita failed"
    UPSTREAM_REJECTED = "upstream_rejected", "Novita rejected the request"
    UPSTREAM_VANISHED = "upstream_vanished", "the instance disappeared from Novita"
    QUOTA_EXCEEDED = "quota_exceeded", "the Novita account's quota or balance is exhausted"
    TEMPLATE_NOT_FOUND = "template_not_found", "the template no longer exists"


class BillingMode(models.TextChoices):
    ON_DEMAND = "on_demand", "on demand"
    SPOT = "spot", "spot"


class SpotFallback(models.TextChoices):
    """What a spot request does when no spot offer can be had: nothing more (wait or fail), or
    try on-demand offers (within max_price_per_hour) before waiting."""

    NONE = "", "none"
    ON_DEMAND = "on_demand", "on demand"


class OnIdle(models.TextChoices):
    """What an idle stop does: stop (the disk kept, and billed by Novita) or delete."""

    STOP = "stop", "stop it"
    DELETE = "delete", "delete it"


class OnPreempt(models.TextChoices):
    """What novitai does when Novita reclaims a spot instance (after the instance.preempted
    webhook): nothing more, start the same instance again (its disk kept), or delete it and
    provision a new one through the offer list (any acceptable region)."""

    NOTIFY = "notify", "notify only"
    RESTART = "restart", "start it again"
    REPROVISION = "reprovision", "provision a new one"


class OnMaxSpend(models.TextChoices):
    """What reaching max_spend_usd does."""

    STOP = "stop", "stop it"
    DELETE = "delete", "delete it"


class OnExpire(models.TextChoices):
    """What reaching expires_at does."""

    DELETE = "delete", "delete it"
    STOP = "stop", "stop it"


class Instance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="instances")
    name = models.CharField(max_length=63)
    status = models.CharField(
        max_length=20, choices=InstanceStatus.choices, default=InstanceStatus.PENDING
    )
    failure_reason = models.CharField(max_length=32, choices=FailureReason.choices, blank=True)
    failure_message = models.TextField(blank=True)

    # What was asked for.
    template_id = models.CharField(max_length=64)
    product_names = models.JSONField(default=list, help_text="Acceptable products, in order.")
    gpu_num = models.PositiveSmallIntegerField(default=1)
    rootfs_size = models.PositiveIntegerField(help_text="GB")
    preferred_region = models.CharField(max_length=64, blank=True)
    billing_mode = models.CharField(
        max_length=16, choices=BillingMode.choices, default=BillingMode.ON_DEMAND
    )
    max_price_per_hour = models.DecimalField(max_digits=12, decimal_places=5, null=True, blank=True)
    # `billing_mode` is the mode obtained (or being tried); this one the mode asked for.
    billing_mode_requested = models.CharField(
        max_length=16, choices=BillingMode.choices, blank=True
    )
    spot_fallback = models.CharField(
        max_length=16, choices=SpotFallback.choices, blank=True, default=SpotFallback.NONE
    )
    # The caller's environment variables ([{key, value}]): may hold tokens. Encrypted at rest
    # (ENCRYPTION_KEYS), emptied once the instance is terminated; never logged, never in the
    # representation, the admin or webhook bodies; sent to Novita only.
    envs = EncryptedJSONField(default=list, blank=True)
    health_check = models.JSONField(default=dict, blank=True)
    # Network volumes mounted: [{"volume_id", "name", "mount_path", "novita_storage_id",
    # "cluster_id"}]; the instance is placed in their cluster.
    volumes = models.JSONField(default=list, blank=True)
    webhook_url = models.URLField(max_length=2048, blank=True)
    on_preempt = models.CharField(
        max_length=16, choices=OnPreempt.choices, default=OnPreempt.NOTIFY
    )
    # A ready instance with no activity for this long is stopped (None: never). Activity is a
    # heartbeat from the caller (POST …/heartbeat/), or becoming ready.
    idle_timeout = models.DurationField(null=True, blank=True)
    on_idle = models.CharField(max_length=8, choices=OnIdle.choices, default=OnIdle.STOP)
    last_active_at = models.DateTimeField(null=True, blank=True)
    # idle_policy: idle once every GPU stays below this percent for this long (None: no GPU
    # rule). With an idle_timeout too, both must say idle (instances/gpu_idle.py).
    idle_gpu_below = models.FloatField(null=True, blank=True)
    idle_gpu_for = models.DurationField(null=True, blank=True)
    # Novita's GPU metrics as last read: the newest point (the highest card), its time, and
    # since when every point was below idle_gpu_below (None: a busy point last, or no data).
    gpu_utilization = models.FloatField(null=True, blank=True)
    gpu_utilization_at = models.DateTimeField(null=True, blank=True)
    gpu_idle_since = models.DateTimeField(null=True, blank=True)
    gpu_metrics_read_at = models.DateTimeField(null=True, blank=True)
    # Waiting for capacity (instances/capacity.py): how long a create may wait for an offer
    # (0: fail at once), since when it waits, when it is tried again at the latest (the capacity
    # sweep), how many attempts it made, and the catalog sync its last attempt saw.
    capacity_wait_seconds = models.PositiveIntegerField(default=0)
    waiting_since = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    capacity_attempts = models.PositiveIntegerField(default=0)
    capacity_checked_at = models.DateTimeField(null=True, blank=True)
    # The reclaim time of the last reclaim notice Novita gave (spotStatus notified): the
    # instance.preemption_notice webhook went for it.
    spot_reclaim_at = models.DateTimeField(null=True, blank=True)
    # Spot reclaims recovered automatically so far (capped by SPOT_RECOVERY_MAX_ATTEMPTS).
    recoveries = models.PositiveSmallIntegerField(default=0)

    # Upstream. The name is fixed before the first create call: it is how an unknown outcome
    # is resolved and how orphans are recognised.
    novita_name = models.CharField(max_length=128, unique=True, editable=False)
    novita_instance_id = models.CharField(max_length=64, blank=True, db_index=True)
    novita_product_id = models.CharField(max_length=255, blank=True)
    product_name = models.CharField(max_length=255, blank=True)
    region = models.CharField(max_length=64, blank=True)
    cluster_id = models.CharField(max_length=64, blank=True)
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=5, null=True, blank=True)
    offers_tried = models.JSONField(default=list, blank=True)
    # Set just before a create call, cleared once its outcome is known: while set, an upstream
    # instance may exist under `novita_name` that we do not know the id of.
    create_sent_at = models.DateTimeField(null=True, blank=True)
    upstream_status = models.CharField(max_length=32, blank=True)
    upstream_seen_at = models.DateTimeField(null=True, blank=True)
    delete_requested_at = models.DateTimeField(null=True, blank=True)
    # A failed instance: when Novita confirmed nothing is left of it.
    released_at = models.DateTimeField(null=True, blank=True)
    endpoints = models.JSONField(default=list, blank=True)
    # Read from Novita's get-instance once per run (connectComponentSSH, connectComponentLog):
    # {"host", "port", "user", "command"}, never the password (GET …/ssh/ asks Novita for it).
    ssh = models.JSONField(default=dict, blank=True)
    logs_url = models.CharField(max_length=2048, blank=True)
    phase_deadline_at = models.DateTimeField(null=True, blank=True)
    current_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # The cost ledger's state as billing last reported it (billing/: the truth): what closed
    # segments add up to, and the open phase's rate since when. The representation's cost_usd
    # is accrued + rate x time since; kept here so that no representation queries billing.
    cost_accrued_usd = models.DecimalField(max_digits=24, decimal_places=12, default=0)
    cost_rate_usd_per_hour = models.DecimalField(max_digits=24, decimal_places=12, default=0)
    cost_since = models.DateTimeField(null=True, blank=True)
    # Caps and lifetimes (instances/money.py): a spend cap and an expiry, each acted on once by
    # the money sweep; `money_due_at` is when the sweep must next look at the row (the expiry
    # warning, the expiry, or when cost reaches the cap at the current rate), null: never.
    max_spend_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    on_max_spend = models.CharField(
        max_length=8, choices=OnMaxSpend.choices, default=OnMaxSpend.STOP
    )
    spend_limit_reached_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    on_expire = models.CharField(max_length=8, choices=OnExpire.choices, default=OnExpire.DELETE)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    money_due_at = models.DateTimeField(null=True, blank=True)
    # What a budget's admission rule counts for it while it is on its way to bill (USD an hour:
    # the dearest offer its request could get), instances/budget.py.
    admission_rate_usd_per_hour = models.DecimalField(max_digits=24, decimal_places=12, default=0)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    provisioned_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status"], name="instance_status_idx"),
            # The list's order exactly (newest first, id breaking ties): a page is an index scan.
            models.Index(
                fields=["tenant", "-created_at", "-id"], name="instance_tenant_newest_idx"
            ),
            models.Index(fields=["-created_at", "-id"], name="instance_newest_idx"),
            models.Index(
                fields=["money_due_at"],
                condition=Q(money_due_at__isnull=False),
                name="instance_money_due_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=~Q(status="terminated"),
                name="instance_name_unique_live",
            ),
            models.CheckConstraint(
                condition=Q(status__in=InstanceStatus.values), name="instance_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(gpu_num__gte=1, gpu_num__lte=8), name="instance_gpu_num_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class InstanceEvent(models.Model):
    """One transition (or a notable step inside one status, where from == to)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    reason = models.CharField(max_length=64)
    message = models.TextField(blank=True)
    actor = models.CharField(max_length=128, help_text="system, tenant:<name>, staff:<user>")
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["instance", "at"], name="instance_event_at_idx")]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status} ({self.reason})"


class IdempotencyStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "in progress"
    DONE = "done", "done"


class IdempotencyKey(models.Model):
    """Stripe's semantics, per tenant: the first response is stored byte for byte."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and body")
    status = models.CharField(
        max_length=16, choices=IdempotencyStatus.choices, default=IdempotencyStatus.IN_PROGRESS
    )
    lock_token = models.CharField(max_length=32, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    locked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_key_per_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
