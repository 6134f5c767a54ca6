"""Catalog API input and output. Prices are USD per hour as decimal strings (5 places)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.errors import UnknownRegion
from catalog.models import BillingMode, Product, Region
from catalog.selectors import MAX_GPU_NUM, region_resolve
from novitai.novita.types import price_to_usd

USD_PLACES = 5


def usd_field(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=16, decimal_places=USD_PLACES, **kwargs)


def usd(amount: Decimal | None) -> str | None:
    return None if amount is None else usd_field().to_representation(amount)


class _QuerySerializer(serializers.Serializer):
    """Query parameters, validated: bad values are 400s with field details."""

    def create(self, validated_data: Any) -> Any:  # pragma: no cover - never saved
        raise NotImplementedError

    def update(self, instance: Any, validated_data: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


def _gpu_num_field() -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_GPU_NUM, default=1)


# --- regions -----------------------------------------------------------------------------------


class RegionOutputSerializer(serializers.ModelSerializer[Region]):
    class Meta:
        model = Region
        fields = [
            "code",
            "name",
            "cluster_id",
            "gpu_types",
            "supports_network_storage",
            "supports_instance_network",
            "listed",
            "fetched_at",
        ]
        read_only_fields = fields


# --- products ----------------------------------------------------------------------------------


class ProductQuerySerializer(_QuerySerializer):
    name = serializers.CharField(required=False, max_length=255, help_text="Part of the name.")
    region = serializers.CharField(
        required=False, max_length=255, help_text='Region code ("EU-NL-01") or cluster id.'
    )
    billing_mode = serializers.ChoiceField(
        choices=BillingMode.choices,
        required=False,
        help_text="Only products sold this way, by its price (default: on-demand prices).",
    )
    available = serializers.BooleanField(required=False)
    max_price = usd_field(
        required=False, min_value=Decimal(0), help_text="USD per hour for gpu_num GPUs, at most."
    )
    gpu_num = _gpu_num_field()

    def validate_region(self, value: str) -> Region:
        try:
            return region_resolve(value)
        except UnknownRegion as exc:
            raise serializers.ValidationError(exc.details["region"]) from None


class ProductMonthlyPriceSerializer(serializers.Serializer):
    month = serializers.IntegerField()
    price_per_gpu = usd_field(help_text="USD per GPU for the whole period.")


class ProductOutputSerializer(serializers.ModelSerializer[Product]):
    region = serializers.CharField(source="region.code")
    cluster_id = serializers.CharField(source="region.cluster_id")
    on_demand_price_per_gpu_hour = serializers.SerializerMethodField()
    spot_price_per_gpu_hour = serializers.SerializerMethodField()
    monthly_prices = serializers.SerializerMethodField()
    billing_methods = serializers.SerializerMethodField()
    billing_mode = serializers.SerializerMethodField()
    gpu_num = serializers.SerializerMethodField()
    price_per_hour = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = [
            "id",
            "novita_id",
            "name",
            "region",
            "cluster_id",
            "cpu_per_gpu",
            "memory_per_gpu",
            "disk_per_gpu",
            "on_demand_price_per_gpu_hour",
            "spot_price_per_gpu_hour",
            "monthly_prices",
            "billing_methods",
            "billing_mode",
            "gpu_num",
            "price_per_hour",
            "available",
            "inventory_state",
            "available_gpu_number",
            "min_rootfs",
            "max_rootfs",
            "fetched_at",
        ]
        read_only_fields = fields

    def _mode(self) -> str:
        return str(self.context.get("billing_mode") or BillingMode.ON_DEMAND)

    @extend_schema_field(usd_field(allow_null=True, help_text="null: not sold on demand."))
    def get_on_demand_price_per_gpu_hour(self, product: Product) -> str | None:
        units = product.price_units(BillingMode.ON_DEMAND)
        return usd(price_to_usd(units)) if units else None

    @extend_schema_field(usd_field(allow_null=True, help_text="null: not sold as spot."))
    def get_spot_price_per_gpu_hour(self, product: Product) -> str | None:
        units = product.price_units(BillingMode.SPOT)
        return usd(price_to_usd(units)) if units else None

    @extend_schema_field(ProductMonthlyPriceSerializer(many=True))
    def get_monthly_prices(self, product: Product) -> list[dict[str, Any]]:
        return [
            {"month": int(p["month"]), "price_per_gpu": usd(price_to_usd(int(p["price"])))}
            for p in product.monthly_prices
        ]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_billing_methods(self, product: Product) -> list[str]:
        """novitai's names: on_demand, spot, monthly."""
        return [
            name
            for name, on in (
                ("on_demand", product.bills_on_demand),
                ("spot", product.bills_spot),
                ("monthly", product.bills_monthly),
            )
            if on
        ]

    @extend_schema_field(serializers.ChoiceField(choices=BillingMode.choices))
    def get_billing_mode(self, product: Product) -> str:
        return self._mode()

    @extend_schema_field(serializers.IntegerField())
    def get_gpu_num(self, product: Product) -> int:
        return int(self.context.get("gpu_num") or 1)

    @extend_schema_field(
        usd_field(allow_null=True, help_text="gpu_num GPUs in billing_mode; null: not sold so.")
    )
    def get_price_per_hour(self, product: Product) -> str | None:
        units = product.price_units(self._mode())
        return usd(price_to_usd(units * self.get_gpu_num(product))) if units else None


# --- offers ------------------------------------------------------------------------------------


class OptimalQuerySerializer(_QuerySerializer):
    product_name = serializers.CharField(required=False, max_length=255)
    product_names = serializers.CharField(
        required=False,
        max_length=2000,
        help_text=(
            "Acceptable products, comma-separated, most wanted first. Within the region order "
            "the cheapest of them all wins; an earlier name wins only a price tie."
        ),
    )
    region = serializers.CharField(
        required=False,
        max_length=255,
        help_text="Preferred region (code or cluster id); then CATALOG_REGION_FALLBACK_ORDER, "
        "then any other region by price.",
    )
    billing_mode = serializers.ChoiceField(choices=BillingMode.choices, default="on_demand")
    gpu_num = _gpu_num_field()
    max_price_per_hour = usd_field(
        required=False, min_value=Decimal(0), help_text="USD per hour for all gpu_num GPUs."
    )
    rootfs_size = serializers.IntegerField(required=False, min_value=1, max_value=6144)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        single = attrs.pop("product_name", None)
        listed = attrs.pop("product_names", None)
        if single is not None and listed is not None:
            raise serializers.ValidationError(
                {"product_names": ["Give product_name or product_names, not both."]}
            )
        names = [single] if single is not None else (listed or "").split(",")
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise serializers.ValidationError({"product_name": ["Name at least one product."]})
        attrs["product_names"] = names
        return attrs


class OfferOutputSerializer(serializers.Serializer):
    product_id = serializers.IntegerField(source="product_pk")
    novita_product_id = serializers.CharField()
    product_name = serializers.CharField()
    region_code = serializers.CharField()
    cluster_id = serializers.CharField()
    billing_mode = serializers.ChoiceField(choices=BillingMode.choices)
    gpu_num = serializers.IntegerField()
    price_per_gpu_hour = usd_field()
    price_per_hour = usd_field(help_text="For gpu_num GPUs.")
    inventory_state = serializers.CharField()
    cpu_per_gpu = serializers.IntegerField()
    memory_per_gpu = serializers.IntegerField()
    min_rootfs = serializers.IntegerField()
    max_rootfs = serializers.IntegerField()


class RejectionOutputSerializer(serializers.Serializer):
    product_name = serializers.CharField()
    region_code = serializers.CharField(help_text='"" for a name no product has.')
    reason = serializers.ChoiceField(
        choices=[
            "product_not_found",
            "unavailable",
            "not_enough_gpus",
            "billing_mode_unsupported",
            "rootfs_out_of_range",
            "capacity_recently_failed",
            "over_max_price",
        ]
    )
    message = serializers.CharField()


class OptimalOutputSerializer(serializers.Serializer):
    offer = OfferOutputSerializer(source="best", help_text="The offer that would be picked.")
    offers = OfferOutputSerializer(many=True, help_text="Every offer, best first.")
    rejected = RejectionOutputSerializer(many=True, help_text="Every candidate left out.")


# --- templates ---------------------------------------------------------------------------------


class TemplatePortOutputSerializer(serializers.Serializer):
    port = serializers.IntegerField()
    type = serializers.ChoiceField(choices=["http", "tcp"])


class TemplateEnvOutputSerializer(serializers.Serializer):
    key = serializers.CharField()


class TemplateOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    image = serializers.CharField()
    image_auth_id = serializers.CharField(
        help_text="The registry auth's id ('' for a public image); its credentials never leave "
        "novitai."
    )
    start_command = serializers.CharField()
    rootfs_size = serializers.IntegerField(help_text="GB")
    ports = TemplatePortOutputSerializer(many=True)
    envs = TemplateEnvOutputSerializer(
        many=True,
        help_text="Names only: values are not returned (they often hold tokens, and the Novita "
        "account behind novitai is shared by every tenant).",
    )


# --- caches and sync (staff) -------------------------------------------------------------------


class CacheStatsOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    backend = serializers.CharField()
    entries = serializers.IntegerField(allow_null=True, help_text="null: cannot be counted.")
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()
    hit_ratio = serializers.FloatField()
    expired = serializers.IntegerField(help_text="Misses that found an expired entry.")
    sets = serializers.IntegerField()
    deletes = serializers.IntegerField()
    clears = serializers.IntegerField()


class CacheClearedOutputSerializer(serializers.Serializer):
    cleared = serializers.ListField(child=serializers.CharField())


class SyncOutputSerializer(serializers.Serializer):
    outcome = serializers.CharField()
    duration_seconds = serializers.FloatField()
    regions_created = serializers.IntegerField()
    regions_updated = serializers.IntegerField()
    regions_delisted = serializers.IntegerField()
    products_created = serializers.IntegerField()
    products_updated = serializers.IntegerField()
    products_unavailable = serializers.IntegerField()
    products_unchanged = serializers.IntegerField()
