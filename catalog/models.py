"""The catalog: Novita's regions, GPU products per region, and the templates novitai has used.

Regions and products are a copy of Novita's answer, refreshed by `catalog_sync` (upserts only:
a product Novita no longer lists is marked unavailable, never deleted). Templates are fetched
on first use and refreshed after CATALOG_TEMPLATE_TTL_SECONDS. Prices are Novita's integers in
1/100000 USD per GPU-hour, stored exactly; the API shows them as decimal USD strings.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from novitai.crypto import EncryptedJSONField

# Inventory states as Novita sends them; "" when Novita did not say.
INVENTORY_STATES = ("high", "normal", "low", "none", "")


class BillingMode(models.TextChoices):
    """novitai's billing modes (what a caller asks for); Novita spells them onDemand / spot."""

    ON_DEMAND = "on_demand", "on demand"
    SPOT = "spot", "spot"


class Region(models.Model):
    """A Novita cluster."""

    cluster_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, help_text='Novita\'s display name, "EU-NL-01 (…)".')
    code = models.CharField(
        max_length=64, unique=True, help_text='From the display name: "EU-NL-01".'
    )
    gpu_types = models.JSONField(default=list, blank=True)
    supports_network_storage = models.BooleanField(default=False)
    supports_instance_network = models.BooleanField(default=False)
    # False once Novita stops listing the cluster (its products are then unavailable too).
    listed = models.BooleanField(default=True)
    fetched_at = models.DateTimeField(help_text="When these values were fetched from Novita.")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Product(models.Model):
    """A Novita GPU product in one region: one row per (Novita product id, region)."""

    novita_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, db_index=True)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="products")
    cpu_per_gpu = models.PositiveIntegerField(default=0)
    memory_per_gpu = models.PositiveIntegerField(default=0, help_text="GB")
    disk_per_gpu = models.PositiveIntegerField(default=0, help_text="GB")
    # 1/100000 USD per GPU-hour (35000 = $0.35/h); 0 = no price.
    price = models.PositiveBigIntegerField(default=0, help_text="On demand, 1/100000 USD/GPU/h.")
    spot_price = models.PositiveBigIntegerField(default=0, help_text="1/100000 USD/GPU/h.")
    # A stopped instance's local disk (exitedLocalStoragePrice): 1/100000 USD per GB per day.
    exited_local_storage_price = models.PositiveBigIntegerField(
        default=0, help_text="1/100000 USD/GB/day while stopped."
    )
    # [{"month": 1, "price": 21500000}, …], 1/100000 USD per GPU for that many months.
    monthly_prices = models.JSONField(default=list, blank=True)
    bills_on_demand = models.BooleanField(default=False)
    bills_spot = models.BooleanField(default=False)
    bills_monthly = models.BooleanField(default=False)
    available = models.BooleanField(default=False)
    inventory_state = models.CharField(max_length=16, blank=True)
    available_gpu_number = models.PositiveIntegerField(null=True, blank=True)
    min_rootfs = models.PositiveIntegerField(default=0, help_text="GB")
    max_rootfs = models.PositiveIntegerField(default=0, help_text="GB; 0 = no limit known")
    min_local_storage = models.PositiveIntegerField(default=0)
    max_local_storage = models.PositiveIntegerField(default=0)
    # The CUDA version the product's nodes have, when Novita says ("12.4"); "" otherwise.
    cuda_version = models.CharField(max_length=16, blank=True)
    fetched_at = models.DateTimeField(help_text="When these values were fetched from Novita.")
    # Set when a create failed for lack of capacity: the offer is skipped until then.
    capacity_failed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "region__code"]
        constraints = [
            models.UniqueConstraint(fields=["novita_id", "region"], name="product_per_region"),
            models.CheckConstraint(
                condition=Q(inventory_state__in=INVENTORY_STATES), name="product_inventory_state"
            ),
        ]
        indexes = [models.Index(fields=["available", "name"], name="product_available_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.novita_id})"

    @property
    def billing_methods(self) -> list[str]:
        """Novita's spelling, in Novita's order."""
        flags = (
            ("onDemand", self.bills_on_demand),
            ("monthly", self.bills_monthly),
            ("spot", self.bills_spot),
        )
        return [method for method, on in flags if on]

    def price_units(self, billing_mode: str) -> int:
        """Price per GPU-hour of that billing mode; 0 when the product is not sold that way."""
        if billing_mode == BillingMode.SPOT:
            return self.spot_price if self.bills_spot else 0
        return self.price if self.bills_on_demand else 0


class Template(models.Model):
    """A Novita template as novitai last fetched it. Only the registry auth's id is kept."""

    novita_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255, blank=True)
    image = models.CharField(max_length=500)
    image_auth_id = models.CharField(max_length=255, blank=True)
    start_command = models.TextField(blank=True)
    rootfs_size = models.PositiveIntegerField(default=0, help_text="GB")
    ports = models.JSONField(default=list, blank=True)  # [{"port": 8888, "type": "http"}]
    # [{"key": …, "value": …}]: values may hold tokens, so encrypted at rest (ENCRYPTION_KEYS).
    envs = EncryptedJSONField(default=list, blank=True)
    channel = models.CharField(max_length=32, blank=True)
    # get-template's entrypoint and minCudaVersion: forwarded to the create.
    entrypoint = models.TextField(blank=True)
    min_cuda_version = models.CharField(max_length=16, blank=True)
    fetched_at = models.DateTimeField(help_text="When Novita was last asked for it.")

    class Meta:
        ordering = ["novita_id"]

    def __str__(self) -> str:
        return f"{self.novita_id} {self.name}"


class CatalogState(models.Model):
    """One row: the sync lease, the last sync's outcome, and the catalog version.

    `version` changes whenever what selection would answer may change (a sync that changed rows,
    a capacity failure); cached offer lists are keyed by it.
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    version = models.PositiveBigIntegerField(default=0)
    lease_token = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=16, blank=True)
    last_error = models.TextField(blank=True)
    last_duration_seconds = models.FloatField(null=True, blank=True)
    last_counts = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "catalog state"
        verbose_name_plural = "catalog state"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="catalog_state_singleton")]

    def __str__(self) -> str:
        return "catalog state"
