from __future__ import annotations

from typing import Any

from rest_framework import serializers

from storage.models import MAX_SIZE_GB, MIN_SIZE_GB, Volume, VolumeStatus
from storage.selectors import VolumeRepresentation, volume_representation

NAME_REGEX = r"^[a-z0-9][a-z0-9-]{0,62}$"
NAME_HELP = "1-63 lowercase letters, digits or '-', starting with a letter or digit."


def _strict(serializer: serializers.Serializer[Any], attrs: dict[str, Any]) -> dict[str, Any]:
    data = serializer.initial_data
    unknown = sorted(set(data) - set(serializer.fields)) if isinstance(data, dict) else []
    if unknown:
        raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
    return attrs


class StrictSizeField(serializers.IntegerField):
    """A JSON integer: no strings, floats or booleans."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class VolumeCreateInputSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.RegexField(NAME_REGEX, max_length=63, error_messages={"invalid": NAME_HELP})
    region = serializers.CharField(max_length=64, help_text="A region code, e.g. EU-NL-01.")
    size_gb = StrictSizeField(min_value=MIN_SIZE_GB, max_value=MAX_SIZE_GB, help_text="GB")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return _strict(self, attrs)


class VolumeUpdateInputSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.RegexField(
        NAME_REGEX, max_length=63, required=False, error_messages={"invalid": NAME_HELP}
    )
    size_gb = StrictSizeField(
        min_value=MIN_SIZE_GB, max_value=MAX_SIZE_GB, required=False, help_text="GB; only grows"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        _strict(self, attrs)
        if not attrs:
            raise serializers.ValidationError(
                {"non_field_errors": ["Nothing to change: give name or size_gb."]}
            )
        return attrs


class VolumeSerializer(serializers.Serializer[Volume]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=VolumeStatus.choices)
    region = serializers.CharField()
    size_gb = serializers.IntegerField(help_text="GB")
    novita_storage_id = serializers.CharField(allow_null=True)
    price_per_gb_day = serializers.DecimalField(
        max_digits=12, decimal_places=7, allow_null=True, help_text="USD per GB per day"
    )
    cost_per_day = serializers.DecimalField(
        max_digits=14, decimal_places=7, allow_null=True, help_text="USD per day, at this size"
    )
    created_at = serializers.DateTimeField()

    def to_representation(self, instance: Volume) -> VolumeRepresentation:  # type: ignore[override]
        return volume_representation(instance)
