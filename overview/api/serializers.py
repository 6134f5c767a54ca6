"""The OpenAPI shape of the summary (overview/summary.py's MetricsSummary; a test keeps them
alike). For the schema only: the view answers the summary as it is."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class SpendSerializer(serializers.Serializer[dict[str, Any]]):
    usd_per_hour = serializers.CharField(help_text="USD, as a decimal string")
    instances = serializers.IntegerField()
    this_month_usd = serializers.CharField(
        help_text="Spent since the start of this month (UTC), the cost ledger's USD"
    )
    rate_usd_per_hour = serializers.CharField(
        help_text="What everything costs an hour right now (compute and stopped disks), USD"
    )


class MetricsSummarySerializer(serializers.Serializer[dict[str, Any]]):
    scope = serializers.ChoiceField(choices=["tenant", "all"])
    tenant = serializers.CharField(allow_null=True)
    generated_at = serializers.DateTimeField()
    instances = serializers.DictField()
    spend = SpendSerializer()
    spot_recoveries = serializers.IntegerField()
    jobs = serializers.DictField()
    webhook_deliveries = serializers.DictField()
    quota = serializers.DictField(required=False)
    control_plane = serializers.DictField(required=False)
