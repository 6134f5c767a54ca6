from __future__ import annotations

from rest_framework import serializers

from jobs.models import Job


class JobOutputSerializer(serializers.ModelSerializer[Job]):
    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "subject_type",
            "subject_id",
            "attempts",
            "max_attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields
