from typing import Self

from django.db import models


class ContactQuerySet(models.QuerySet):
    def opted_out(self) -> Self:
        return self.filter(opted_out_at__isnull=False)

    def reachable(self) -> Self:
        """Contacts who may get marketing: not opted out and not on the suppression list."""
        from .models import Suppression

        return self.filter(opted_out_at__isnull=True).exclude(
            phone__in=Suppression.objects.values("phone")
        )

    def in_lists(self, lists) -> Self:
        """Contacts in any of ``lists``, each once."""
        return self.filter(memberships__contact_list__in=lists).distinct()

    def search(self, text: str) -> Self:
        text = text.strip()
        if not text:
            return self
        return self.filter(
            models.Q(phone__contains=text)
            | models.Q(first_name__icontains=text)
            | models.Q(last_name__icontains=text)
        )


class AppendOnlyQuerySet(models.QuerySet):
    """Rows that form an audit trail: created, never changed or deleted in bulk."""

    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise TypeError(f"{self.model.__name__} rows are append-only")
