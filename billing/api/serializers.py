"""The costs report's query and answer."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from billing.models import OnExhausted
from novitai.errors import ServiceError
from webhooks.ssrf import webhook_url_validate

GROUP_BY = ("instance", "product", "region", "day", "tenant")


class CostQuerySerializer(serializers.Serializer[Any]):
    # `from` is a keyword: the field is renamed below.
    from_ = serializers.DateTimeField(
        required=False, help_text="ISO 8601; default: the start of this month (UTC)."
    )
    to = serializers.DateTimeField(required=False, help_text="ISO 8601; default: now.")
    group_by = serializers.ChoiceField(choices=GROUP_BY, default="instance")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and end <= start:
            raise serializers.ValidationError({"to": ["Must be after `from`."]})
        return attrs


class CostRowSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(
        help_text="The instance id, product name, region, day (YYYY-MM-DD) or tenant name."
    )
    cost_usd = serializers.DecimalField(max_digits=18, decimal_places=6)


class CostReportSerializer(serializers.Serializer[Any]):
    from_ = serializers.DateTimeField()
    to = serializers.DateTimeField()
    group_by = serializers.ChoiceField(choices=GROUP_BY)
    rows = CostRowSerializer(many=True)
    total_usd = serializers.DecimalField(
        max_digits=18, decimal_places=6, help_text="The sum of the rows, exactly."
    )


class BudgetQuerySerializer(serializers.Serializer[Any]):
    tenant = serializers.CharField(
        required=False, max_length=255, help_text="Staff: the tenant's name (required for staff)."
    )


class BudgetInputSerializer(serializers.Serializer[Any]):
    monthly_limit_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal(0),
        allow_null=True,
        help_text="USD a month (UTC), at most 2 decimals; null: no budget.",
    )
    alert_thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        default=lambda: [50, 80, 100],
        max_length=20,
        help_text="Percentages of the limit, increasing: a webhook when each is reached.",
    )
    on_exhausted = serializers.ChoiceField(choices=OnExhausted.choices, default="notify")
    webhook_url = serializers.URLField(
        required=False, allow_null=True, max_length=2048, help_text="Where budget events go."
    )

    def validate_alert_thresholds(self, value: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise serializers.ValidationError("Must be increasing.")
        return value

    def validate_webhook_url(self, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("An http or https URL.")
        try:
            webhook_url_validate(value)
        except ServiceError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            raise serializers.ValidationError(details.get("webhook_url") or [exc.message]) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class BudgetSerializer(serializers.Serializer[Any]):
    monthly_limit_usd = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    alert_thresholds = serializers.ListField(child=serializers.IntegerField())
    on_exhausted = serializers.ChoiceField(choices=OnExhausted.choices)
    webhook_url = serializers.URLField(allow_null=True)
    month = serializers.CharField(help_text="YYYY-MM (UTC)")
    spent_this_month_usd = serializers.DecimalField(max_digits=18, decimal_places=6)
    projected_month_usd = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text="Spent, plus the current rate for the hours left in the month.",
    )
    remaining_usd = serializers.DecimalField(max_digits=18, decimal_places=6, allow_null=True)


for _serializer in (CostQuerySerializer, CostReportSerializer):
    _serializer._declared_fields["from"] = _serializer._declared_fields.pop("from_")
