"""The cost ledger: what each instance costs, by phase, at the prices it was created at.

Novita bills (docs/novita-api.md §7): GPU compute at the product's unit price (the spot price
for spot) x cards x time, to the second, while the instance is in a billed status (from
`pulling` until it is `exited` or removed); a stopped (`exited`) instance's local disk at
`exitedLocalStoragePrice` per GB per day until it is started again or deleted.

`Account`: one per instance, the prices captured when its create was sent (integers of 1/100000
USD, as the catalog has them) and the running state of the ledger (its phase, since when, what
the closed segments add up to). `Segment`: one stretch of one phase at one price, the rows that a
report cuts by instance, tenant, product, region and day. Billing knows nothing of instances:
an instance is a plain id here, and instances tells billing what it observed.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class Phase(models.TextChoices):
    NONE = "", "not billed"
    COMPUTE = "compute", "compute"
    DISK = "disk", "disk while stopped"


class Account(models.Model):
    instance_id = models.UUIDField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    novita_instance_id = models.CharField(max_length=64, blank=True)
    product_name = models.CharField(max_length=255, blank=True)
    region = models.CharField(max_length=64, blank=True)
    billing_mode = models.CharField(max_length=16, blank=True)
    # Captured when the create was sent: 1/100000 USD per card-hour and per GB-day.
    compute_price = models.PositiveBigIntegerField(default=0)
    gpu_num = models.PositiveSmallIntegerField(default=1)
    disk_price = models.PositiveBigIntegerField(default=0)
    disk_gb = models.PositiveIntegerField(default=0)
    captured_at = models.DateTimeField()
    # The ledger's state: the open phase and since when; what closed segments add up to (USD).
    phase = models.CharField(max_length=8, choices=Phase.choices, blank=True, default="")
    phase_since = models.DateTimeField(null=True, blank=True)
    accrued_usd = models.DecimalField(max_digits=24, decimal_places=12, default=0)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "phase"], name="billing_account_tenant_phase")]

    def __str__(self) -> str:
        return f"{self.instance_id} ({self.phase or 'not billed'})"


class Segment(models.Model):
    """[started_at, ended_at) of one phase at one unit price (ended_at null: still open)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="segments")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    instance_id = models.UUIDField()
    novita_instance_id = models.CharField(max_length=64, blank=True, db_index=True)
    phase = models.CharField(max_length=8, choices=Phase.choices)
    product_name = models.CharField(max_length=255, blank=True)
    region = models.CharField(max_length=64, blank=True)
    billing_mode = models.CharField(max_length=16, blank=True)
    unit_price = models.PositiveBigIntegerField(help_text="1/100000 USD per card-hour or GB-day")
    units = models.PositiveIntegerField(help_text="cards or GB")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            models.Index(fields=["tenant", "started_at"], name="billing_segment_tenant_start"),
            models.Index(fields=["started_at"], name="billing_segment_start"),
            models.Index(fields=["instance_id", "started_at"], name="billing_segment_instance"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(ended_at__isnull=True),
                name="billing_one_open_segment",
            ),
            models.CheckConstraint(condition=~Q(phase=""), name="billing_segment_phase_billed"),
        ]

    def __str__(self) -> str:
        return f"{self.phase} {self.instance_id} from {self.started_at}"


class OnExhausted(models.TextChoices):
    NOTIFY = "notify", "notify only"
    STOP = "stop", "stop the tenant's billing instances"
    DELETE = "delete", "delete the tenant's billing instances"


class Budget(models.Model):
    """A tenant's monthly budget (UTC months). No row, or no limit: no budget."""

    tenant = models.OneToOneField(
        "tenants.Tenant", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    monthly_limit_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    alert_thresholds = models.JSONField(default=list, blank=True, help_text="percent, increasing")
    on_exhausted = models.CharField(
        max_length=8, choices=OnExhausted.choices, default=OnExhausted.NOTIFY
    )
    webhook_url = models.URLField(max_length=2048, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.monthly_limit_usd}"


class BudgetAlert(models.Model):
    """A threshold reached in a month: its webhook is sent once (the row is the claim)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    month = models.CharField(max_length=7, help_text="YYYY-MM, UTC")
    threshold = models.PositiveSmallIntegerField()
    spent_usd = models.DecimalField(max_digits=18, decimal_places=6)
    limit_usd = models.DecimalField(max_digits=12, decimal_places=2)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "threshold"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "month", "threshold"], name="billing_alert_once_a_month"
            )
        ]

    def __str__(self) -> str:
        return f"{self.month} {self.threshold}%"


class Drift(models.Model):
    """The ledger and Novita's bill disagree for an instance over a window (reconciliation)."""

    instance_id = models.UUIDField(db_index=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    novita_instance_id = models.CharField(max_length=64)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    ledger_usd = models.DecimalField(max_digits=18, decimal_places=6)
    billed_usd = models.DecimalField(max_digits=18, decimal_places=6)
    found_at = models.DateTimeField()

    class Meta:
        ordering = ["-found_at"]

    def __str__(self) -> str:
        return f"{self.novita_instance_id}: ledger {self.ledger_usd} vs billed {self.billed_usd}"
