from django.urls import path

from overview.api.views import metrics_summary_view

urlpatterns = [
    path("metrics/", metrics_summary_view, name="metrics-summary"),
]
