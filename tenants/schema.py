"""OpenAPI description of the Bearer API key (drf-spectacular extension)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TenantKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantKeyAuthentication"
    name = "BearerKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key: `Authorization: Bearer <key>`.",
        }
