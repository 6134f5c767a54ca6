"""Page-number pagination with a bounded, client-chosen page size.

`page` and `page_size` are validated (DRF itself ignores a bad page_size, caps a large one,
and takes `?page=` for the first page): a bad value is a 400 validation_error naming the
parameter. A page past the last one stays a 404.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from novitai.errors import ValidationFailed

_POSITIVE_INT = re.compile(r"^[1-9][0-9]*$")


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200
    invalid_page_message = "Page {page_number} does not exist: {message}"

    def paginate_queryset(
        self, queryset: QuerySet[Any, Any] | Sequence[Any], request: Request, view: Any = None
    ) -> list[Any] | None:
        params = request.query_params
        errors: dict[str, list[str]] = {}
        page = params.get(self.page_query_param)
        if (
            page is not None
            and page not in self.last_page_strings
            and not _POSITIVE_INT.match(page)
        ):
            errors[self.page_query_param] = ["A page number: an integer, 1 or more."]
        size = params.get(self.page_size_query_param)
        if size is not None and not (
            _POSITIVE_INT.match(size) and len(size) <= 3 and int(size) <= self.max_page_size
        ):
            errors[self.page_size_query_param] = [f"An integer from 1 to {self.max_page_size}."]
        if errors:
            raise ValidationFailed(details=errors)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = "A page number, from 1; past the last page: 404."
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                }
                parameter["description"] = f"Results per page, 1-{self.max_page_size}."
        return parameters
