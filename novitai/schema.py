"""The OpenAPI schema says what the API really answers (checked by `make fuzz`).

- `AutoSchema`: a list that may not be empty has `minItems: 1`; a decimal string's pattern needs
  a digit (drf-spectacular's allows "", "-" and ".", which DRF rejects) and no sign when the
  field has `min_value >= 0`; a request body that refuses unknown fields has
  `additionalProperties: false`.
- `postprocess_error_responses` (a POSTPROCESSING_HOOK): every error answer has the envelope as
  its body (`ErrorEnvelope`), and every operation lists the errors it can give: 401, 403 and 429
  everywhere, 400 with query parameters or a body, 404 with a path id or pages, 415 with a body.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from rest_framework import serializers

ENVELOPE = "ErrorEnvelope"
ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every 4xx and 5xx under /api/.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Machine-readable, e.g. not_found."},
                "message": {"type": "string"},
                "details": {"description": "Per-field errors or context; {} when none."},
                "request_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
            },
            "required": ["code", "message", "details", "request_id", "timestamp"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}

_DESCRIPTIONS = {
    400: "Invalid request (error envelope)",
    401: "No API key, or an invalid or revoked one (error envelope)",
    403: "Not allowed for this key or user (error envelope)",
    404: "Not found (error envelope)",
    409: "Conflict (error envelope)",
    415: "The body is not JSON (error envelope)",
    422: "Unprocessable (error envelope)",
    429: "Too many requests: see Retry-After (error envelope)",
    503: "Novita is not reachable (error envelope)",
}


class AutoSchema(openapi.AutoSchema):
    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if not isinstance(schema, dict):
            return schema
        if isinstance(field, serializers.ListField) and not field.allow_empty:
            schema.setdefault("minItems", 1)
        if isinstance(field, serializers.DecimalField) and "pattern" in schema:
            whole = field.max_whole_digits
            places = field.decimal_places
            sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
            if whole:
                number = rf"\d{{1,{whole}}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}}"
            else:
                number = rf"0?\.\d{{1,{places}}}|0"
            schema["pattern"] = rf"^{sign}(?:{number})$"
        return schema

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> Any:
        schema = super()._map_basic_serializer(serializer, direction)
        # A serializer that refuses unknown fields (StrictSerializerMixin.validate_unknown) says so.
        if direction == "request" and hasattr(serializer, "validate_unknown"):
            schema["additionalProperties"] = False
        return schema


def _error_response(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or _DESCRIPTIONS.get(status, "Error (error envelope)"),
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ENVELOPE}"}}},
    }


def postprocess_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: C901 - each kind of operation's error answers
    result.setdefault("components", {}).setdefault("schemas", {})[ENVELOPE] = ENVELOPE_SCHEMA
    for path, methods in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            parameters = operation.get("parameters", [])
            where = {p.get("in") for p in parameters}
            names = {p.get("name") for p in parameters if p.get("in") == "query"}
            has_body = "requestBody" in operation
            statuses = {401, 403, 429}
            if has_body or "query" in where:
                statuses.add(400)
            if "path" in where or "page" in names:
                statuses.add(404)
            if has_body:
                statuses.add(415)
            for status in statuses:
                responses.setdefault(str(status), {})
            for code, response in list(responses.items()):
                if code.isdigit() and int(code) >= 400 and "content" not in response:
                    described = response.get("description") or None
                    responses[code] = _error_response(int(code), described)
            operation["responses"] = dict(sorted(responses.items()))
    return result
