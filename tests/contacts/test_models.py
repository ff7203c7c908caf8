import pytest

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from contacts.models import ConsentEvent, Contact, ListMembership, Source, Suppression
from contacts.phones import InvalidPhoneNumber
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


def test_contact_phone_is_stored_in_e164_with_country_and_time_zone():
    contact = Contact.objects.create(phone="(212) 555-0199", first_name="Ada")
    contact.refresh_from_db()
    assert contact.phone == "+12125550199"
    assert contact.country == "US"
    assert contact.time_zone == "America/New_York"


def test_duplicate_phone_is_refused_whatever_its_format():
    Contact.objects.create(phone="+14155550123")
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(phone="415 555 0123")


def test_invalid_phone_is_refused_on_save():
    with pytest.raises(InvalidPhoneNumber):
        Contact.objects.create(phone="555-1234-not-a-number")
    assert Contact.objects.count() == 0


def test_full_clean_normalizes_and_reports_invalid_numbers():
    contact = Contact(phone="0044 7911 123456")
    contact.full_clean()
    assert contact.phone == "+447911123456"

    with pytest.raises(ValidationError) as exc_info:
        Contact(phone="12345").full_clean()
    assert "12345 is not a valid phone number" in str(
        exc_info.value.message_dict["phone"]
    )


def test_changing_the_number_updates_country_and_time_zone():
    contact = ContactFactory(phone="+14155550123")
    contact.phone = "+33612345678"
    contact.save(update_fields=["phone"])
    contact.refresh_from_db()
    assert (contact.country, contact.time_zone) == ("FR", "Europe/Paris")


def test_a_contact_is_in_a_list_once_and_membership_records_how():
    contact, contact_list = ContactFactory(), ContactListFactory()
    ListMembership.objects.create(
        contact=contact, contact_list=contact_list, source=Source.IMPORT
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        ListMembership.objects.create(contact=contact, contact_list=contact_list)
    assert list(contact.lists.all()) == [contact_list]
    assert contact.memberships.get().source == Source.IMPORT


def test_reachable_excludes_opted_out_and_suppressed_numbers():
    keep = ContactFactory()
    opted_out = ContactFactory()
    opted_out.opted_out_at = opted_out.created_at
    opted_out.save()
    suppressed = ContactFactory()
    Suppression.objects.create(
        phone=suppressed.phone, reason=Suppression.Reason.OPT_OUT
    )
    assert list(Contact.objects.reachable()) == [keep]
    assert list(Contact.objects.opted_out()) == [opted_out]


def test_in_lists_returns_a_contact_in_several_lists_once():
    first, second = ContactListFactory(), ContactListFactory()
    both = ContactFactory()
    both.lists.add(first, second)
    only_second = ContactFactory()
    only_second.lists.add(second)
    ContactFactory()  # in no list
    assert sorted(c.pk for c in Contact.objects.in_lists([first, second])) == sorted(
        [both.pk, only_second.pk]
    )


def test_search_matches_phone_digits_and_names():
    ada = ContactFactory(first_name="Ada", last_name="Lovelace", phone="+14155550123")
    ContactFactory(first_name="Alan", last_name="Turing")
    assert list(Contact.objects.search("lovelace")) == [ada]
    assert list(Contact.objects.search("5550123")) == [ada]


def test_suppression_stores_e164_and_is_unique():
    Suppression.objects.create(phone="415-555-0123")
    assert Suppression.objects.get().phone == "+14155550123"
    with pytest.raises(IntegrityError), transaction.atomic():
        Suppression.objects.create(phone="+14155550123")


def test_consent_events_are_append_only():
    contact = ContactFactory()
    event = ConsentEvent.objects.create(
        phone=contact.phone,
        contact=contact,
        kind=ConsentEvent.Kind.OPT_OUT,
        source=Source.KEYWORD,
        text="STOP",
    )
    event.text = "changed"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        ConsentEvent.objects.all().update(text="x")
    with pytest.raises(TypeError):
        ConsentEvent.objects.all().delete()
    assert ConsentEvent.objects.get().text == "STOP"


def test_consent_history_outlives_the_contact():
    contact = ContactFactory()
    ConsentEvent.objects.create(
        phone=contact.phone, contact=contact, kind="opt_out", source=Source.API
    )
    contact.delete()
    event = ConsentEvent.objects.get()
    assert event.contact is None
    assert event.phone.startswith("+1")


def test_looking_up_an_invalid_number_finds_nothing_instead_of_failing():
    assert not Contact.objects.filter(phone="+16051234567").exists()
    assert not Suppression.objects.filter(phone="not a number").exists()
