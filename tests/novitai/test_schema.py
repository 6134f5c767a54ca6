"""The OpenAPI schema documents what the API answers, errors included (what `make fuzz` checks
the running API against); found by fuzzing: undocumented 400/401/403/404/429 everywhere, error
bodies without a schema, decimal patterns that allowed "", 202 documented as 200."""

from __future__ import annotations

import re
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from instances.api.serializers import InstanceCreateInputSerializer


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def test_every_error_answer_is_the_envelope(schema: dict[str, Any]) -> None:
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    assert envelope["properties"]["error"]["required"] == [
        "code",
        "message",
        "details",
        "request_id",
        "timestamp",
    ]
    for method, path, operation in _operations(schema):
        for code in ("401", "403", "429"):
            assert code in operation["responses"], (method, path, code)
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path)


def test_lists_document_400_and_404_and_their_paging_bounds(schema: dict[str, Any]) -> None:
    for method, path, operation in _operations(schema):
        query = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        if "page" not in query:
            continue
        assert {"400", "404"} <= set(operation["responses"]), (method, path)
        assert query["page"]["schema"] == {"type": "integer", "minimum": 1}
        assert query["page_size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200}


def test_operations_with_a_path_id_document_404(schema: dict[str, Any]) -> None:
    for method, path, operation in _operations(schema):
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in operation["responses"], (method, path)


def test_job_retry_documents_its_202(schema: dict[str, Any]) -> None:
    responses = schema["paths"]["/api/v1/jobs/{id}/retry/"]["post"]["responses"]
    assert "202" in responses
    assert "200" not in responses


def test_create_documents_503_and_415(schema: dict[str, Any]) -> None:
    responses = schema["paths"]["/api/v1/instances/"]["post"]["responses"]
    assert {"400", "404", "409", "415", "422", "503"} <= set(responses)


@pytest.mark.parametrize("value", ["", "-", ".", "-1", "1.123456", "12345678", " "])
def test_a_decimal_the_api_rejects_does_not_match_the_pattern(
    schema: dict[str, Any], value: str
) -> None:
    # drf-spectacular's pattern allowed "", "-" and "." (and a sign on a field with min 0).
    field = schema["components"]["schemas"]["InstanceCreateInputRequest"]["properties"][
        "max_price_per_hour"
    ]
    accepted = InstanceCreateInputSerializer().fields["max_price_per_hour"]
    assert not re.match(field["pattern"], value)
    with pytest.raises(serializers.ValidationError):
        accepted.run_validation(value)


@pytest.mark.parametrize("value", ["0", "1", "1.5", ".5", "1234567.12345", "3."])
def test_good_decimals_match_the_pattern(schema: dict[str, Any], value: str) -> None:
    field = schema["components"]["schemas"]["InstanceCreateInputRequest"]["properties"][
        "max_price_per_hour"
    ]
    assert re.match(field["pattern"], value)
    InstanceCreateInputSerializer().fields["max_price_per_hour"].run_validation(value)


def test_a_body_that_refuses_unknown_fields_says_so(schema: dict[str, Any]) -> None:
    # The create answers 400 "Unknown field." to any other key: found by fuzzing.
    components = schema["components"]["schemas"]
    assert components["InstanceCreateInputRequest"]["additionalProperties"] is False


def test_lists_that_may_not_be_empty_say_so(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["InstanceCreateInputRequest"]["properties"]["product_names"]["minItems"] == 1
    assert components["HealthCheckInputRequest"]["properties"]["ports"]["minItems"] == 1


@pytest.mark.parametrize("key", ["k", "a b", "x" * 255, "!~", "req-1:2/3"])
def test_an_idempotency_key_the_schema_allows_is_one_the_api_accepts(
    schema: dict[str, Any], key: str
) -> None:
    from instances.idempotency import idempotency_key_validate

    (header,) = schema["paths"]["/api/v1/instances/"]["post"]["parameters"]
    assert header["name"] == "Idempotency-Key"
    assert re.match(header["schema"]["pattern"], key)
    assert idempotency_key_validate(key) == key


@pytest.mark.parametrize("key", ["", " k", "k ", "x" * 256, "ü", "a\tb"])
def test_an_idempotency_key_the_api_rejects_does_not_match(
    schema: dict[str, Any], key: str
) -> None:
    from instances.idempotency import idempotency_key_validate
    from novitai.errors import ValidationFailed

    (header,) = schema["paths"]["/api/v1/instances/"]["post"]["parameters"]
    assert not re.match(header["schema"]["pattern"], key)
    with pytest.raises(ValidationFailed):
        idempotency_key_validate(key)
