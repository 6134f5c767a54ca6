from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, get_error_detail

from instances.models import (
    BillingMode,
    FailureReason,
    Instance,
    InstanceEvent,
    InstanceStatus,
    OnExpire,
    OnIdle,
    OnMaxSpend,
    OnPreempt,
    SpotFallback,
)
from instances.selectors import (
    InstanceRepresentation,
    event_representation,
    instance_representation,
)
from instances.services import (
    NAME_RE,
    UNCHANGED,
    HealthCheckSpec,
    InstanceChanges,
    InstanceRequest,
)
from novitai.errors import ServiceError

CAPACITY_WAIT_MAX_SECONDS = 86400

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,510}$")
IDLE_TIMEOUT_MIN_SECONDS = 60
IDLE_TIMEOUT_MAX_SECONDS = 30 * 24 * 3600
TTL_MIN_SECONDS = 60
TTL_MAX_SECONDS = 90 * 24 * 3600


def max_spend_field(**extra: Any) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal(0),
        help_text="Stop or delete the instance (on_max_spend) once its cost_usd reaches this, "
        "USD with at most 2 decimals.",
        **extra,
    )


def ttl_field(**extra: Any) -> StrictIntegerField:
    return StrictIntegerField(
        min_value=TTL_MIN_SECONDS,
        max_value=TTL_MAX_SECONDS,
        help_text="Lifetime from this request (60 s to 90 days): sets expires_at. Not with "
        "expires_at.",
        **extra,
    )


def expires_at_check(value: datetime | None) -> datetime | None:
    if value is not None and value <= timezone.now():
        raise serializers.ValidationError("Must be in the future.")
    return value


def lifetime_rules(data: Mapping[str, Any]) -> dict[str, list[str]]:
    if data.get("ttl_seconds") is not None and data.get("expires_at") is not None:
        return {"ttl_seconds": ["Give ttl_seconds or expires_at, not both."]}
    return {}


def expiry_of(data: Mapping[str, Any]) -> Any:
    """expires_at from ttl_seconds (counted from now) or as given; absent: UNCHANGED."""
    if data.get("ttl_seconds") is not None:
        return timezone.now() + timedelta(seconds=data["ttl_seconds"])
    return data.get("expires_at", UNCHANGED)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: no strings, floats or booleans."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 100, "maximum": 599},
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "minItems": 1,
                "maxItems": 50,
            },
        ],
        "description": "Accepted HTTP status(es); default 200-399.",
    }
)
class ExpectedStatusField(serializers.Field):
    default_error_messages = {
        "invalid": "An HTTP status code (100-599) or a list of them.",
    }

    def to_internal_value(self, data: Any) -> tuple[tuple[int, int], ...]:
        items = data if isinstance(data, list) else [data]
        if not items or len(items) > 50:
            self.fail("invalid")
        codes: list[int] = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
                self.fail("invalid")
            codes.append(item)
        return tuple((code, code) for code in sorted(set(codes)))

    def to_representation(self, value: Any) -> Any:
        return value


class EnvVarInputSerializer(serializers.Serializer[dict[str, Any]]):
    key = serializers.RegexField(ENV_KEY_RE, max_length=511)
    value = serializers.CharField(max_length=4095, allow_blank=True, trim_whitespace=False)


MAX_VOLUMES = 30  # Novita's limit of networkStorages
GPU_IDLE_MIN_SECONDS = 60  # Novita's points are a minute apart


class IdlePolicyInputSerializer(serializers.Serializer[dict[str, Any]]):
    gpu_utilization_below = serializers.FloatField(
        min_value=0.5, max_value=100, help_text="Percent; every GPU below it counts as idle."
    )
    for_seconds = StrictIntegerField(
        min_value=GPU_IDLE_MIN_SECONDS,
        max_value=IDLE_TIMEOUT_MAX_SECONDS,
        help_text="How long the GPUs must stay below it.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            value = data.get("gpu_utilization_below")
            if isinstance(value, bool | str):
                raise serializers.ValidationError({"gpu_utilization_below": ["A number."]})
        return super().to_internal_value(data)


class VolumeMountInputSerializer(serializers.Serializer[dict[str, Any]]):
    volume_id = serializers.UUIDField(help_text="One of the tenant's volumes (/api/v1/volumes/).")
    mount_path = serializers.CharField(
        default="/workspace", max_length=4095, help_text="An absolute path, not /."
    )

    def validate_mount_path(self, value: str) -> str:
        parts = value.split("/")
        if (
            not value.startswith("/")
            or value.rstrip("/") == ""
            or any(part in (".", "..") for part in parts)
            or any(c.isspace() or c in ",:" for c in value)
        ):
            raise serializers.ValidationError(
                "An absolute path other than / (no spaces, '.', '..', ',' or ':')."
            )
        return value.rstrip("/")


class HealthCheckInputSerializer(serializers.Serializer[dict[str, Any]]):
    path = serializers.CharField(default="/", max_length=2048)
    ports = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=65535),
        required=False,
        allow_empty=False,
        max_length=15,
    )
    expected_status = ExpectedStatusField(required=False)
    timeout_seconds = serializers.FloatField(required=False, min_value=0.1, max_value=60)

    def validate_path(self, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value) or "#" in value:
            raise serializers.ValidationError("A URL path starting with '/', without spaces.")
        return value


def webhook_url_check(value: str) -> str:
    """An http(s) URL that the SSRF guard allows (the serializers' webhook_url)."""
    from webhooks.ssrf import webhook_url_validate

    if not value.lower().startswith(("http://", "https://")):
        raise serializers.ValidationError("An http or https URL.")
    try:
        webhook_url_validate(value)
    except ServiceError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        raise serializers.ValidationError(
            details.get("webhook_url") or [exc.message], code=exc.code
        ) from None
    return value


class StrictSerializerMixin:
    """Unknown fields are an error (a misspelt field must not be ignored silently)."""

    initial_data: Any
    fields: Any

    def unknown_field_errors(self, data: Any) -> dict[str, list[str]]:
        if not isinstance(data, dict):
            return {}
        return {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}

    def validate_unknown(self, attrs: dict[str, Any]) -> None:
        errors = self.unknown_field_errors(self.initial_data)
        if errors:
            raise serializers.ValidationError(errors)


# Which InstanceRequest field each create field feeds (the catalog checks name the latter).
_REQUEST_FIELD = {"product_name": "product_names"}
_CATALOG_INPUTS = (
    "template_id",
    "product_names",
    "gpu_num",
    "rootfs_size",
    "region",
    "billing_mode",
    "max_price_per_hour",
    "health_check",
)


class InstanceCreateInputSerializer(StrictSerializerMixin, serializers.Serializer[dict[str, Any]]):
    name = serializers.RegexField(
        NAME_RE,
        max_length=63,
        error_messages={
            "invalid": "1-63 lowercase letters, digits or '-', starting with a letter or digit."
        },
    )
    product_name = serializers.CharField(required=False, max_length=255)
    product_names = serializers.ListField(
        child=serializers.CharField(max_length=255),
        required=False,
        allow_empty=False,
        max_length=20,
    )
    template_id = serializers.CharField(max_length=64)
    gpu_num = StrictIntegerField(default=1, min_value=1, max_value=8)
    rootfs_size = StrictIntegerField(required=False, min_value=1, max_value=6144, help_text="GB")
    region = serializers.CharField(required=False, max_length=64)
    billing_mode = serializers.ChoiceField(
        choices=BillingMode.choices, default=BillingMode.ON_DEMAND
    )
    max_price_per_hour = serializers.DecimalField(
        required=False, max_digits=12, decimal_places=5, min_value=0, help_text="USD"
    )
    envs = serializers.ListField(child=EnvVarInputSerializer(), required=False, max_length=100)
    volumes = serializers.ListField(
        child=VolumeMountInputSerializer(),
        required=False,
        max_length=MAX_VOLUMES,
        help_text="Network volumes to mount; the instance is placed in their cluster.",
    )
    webhook_url = serializers.URLField(required=False, max_length=2048)
    health_check = HealthCheckInputSerializer(required=False)
    on_preempt = serializers.ChoiceField(
        choices=OnPreempt.choices,
        default=OnPreempt.NOTIFY,
        help_text="When Novita reclaims a spot instance: notify only, start it again "
        "(restart), or provision a new one through the offer list (reprovision).",
    )
    idle_timeout_seconds = StrictIntegerField(
        required=False,
        min_value=IDLE_TIMEOUT_MIN_SECONDS,
        max_value=IDLE_TIMEOUT_MAX_SECONDS,
        help_text="Stop the instance once it has been ready this long without a heartbeat "
        "(POST .../heartbeat/). Absent: never stopped for idleness.",
    )
    on_idle = serializers.ChoiceField(
        choices=OnIdle.choices,
        default=OnIdle.STOP,
        help_text="What an idle timeout does: stop (the disk kept) or delete.",
    )
    idle_policy = IdlePolicyInputSerializer(
        required=False,
        help_text="Idle by GPU utilization (Novita's metrics, about a minute behind). With "
        "idle_timeout_seconds too, idle only when both say so.",
    )
    spot_fallback = serializers.ChoiceField(
        choices=[SpotFallback.ON_DEMAND],
        required=False,
        help_text="A spot request only: when no spot offer can be had, try on-demand offers "
        "(within max_price_per_hour) before waiting or failing.",
    )
    capacity_wait_seconds = StrictIntegerField(
        default=0,
        min_value=0,
        max_value=CAPACITY_WAIT_MAX_SECONDS,
        help_text="When no acceptable offer can be had: wait this long for capacity "
        "(status waiting_for_capacity, tried again as capacity returns) before failing "
        "no_capacity. 0: fail at once.",
    )
    max_spend_usd = max_spend_field(required=False)
    on_max_spend = serializers.ChoiceField(choices=OnMaxSpend.choices, default=OnMaxSpend.STOP)
    ttl_seconds = ttl_field(required=False)
    expires_at = serializers.DateTimeField(
        required=False, help_text="ISO 8601, in the future: when on_expire acts."
    )
    on_expire = serializers.ChoiceField(choices=OnExpire.choices, default=OnExpire.DELETE)

    def validate_webhook_url(self, value: str) -> str:
        return webhook_url_check(value)

    def validate_volumes(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        paths = [item["mount_path"] for item in value]
        ids = [item["volume_id"] for item in value]
        twice = sorted({p for p in paths if paths.count(p) > 1})
        if twice:
            raise serializers.ValidationError(f"Two volumes on one path: {', '.join(twice)}.")
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("A volume is mounted once.")
        return value

    def validate_expires_at(self, value: datetime) -> datetime | None:
        return expires_at_check(value)

    def validate_envs(self, value: list[dict[str, str]]) -> list[dict[str, str]]:
        keys = [item["key"] for item in value]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Duplicate keys: {', '.join(duplicates)}.")
        return value

    def to_internal_value(self, data: Any) -> dict[str, Any]:  # noqa: C901 - every rule across fields, each collected, none nested
        """Every problem at once: each field's, unknown fields, the rules across fields and,
        when any of those fails, the catalog's checks of the fields that are right (template,
        region, products, rootfs limits, health-check ports). DRF stops at the first stage that
        fails, so that a caller used to fix one field per request."""
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # DRF's "expected a dictionary"
        valid: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for field in self._writable_fields:
            validate_method = getattr(self, f"validate_{field.field_name}", None)
            try:
                value = field.run_validation(field.get_value(data))
                if validate_method is not None:
                    value = validate_method(value)
            except serializers.ValidationError as exc:
                errors[str(field.field_name)] = exc.detail
            except DjangoValidationError as exc:
                errors[str(field.field_name)] = get_error_detail(exc)
            except SkipField:
                pass
            else:
                self.set_value(valid, field.source_attrs, value)
        across = {**self.unknown_field_errors(data), **self._rules(data, valid)}
        for name, messages in across.items():
            errors.setdefault(name, messages)
        if errors:
            for name, messages in self._catalog_problems(valid, errors).items():
                errors.setdefault(name, messages)
            raise serializers.ValidationError(errors)
        return valid

    @staticmethod
    def _rules(data: Mapping[str, Any], valid: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if ("product_name" in data) == ("product_names" in data):
            errors["product_name"] = ["Give product_name or product_names (exactly one of them)."]
        if (
            valid.get("on_preempt", OnPreempt.NOTIFY) != OnPreempt.NOTIFY
            and valid.get("billing_mode") != BillingMode.SPOT
            and "billing_mode" in valid
        ):
            errors["on_preempt"] = ["Only a spot instance is reclaimed: use billing_mode 'spot'."]
        spot = valid.get("billing_mode") == BillingMode.SPOT
        if "spot_fallback" in valid and "billing_mode" in valid and not spot:
            errors["spot_fallback"] = ["Only a spot request falls back: use billing_mode 'spot'."]
        errors.update(lifetime_rules(data))
        return errors

    def _catalog_problems(self, valid: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
        """The catalog's problems with the fields that are right, as field details."""
        from instances.services import instance_request_problems, problem_field_details

        wrong = {_REQUEST_FIELD.get(name, name) for name in errors}
        names = [valid["product_name"]] if "product_name" in valid else valid.get("product_names")
        missing = {
            name
            for name, present in (("template_id", "template_id" in valid), ("product_names", names))
            if not present
        }
        unchecked = frozenset((wrong | missing) & set(_CATALOG_INPUTS))
        request = self._request(
            {**valid, "name": valid.get("name", "x"), "template_id": valid.get("template_id", "")},
            names or [],
        )
        try:
            _, problems = instance_request_problems(request=request, unchecked=unchecked)
        except ServiceError:  # Novita not reachable for the template: the others still count
            return {}
        details: dict[str, Any] = {}
        for problem in problems:
            details.update(problem_field_details(problem))
        return details

    def to_request(self) -> InstanceRequest:
        data = self.validated_data
        names = [data["product_name"]] if "product_name" in data else data["product_names"]
        return self._request(data, names)

    @staticmethod
    def _request(data: dict[str, Any], names: list[str]) -> InstanceRequest:
        health = data.get("health_check") or {}
        return InstanceRequest(
            name=data["name"],
            template_id=data["template_id"],
            product_names=tuple(dict.fromkeys(n.strip() for n in names)),
            gpu_num=data.get("gpu_num", 1),
            rootfs_size=data.get("rootfs_size"),
            region=(data.get("region") or "").strip() or None,
            billing_mode=data.get("billing_mode", BillingMode.ON_DEMAND),
            max_price_per_hour=data.get("max_price_per_hour"),
            envs=tuple((e["key"], e["value"]) for e in data.get("envs", [])),
            webhook_url=data.get("webhook_url", ""),
            health_check=HealthCheckSpec(
                path=health.get("path", "/"),
                ports=tuple(health["ports"]) if "ports" in health else None,
                expected_status=health.get("expected_status") or HealthCheckSpec.expected_status,
                timeout_seconds=health.get("timeout_seconds"),
            ),
            on_preempt=data.get("on_preempt", OnPreempt.NOTIFY),
            idle_timeout_seconds=data.get("idle_timeout_seconds"),
            on_idle=data.get("on_idle", OnIdle.STOP),
            volumes=tuple((v["volume_id"], v["mount_path"]) for v in data.get("volumes", [])),
            idle_policy=(
                (data["idle_policy"]["gpu_utilization_below"], data["idle_policy"]["for_seconds"])
                if data.get("idle_policy")
                else None
            ),
            capacity_wait_seconds=data.get("capacity_wait_seconds", 0),
            spot_fallback=data.get("spot_fallback", ""),
            max_spend_usd=data.get("max_spend_usd"),
            on_max_spend=data.get("on_max_spend", OnMaxSpend.STOP),
            expires_at=None if (expiry := expiry_of(data)) is UNCHANGED else expiry,
            on_expire=data.get("on_expire", OnExpire.DELETE),
        )


class InstanceUpdateInputSerializer(StrictSerializerMixin, serializers.Serializer[dict[str, Any]]):
    """PATCH: the settings that can change while the instance lives (at least one)."""

    on_preempt = serializers.ChoiceField(
        choices=OnPreempt.choices,
        required=False,
        help_text="What follows a spot reclaim (billing_mode spot only, but for notify).",
    )
    idle_timeout_seconds = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=IDLE_TIMEOUT_MIN_SECONDS,
        max_value=IDLE_TIMEOUT_MAX_SECONDS,
        help_text="Stop once ready this long without a heartbeat; null: never.",
    )
    on_idle = serializers.ChoiceField(
        choices=OnIdle.choices, required=False, help_text="stop or delete when idle"
    )
    webhook_url = serializers.URLField(
        required=False,
        allow_null=True,
        max_length=2048,
        help_text="Where later events go; null: no webhooks.",
    )
    capacity_wait_seconds = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=CAPACITY_WAIT_MAX_SECONDS,
        help_text="How long it may wait for capacity, counted from when it began waiting: "
        "a longer one extends the wait.",
    )
    max_spend_usd = max_spend_field(required=False, allow_null=True)
    on_max_spend = serializers.ChoiceField(choices=OnMaxSpend.choices, required=False)
    ttl_seconds = ttl_field(required=False)
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO 8601, in the future: extends or shortens the lifetime; null: clears it.",
    )
    on_expire = serializers.ChoiceField(choices=OnExpire.choices, required=False)

    def validate_webhook_url(self, value: str | None) -> str | None:
        return None if value is None else webhook_url_check(value)

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        return expires_at_check(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self.validate_unknown(attrs)
        rules = lifetime_rules(self.initial_data)
        if rules:
            raise serializers.ValidationError(rules)
        if not attrs:
            raise serializers.ValidationError(
                {"non_field_errors": ["Nothing to change: give on_preempt, on_idle, "
                                      "idle_timeout_seconds, webhook_url, "
                                      "capacity_wait_seconds, max_spend_usd, on_max_spend, "
                                      "ttl_seconds, expires_at or on_expire."]}
            )  # fmt: skip
        return attrs

    def to_changes(self) -> InstanceChanges:
        data = self.validated_data
        return InstanceChanges(
            on_preempt=data.get("on_preempt"),
            on_idle=data.get("on_idle"),
            idle_timeout_seconds=data.get("idle_timeout_seconds", UNCHANGED),
            webhook_url=data.get("webhook_url", UNCHANGED),
            capacity_wait_seconds=data.get("capacity_wait_seconds"),
            max_spend_usd=data.get("max_spend_usd", UNCHANGED),
            on_max_spend=data.get("on_max_spend"),
            expires_at=expiry_of(data),
            on_expire=data.get("on_expire"),
        )


# --- output (for the schema; the body is instance_representation) ----------------------------


class ProductRefSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField()
    name = serializers.CharField()


class EndpointSerializer(serializers.Serializer[dict[str, Any]]):
    port = serializers.IntegerField()
    type = serializers.ChoiceField(choices=["http", "tcp"])
    url = serializers.CharField(allow_null=True)
    healthy = serializers.BooleanField(allow_null=True)


class InstanceIdlePolicySerializer(serializers.Serializer[dict[str, Any]]):
    gpu_utilization_below = serializers.FloatField()
    for_seconds = serializers.IntegerField()


class InstanceMountSerializer(serializers.Serializer[dict[str, Any]]):
    volume_id = serializers.UUIDField()
    name = serializers.CharField()
    mount_path = serializers.CharField()


class InstanceSshSerializer(serializers.Serializer[dict[str, Any]]):
    host = serializers.CharField()
    port = serializers.IntegerField()
    user = serializers.CharField()
    command = serializers.CharField(help_text="The ssh command line Novita gives.")


class InstanceSshCredentialsSerializer(InstanceSshSerializer):
    password = serializers.CharField(help_text="Novita's ssh password for the instance.")


class InstanceJobSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class InstanceSerializer(serializers.Serializer[Instance]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=InstanceStatus.choices)
    failure_reason = serializers.ChoiceField(choices=FailureReason.choices, allow_null=True)
    failure_message = serializers.CharField(allow_null=True)
    novita_instance_id = serializers.CharField(allow_null=True)
    product = ProductRefSerializer(allow_null=True)
    region = serializers.CharField(allow_null=True)
    billing_mode = serializers.ChoiceField(
        choices=BillingMode.choices, help_text="The billing mode obtained (or being tried)."
    )
    billing_mode_requested = serializers.ChoiceField(
        choices=BillingMode.choices, help_text="The billing mode asked for."
    )
    spot_fallback = serializers.ChoiceField(choices=[SpotFallback.ON_DEMAND], allow_null=True)
    gpu_num = serializers.IntegerField()
    price_per_hour = serializers.DecimalField(
        max_digits=12, decimal_places=5, allow_null=True, help_text="USD"
    )
    cost_usd = serializers.DecimalField(
        max_digits=18, decimal_places=6, help_text="Accrued so far (the cost ledger), USD."
    )
    cost_rate_usd_per_hour = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text="What it costs right now, USD an hour: compute, its disk while stopped, 0 "
        "once terminated.",
    )
    template_id = serializers.CharField()
    rootfs_size = serializers.IntegerField(help_text="GB")
    endpoints = EndpointSerializer(many=True)
    volumes = InstanceMountSerializer(many=True, help_text="The network volumes it mounts.")
    ssh = InstanceSshSerializer(
        allow_null=True, help_text="Where to ssh while it runs; the password: GET …/ssh/."
    )
    logs_url = serializers.CharField(allow_null=True, help_text="Novita's log address.")
    created_at = serializers.DateTimeField()
    provisioned_at = serializers.DateTimeField(allow_null=True)
    ready_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    terminated_at = serializers.DateTimeField(allow_null=True)
    webhook_url = serializers.URLField(allow_null=True)
    on_preempt = serializers.ChoiceField(choices=OnPreempt.choices)
    recoveries = serializers.IntegerField(help_text="Spot reclaims recovered automatically.")
    idle_timeout_seconds = serializers.IntegerField(allow_null=True)
    on_idle = serializers.ChoiceField(choices=OnIdle.choices)
    last_active_at = serializers.DateTimeField(allow_null=True)
    idle_stop_at = serializers.DateTimeField(
        allow_null=True, help_text="When a ready instance will be stopped unless active before."
    )
    idle_policy = InstanceIdlePolicySerializer(allow_null=True)
    gpu_utilization = serializers.FloatField(
        allow_null=True, help_text="Percent, the busiest GPU's newest point (idle_policy only)."
    )
    gpu_utilization_at = serializers.DateTimeField(
        allow_null=True, help_text="The time of that point (Novita's, about a minute behind)."
    )
    max_spend_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, allow_null=True, help_text="USD"
    )
    on_max_spend = serializers.ChoiceField(choices=OnMaxSpend.choices)
    spend_limit_reached_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    on_expire = serializers.ChoiceField(choices=OnExpire.choices)
    job = InstanceJobSerializer(allow_null=True)
    capacity_wait_seconds = serializers.IntegerField(
        help_text="How long it may wait for capacity (0: not at all)."
    )
    capacity_wait_until = serializers.DateTimeField(
        allow_null=True, help_text="While waiting for capacity: when the wait ends."
    )
    next_attempt_at = serializers.DateTimeField(
        allow_null=True, help_text="While waiting for capacity: the next attempt at the latest."
    )
    capacity_attempts = serializers.IntegerField(help_text="Attempts while waiting for capacity.")
    spot_reclaim_at = serializers.DateTimeField(
        allow_null=True, help_text="When Novita said it will reclaim this spot instance."
    )

    def to_representation(self, instance: Instance) -> InstanceRepresentation:  # type: ignore[override]
        return instance_representation(instance)


class InstanceEventSerializer(serializers.Serializer[InstanceEvent]):
    id = serializers.IntegerField()
    from_status = serializers.CharField(allow_null=True)
    to_status = serializers.CharField()
    reason = serializers.CharField()
    message = serializers.CharField()
    actor = serializers.CharField()
    details = serializers.DictField()
    at = serializers.DateTimeField()

    def to_representation(self, instance: InstanceEvent) -> dict[str, Any]:
        return event_representation(instance)


class ImageSaveRequestSerializer(StrictSerializerMixin, serializers.Serializer[dict[str, Any]]):
    image = serializers.CharField(
        max_length=500, help_text="Where to push it: [registry[:port]/]name[:tag]."
    )
    registry_auth_id = serializers.CharField(
        max_length=64,
        required=False,
        default="",
        allow_blank=True,
        help_text="Novita's registry auth for a private registry.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self.validate_unknown(attrs)
        return attrs


class ImageSaveAnswerSerializer(serializers.Serializer[dict[str, Any]]):
    """The image save (as GET /api/v1/image-saves/{id}/ answers it)."""

    id = serializers.UUIDField()
    instance_id = serializers.UUIDField()
    instance_name = serializers.CharField()
    image = serializers.CharField()
    status = serializers.CharField()
    novita_job_id = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
