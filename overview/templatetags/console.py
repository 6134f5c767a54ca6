"""{% overview_dashboard %}: the console's dashboard, on the admin's index."""

from __future__ import annotations

from typing import Any

from django import template

from overview.dashboard import dashboard

register = template.Library()


@register.inclusion_tag("overview/dashboard.html")
def overview_dashboard() -> dict[str, Any]:
    return {"d": dashboard()}
