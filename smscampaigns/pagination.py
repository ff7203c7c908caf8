from rest_framework.pagination import PageNumberPagination as BasePagination


class PageNumberPagination(BasePagination):
    """``{count, next, previous, results}`` with ``?page=`` and ``?page_size=`` (max 1,000)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000
