from django.urls import URLPattern, URLResolver, path

from webhooks.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "webhooks/deliveries/",
        views.WebhookDeliveryListView.as_view(),
        name="webhook-delivery-list",
    ),
    path(
        "webhooks/deliveries/<uuid:delivery_id>/",
        views.WebhookDeliveryDetailView.as_view(),
        name="webhook-delivery-detail",
    ),
    path(
        "webhooks/deliveries/<uuid:delivery_id>/redeliver/",
        views.WebhookDeliveryRedeliverView.as_view(),
        name="webhook-delivery-redeliver",
    ),
    path(
        "webhooks/secret/rotate/",
        views.WebhookSecretRotateView.as_view(),
        name="webhook-secret-rotate",
    ),
]
