"""Changelists over tables of a million rows and more: a count that stops at 10,001
rows, and a result that fits on one page listed without searching for it twice."""

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most :attr:`cap` rows (the ids of the first ``cap + 1`` matches)
    instead of every matching row: beyond that the page says "more than 10,000",
    lists the first ``cap / per_page`` pages, and asks to filter or search.

    The changelist's templates read :attr:`capped` and :attr:`count_display` (see
    ``admin/campaigns/message/pagination.html`` and ``search_form.html``).
    """

    cap = 10_000

    @cached_property
    def _ids(self) -> list:
        # Ids rather than count(*): no column or per-row annotation is read, and a
        # result that fits on one page can then be listed by id (see
        # CappedCountChangeList) instead of being searched for a second time.
        rows = self.object_list.order_by().values_list("pk", flat=True)
        return list(rows[: self.cap + 1])

    @cached_property
    def count(self) -> int:
        return min(len(self._ids), self.cap)

    @property
    def capped(self) -> bool:
        return len(self._ids) > self.cap

    @property
    def count_display(self) -> str:
        return f"{self.count:,}"

    @property
    def few_ids(self) -> list | None:
        """The id of every matching row when they all fit on one page, else None."""
        return self._ids if len(self._ids) <= self.per_page else None


class CappedCountChangeList(ChangeList):
    """A changelist whose paginator is a :class:`CappedCountPaginator`: when the
    count found every match (one page or less), the page lists them by id.

    A search for a rare name reads the whole table once to count; the admin would
    read it again to list the few rows found.
    """

    def get_results(self, request) -> None:
        super().get_results(request)
        ids = getattr(self.paginator, "few_ids", None)
        if ids is not None:
            self.result_list = self.queryset.filter(pk__in=ids)
