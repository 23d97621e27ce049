"""Page-numbered lists: `?page=2&page_size=50`, at most 100 a page."""

from rest_framework.pagination import PageNumberPagination


class BookingPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
