"""Tenants own instances; they reach the API with hashed API keys and receive signed webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from novitai.crypto import EncryptedTextField

tenant_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,62}$",
    "Use 1-63 lowercase letters, digits or '-', starting with a letter or digit.",
)


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=63, unique=True, validators=[tenant_name_validator])
    is_active = models.BooleanField(default=True)
    # Standard Webhooks signing secret ("whsec_" + base64 of 32 random bytes), encrypted at rest
    # (ENCRYPTION_KEYS). After a rotation the previous secret keeps signing too until
    # `previous_webhook_secret_expires_at`.
    webhook_secret = EncryptedTextField(editable=False)
    previous_webhook_secret = EncryptedTextField(blank=True, editable=False)
    previous_webhook_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Hard limits checked in the create transaction (null: no limit).
    max_instances = models.PositiveIntegerField(
        null=True, blank=True, help_text="Instances not terminated, at most (empty: no limit)."
    )
    max_gpus = models.PositiveIntegerField(
        null=True, blank=True, help_text="GPUs of instances not terminated, at most."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TenantAPIKeyManager(BaseAPIKeyManager):
    def get_usable_keys(self, now: datetime | None = None) -> models.QuerySet[TenantAPIKey]:
        """Keys that may authenticate: not revoked, not expired, of an active tenant (without
        the tenant's webhook secrets, which authentication never needs)."""
        return (
            super()
            .get_usable_keys()
            .filter(tenant__is_active=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now()))
            .select_related("tenant")
            .defer("tenant__webhook_secret", "tenant__previous_webhook_secret")
        )


class TenantAPIKey(AbstractAPIKey):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    # The library's `expiry_date`, named as every other expiry of novitai.
    expiry_date = None
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The key is refused from then on (empty: never)."
    )
    last_used_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the key last authenticated, to within API_KEY_LAST_USED_INTERVAL_SECONDS.",
    )

    objects = TenantAPIKeyManager()  # type: ignore[misc,assignment]

    @property
    def has_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "tenant API key"
        verbose_name_plural = "tenant API keys"
