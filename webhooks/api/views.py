from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.authentication import TenantPrincipal, request_tenant
from webhooks.api.serializers import (
    WebhookDeliveryDetailSerializer,
    WebhookDeliveryFilterSerializer,
    WebhookDeliverySerializer,
    WebhookSecretSerializer,
)
from webhooks.models import WebhookDelivery
from webhooks.selectors import delivery_get, delivery_list
from webhooks.services import webhook_redeliver, webhook_secret_rotate


class IsTenant(BasePermission):
    message = "A tenant API key is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, TenantPrincipal)


def _detail(delivery: WebhookDelivery, **kwargs: Any) -> Response:
    """The delivery with its attempts, oldest first (DeliveryAttempt's ordering)."""
    return Response(WebhookDeliveryDetailSerializer(delivery).data, **kwargs)


@extend_schema(tags=["webhooks"])
class WebhookDeliveryListView(generics.ListAPIView):
    serializer_class = WebhookDeliverySerializer

    @extend_schema(
        summary="The webhook delivery log, newest first",
        parameters=[WebhookDeliveryFilterSerializer],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        # A plain dict, not the QueryDict: DRF reads a form's empty value ("?status=") as
        # "not given"; here it is a blank filter, a 400 like everywhere else.
        filters = WebhookDeliveryFilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        return delivery_list(
            tenant=request_tenant(self.request),
            instance_id=values.get("instance"),
            status=values.get("status"),
            event_type=values.get("event_type"),
        )


@extend_schema(tags=["webhooks"])
class WebhookDeliveryDetailView(APIView):
    @extend_schema(
        summary="One webhook delivery with every attempt",
        responses={200: WebhookDeliveryDetailSerializer},
    )
    def get(self, request: Request, delivery_id: uuid.UUID) -> Response:
        delivery = delivery_get(tenant=request_tenant(request), delivery_id=delivery_id)
        return _detail(delivery)


@extend_schema(tags=["webhooks"])
class WebhookDeliveryRedeliverView(APIView):
    @extend_schema(
        summary="Send a delivered, failed or gone delivery again",
        description="Same webhook-id, a fresh timestamp and signature; answered 202, the "
        "attempt follows at once.",
        request=None,
        responses={
            202: WebhookDeliveryDetailSerializer,
            409: OpenApiResponse(description="The delivery is still pending."),
        },
    )
    def post(self, request: Request, delivery_id: uuid.UUID) -> Response:
        delivery = delivery_get(tenant=request_tenant(request), delivery_id=delivery_id)
        delivery = webhook_redeliver(delivery=delivery)
        return _detail(delivery, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["webhooks"])
class WebhookSecretRotateView(APIView):
    permission_classes = [IsTenant]

    @extend_schema(
        summary="Rotate the webhook signing secret",
        description="Returns the new secret once. The previous secret keeps signing (a second "
        "signature in webhook-signature) for WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS.",
        request=None,
        responses={200: WebhookSecretSerializer},
    )
    def post(self, request: Request) -> Response:
        tenant = request_tenant(request)
        assert tenant is not None  # IsTenant
        rotated = webhook_secret_rotate(tenant=tenant)
        data = WebhookSecretSerializer(
            {
                "webhook_secret": rotated.secret,
                "previous_secret_expires_at": rotated.previous_secret_expires_at,
            }
        ).data
        return Response(data, headers={"Cache-Control": "no-store"})
