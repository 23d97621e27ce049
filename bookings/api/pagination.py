"""Page-numbered lists: `?page=2&page_size=50`, at most 100 a page. Unlike DRF's default, a
page or page size that cannot be read is a 400 (DRF would silently use the defaults)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


def positive_int(request: Any, name: str) -> int | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    raw = values[-1]
    if len(values) > 1 or not (raw.isascii() and raw.isdigit() and raw.strip("0")):
        raise ValidationError({name: ["Give one positive whole number."]})
    return int(raw) if len(raw) < 100 else None  # a huge page number is just out of range


class BookingPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        positive_int(request, self.page_query_param)
        positive_int(request, self.page_size_query_param)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Results per page, 1 to {self.max_page_size}."
        return parameters
