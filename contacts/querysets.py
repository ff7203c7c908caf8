import re
from typing import Self

from django.db import models, transaction
from django.db.models.functions import Coalesce

from .phones import InvalidPhoneNumber, mask_phone, parse_phone

#: Digits with the punctuation people write numbers with: part of a phone number.
_PHONE_TEXT = re.compile(r"^\+?[\d\s().\-/]*\d[\d\s().\-/]*$")
_NOT_DIGIT = re.compile(r"\D")


class ContactQuerySet(models.QuerySet):
    # Deleting contacts or changing their numbers keeps the opt-outs of those
    # numbers (contacts.services.opted_out_numbers_keep), from any caller: the API,
    # the admin, an import or a shell.
    def delete(self):
        from .services import (
            KEPT_ON_DELETE,
            message_contacts_lock,
            opted_out_numbers_keep,
        )

        with transaction.atomic(using=self.db):
            message_contacts_lock(exclusive=True, using=self.db)
            opted_out_numbers_keep(contacts=self, note=KEPT_ON_DELETE)
            return super().delete()

    delete.alters_data = True
    delete.queryset_only = True

    def update(self, **kwargs) -> int:
        if "phone" not in kwargs:
            return super().update(**kwargs)
        from .services import KEPT_ON_NUMBER_CHANGE, opted_out_numbers_keep

        with transaction.atomic(using=self.db):
            opted_out_numbers_keep(contacts=self, note=KEPT_ON_NUMBER_CHANGE)
            return super().update(**kwargs)

    update.alters_data = True

    def opted_out(self) -> Self:
        return self.filter(opted_out_at__isnull=False)

    def reachable(self) -> Self:
        """Contacts who may get marketing: not opted out and not on the suppression list."""
        from .models import Suppression

        return self.filter(opted_out_at__isnull=True).exclude(
            phone__in=Suppression.objects.values("phone")
        )

    def in_lists(self, lists) -> Self:
        """Contacts in any of ``lists`` (lists, ids or a queryset), each once.

        A semi-join (``EXISTS``) on the memberships rather than ``DISTINCT`` over a
        join: on a million contacts, DISTINCT sorts the whole audience before it
        can count it or return its first contacts by id.
        """
        from .models import ListMembership

        member = ListMembership.objects.filter(
            contact=models.OuterRef("pk"), contact_list__in=lists
        )
        return self.filter(models.Exists(member))

    def search(self, text: str) -> Self:
        """Contacts matching ``text`` as a person types it.

        A whole phone number in any format (``(415) 555-0123``, ``+44 7911 123456``)
        is looked up in the phone index. Digits with phone punctuation match part
        of a number (``555-01`` finds ``+14155550123``). Other words must each be
        part of the first or last name (``ada love`` finds Ada Lovelace): a number
        holds no letters, so it is not searched for them.
        """
        text = text.strip()
        if not text:
            return self
        try:
            return self.filter(phone=parse_phone(text).e164)
        except InvalidPhoneNumber:
            pass
        words = [text] if _PHONE_TEXT.match(text) else text.split()
        queryset = self
        for word in words:
            if _PHONE_TEXT.match(word):
                plus = "+" if word.startswith("+") else ""
                queryset = queryset.filter(
                    phone__contains=plus + _NOT_DIGIT.sub("", word)
                )
            else:
                queryset = queryset.filter(
                    models.Q(first_name__icontains=word)
                    | models.Q(last_name__icontains=word)
                )
        return queryset


def member_count() -> Coalesce:
    """Each list's number of members, to annotate contact lists with
    (``ContactList.objects.annotate(member_count=member_count())``).

    A count per list from the (contact_list, contact) index, for the lists fetched
    only: ``Count("memberships")`` groups a join over every membership of every
    list (0.3 s for 1.2 million), and the admin's paginator counts that again.
    """
    from .models import ListMembership

    members = (
        ListMembership.objects.filter(contact_list=models.OuterRef("pk"))
        .order_by()
        .values("contact_list")
        .annotate(n=models.Count("*"))
        .values("n")
    )
    return Coalesce(models.Subquery(members, output_field=models.IntegerField()), 0)


class AppendOnlyQuerySet(models.QuerySet):
    """Rows that form an audit trail: created, never changed or deleted in bulk."""

    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise TypeError(f"{self.model.__name__} rows are append-only")


class SuppressionProtected(ValueError):
    """An opt-out suppression: only the person can lift it, by opting back in."""


class SuppressionQuerySet(models.QuerySet):
    """Suppressions; an opt-out among them is never deleted or rewritten in bulk.

    Only an opt-in lifts an opt-out (:meth:`lift_opt_outs`, called by
    ``contacts.services.contact_opt_in`` with the ConsentEvent that proves it).
    """

    def delete(self):
        self._refuse_opt_outs("deleted")
        return super().delete()

    delete.alters_data = True
    delete.queryset_only = True

    def update(self, **kwargs) -> int:
        if {"phone", "reason"} & kwargs.keys():
            self._refuse_opt_outs("changed")
        return super().update(**kwargs)

    update.alters_data = True

    def lift_opt_outs(self) -> int:
        """Delete the opt-out suppressions in this set; return how many."""
        from .models import Suppression

        opt_outs = self.filter(reason=Suppression.Reason.OPT_OUT)
        return models.QuerySet.delete(opt_outs)[0]

    def _refuse_opt_outs(self, verb: str) -> None:
        from .models import Suppression

        phone = (
            self.filter(reason=Suppression.Reason.OPT_OUT)
            .values_list("phone", flat=True)
            .first()
        )
        if phone is not None:
            raise SuppressionProtected(
                f"{mask_phone(phone)} opted out: its suppression cannot be {verb}; "
                "only an opt-in (contact_opt_in) lifts it."
            )
