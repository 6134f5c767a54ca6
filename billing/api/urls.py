from django.urls import path

from billing.api.views import budget_view, costs_view

urlpatterns = [
    path("costs/", costs_view, name="costs"),
    path("budget/", budget_view, name="budget"),
]
