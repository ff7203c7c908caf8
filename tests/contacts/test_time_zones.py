"""Recipients' time zones (issue 13): a number in several zones keeps all of them, a
send window opens for it only when open in each, and a contact's zone can be set."""

from datetime import UTC, datetime
from io import StringIO

import pytest

from campaigns.models import Message
from campaigns.sending.launch import campaign_launch
from campaigns.sending.windows import SendWindow, earliest_opening, open_zones
from contacts.imports import contact_import_csv
from contacts.models import Contact
from contacts.phones import is_uncertain_zone, parse_phone, zones_of
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

NINE_TO_EIGHT = SendWindow.from_dict(
    {"start": "09:00", "end": "20:00", "weekdays": [0, 1, 2, 3, 4, 5, 6]}
)


@pytest.mark.parametrize(
    ("number", "zones"),
    [
        # A Moscow mobile: phonenumbers lists every zone of +7 (Russia and
        # Kazakhstan); Moscow is one of them, Almaty no longer stands alone.
        ("+79161234567", {"Europe/Moscow", "Asia/Almaty", "Asia/Vladivostok"}),
        ("+74232123456", {"Asia/Vladivostok"}),  # a Vladivostok landline
        ("+61892123456", {"Australia/Perth", "Australia/Adelaide"}),  # Perth area 08
        ("+61292123456", {"Australia/Sydney"}),  # a Sydney landline
        ("+17015551234", {"America/Denver", "America/North_Dakota/Center"}),
        ("+15415551234", {"America/Los_Angeles"}),
    ],
)
def test_a_number_keeps_every_zone_it_may_be_in(number, zones):
    parsed = zones_of(parse_phone(number).time_zone)

    assert zones <= set(parsed)
    assert parsed == sorted(parsed)


def test_an_australian_mobile_gets_all_australian_zones():
    zones = set(zones_of(parse_phone("+61412345678").time_zone))

    assert {
        "Australia/Perth",
        "Australia/Adelaide",
        "Australia/Brisbane",
        "Australia/Sydney",
    } <= zones
    assert is_uncertain_zone(parse_phone("+61412345678").time_zone)
    assert not is_uncertain_zone(parse_phone("+61292123456").time_zone)


def at(hour: int, minute: int = 0) -> datetime:
    # A Wednesday in June: no DST change near, Sydney UTC+10, Perth UTC+8,
    # Moscow UTC+3, Vladivostok UTC+10, Denver UTC-6, North Dakota Center UTC-5.
    return datetime(2026, 6, 10, hour, minute, tzinfo=UTC)


def test_a_window_is_open_for_a_zone_set_only_when_open_in_every_zone():
    perth_and_sydney = "Australia/Perth Australia/Sydney"
    # 23:30 UTC: 09:30 in Sydney, 07:30 in Perth: not yet.
    assert perth_and_sydney not in open_zones(
        NINE_TO_EIGHT, [perth_and_sydney], at(23, 30)
    )
    # 01:00 UTC: 11:00 Sydney, 09:00 Perth: both open.
    assert perth_and_sydney in open_zones(NINE_TO_EIGHT, [perth_and_sydney], at(1))
    # 10:30 UTC: 20:30 Sydney (closed), 18:30 Perth: closed.
    assert perth_and_sydney not in open_zones(
        NINE_TO_EIGHT, [perth_and_sydney], at(10, 30)
    )
    assert earliest_opening(NINE_TO_EIGHT, [perth_and_sydney], at(23, 30)) == at(
        1
    ).replace(day=11)


def test_us_multi_zone_area_code_waits_for_the_later_zone():
    north_dakota = parse_phone("+17015551234").time_zone
    # 14:30 UTC: 08:30 in Denver, 09:30 in North Dakota Center.
    assert open_zones(NINE_TO_EIGHT, [north_dakota], at(14, 30)) == set()
    assert earliest_opening(NINE_TO_EIGHT, [north_dakota], at(14, 30)) == at(15)
    # 01:30 UTC: 19:30 Denver, 20:30 North Dakota: the earlier zone has closed.
    assert open_zones(NINE_TO_EIGHT, [north_dakota], at(1, 30)) == set()


def test_a_moscow_mobile_is_texted_only_when_every_zone_of_it_is_open():
    moscow_mobile = parse_phone("+79161234567").time_zone
    moscow = "Europe/Moscow"
    # 12:00 UTC: 15:00 in Moscow, but 00:00 in Kamchatka.
    assert open_zones(NINE_TO_EIGHT, [moscow_mobile, moscow], at(12)) == {moscow}
    # Open everywhere from the westernmost zone's 09:00 (Bucharest, UTC+3 in
    # summer: 06:00 UTC) to the easternmost's 20:00 (Anadyr, UTC+12: 08:00 UTC).
    opening = earliest_opening(NINE_TO_EIGHT, [moscow_mobile], at(12))
    assert opening == at(6).replace(day=11)
    assert moscow_mobile in open_zones(NINE_TO_EIGHT, [moscow_mobile], opening)
    assert moscow_mobile not in open_zones(
        NINE_TO_EIGHT, [moscow_mobile], at(8, 1).replace(day=11)
    )


def test_zones_whose_windows_never_overlap_follow_the_fallback_zone():
    window = SendWindow.from_dict(
        {
            "start": "09:00",
            "end": "10:00",
            "weekdays": [0, 1, 2, 3, 4, 5, 6],
            "time_zone": "Europe/Moscow",
        }
    )
    far_apart = "America/Los_Angeles Asia/Vladivostok"
    # 06:30 UTC is 09:30 in Moscow (the fallback): open, rather than never.
    assert open_zones(window, [far_apart], at(6, 30)) == {far_apart}
    assert earliest_opening(window, [far_apart], at(7)) == at(6).replace(day=11)


@pytest.mark.django_db
def test_a_contact_zone_set_by_hand_replaces_the_numbers_zones():
    contact = ContactFactory(phone="+79161234567")
    assert len(zones_of(contact.time_zone)) > 1

    contact.time_zone_set = "Asia/Vladivostok"
    contact.save(update_fields=["time_zone_set"])
    contact.refresh_from_db()
    assert contact.time_zone == "Asia/Vladivostok"

    contact.time_zone_set = ""
    contact.save()
    contact.refresh_from_db()
    assert "Europe/Moscow" in zones_of(contact.time_zone)


@pytest.mark.django_db
def test_the_launch_copies_all_zones_and_windows_filter_them_in_sql():
    contact_list = ContactListFactory()
    sydney = ContactFactory(phone="+61292123456")
    mobile = ContactFactory(phone="+61412345678")
    set_by_hand = ContactFactory(phone="+61412345679", time_zone_set="Australia/Perth")
    for contact in (sydney, mobile, set_by_hand):
        contact.lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list])

    assert campaign_launch(campaign=campaign) == 3

    assert dict(Message.objects.values_list("to", "time_zone")) == {
        sydney.phone: "Australia/Sydney",
        mobile.phone: mobile.time_zone,
        set_by_hand.phone: "Australia/Perth",
    }
    assert len(zones_of(mobile.time_zone)) > 1
    # 23:30 UTC: 09:30 in Sydney, 07:30 in Perth (the mobile may be there).
    zones = open_zones(
        NINE_TO_EIGHT,
        Message.objects.values_list("time_zone", flat=True).distinct(),
        at(23, 30),
    )
    sendable = Message.objects.filter(time_zone__in=zones)

    assert list(sendable.values_list("to", flat=True)) == ["+61292123456"]
    # 03:00 UTC: 09:30 on the Cocos Islands (UTC+6:30, one of an Australian
    # mobile's zones), 11:00 in Perth, 13:00 in Sydney: everyone.
    zones = open_zones(
        NINE_TO_EIGHT,
        Message.objects.values_list("time_zone", flat=True).distinct(),
        at(3),
    )
    assert Message.objects.filter(time_zone__in=zones).count() == 3


@pytest.mark.django_db
def test_import_column_time_zone_sets_the_zone():
    csv_text = (
        "phone,first_name,Time Zone\n"
        "+79161234567,Olga,Europe/Moscow\n"
        "+61412345678,Jack,\n"
        "+61412345679,Bad,Mars/Olympus\n"
    )

    result = contact_import_csv(file=StringIO(csv_text))

    olga = Contact.objects.get(first_name="Olga")
    assert (olga.time_zone_set, olga.time_zone) == ("Europe/Moscow", "Europe/Moscow")
    assert "time_zone" not in olga.attributes
    jack = Contact.objects.get(first_name="Jack")
    assert jack.time_zone_set == ""
    assert "Australia/Perth" in zones_of(jack.time_zone)
    [error] = result.errors
    assert "Mars/Olympus is not a known time zone" in error.error

    # Imported again with another zone: updated in bulk, still in step.
    contact_import_csv(file=StringIO("phone,time_zone\n+79161234567,Asia/Omsk\n"))
    olga.refresh_from_db()
    assert (olga.time_zone_set, olga.time_zone) == ("Asia/Omsk", "Asia/Omsk")


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    from smscampaigns.models import ApiKey, Scope

    _, raw = ApiKey.generate(name="tests", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


@pytest.mark.django_db
def test_the_api_sets_and_clears_the_zone(api):
    contact = ContactFactory(phone="+61412345678")
    url = f"/api/v1/contacts/{contact.pk}/"

    before = api.get(url).json()
    assert before["time_zone"] == ""
    assert "Australia/Perth" in before["time_zones"]

    response = api.patch(url, {"time_zone": "Australia/Perth"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["time_zones"] == ["Australia/Perth"]

    refused = api.patch(url, {"time_zone": "Perth"}, format="json")
    assert refused.status_code == 400
    assert "not a known time zone" in str(refused.json())

    cleared = api.patch(url, {"time_zone": ""}, format="json").json()
    assert len(cleared["time_zones"]) > 1


@pytest.mark.django_db
def test_the_admin_sets_the_zone(admin_client):
    from django.urls import reverse

    contact = ContactFactory(phone="+79161234567", first_name="Olga")
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="time_zone_set"' in page

    response = admin_client.post(
        url,
        {
            "phone": contact.phone,
            "first_name": "Olga",
            "last_name": "",
            "attributes": "{}",
            "time_zone_set": "Europe/Moscow",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "consent_events-TOTAL_FORMS": "0",
            "consent_events-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    contact.refresh_from_db()
    assert contact.time_zone == "Europe/Moscow"
