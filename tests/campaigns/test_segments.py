"""Segments: each condition, all/any, validation, and campaigns whose audience is
lists and segments (counted, previewed and launched in SQL)."""

from datetime import timedelta

import pytest

from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign, Message
from campaigns.preview import campaign_audience, campaign_estimate
from campaigns.segments import (
    Segment,
    SegmentInUse,
    clean_conditions,
    conditions_q,
    describe_condition,
    segment_counts,
    segment_delete,
)
from campaigns.sending.launch import campaign_launch
from campaigns.writes import campaign_create
from contacts.models import ConsentEvent, Contact, Suppression
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db


def matching(*conditions: dict, match: str = "all") -> set[str]:
    """First names of the contacts the conditions match."""
    q = conditions_q(clean_conditions(list(conditions)), match=match)
    return set(Contact.objects.filter(q).values_list("first_name", flat=True))


@pytest.fixture
def people():
    """Ann (US, Austin, 34, in VIP), Bob (GB, "London", "41" as text, VIP), Cid
    (US, no attributes, "n/a" age), Dee (US, city "austin", age 19.5)."""
    vip = ContactListFactory(name="VIP")
    ann = ContactFactory(
        phone="+14155550101",
        first_name="Ann",
        last_name="Lee",
        attributes={"city": "Austin", "age": 34, "plan": "gold"},
    )
    bob = ContactFactory(
        phone="+447400123456",
        first_name="Bob",
        last_name="Ray",
        attributes={"city": "London", "age": "41"},
    )
    cid = ContactFactory(
        phone="+14155550103", first_name="Cid", last_name="", attributes={"age": "n/a"}
    )
    dee = ContactFactory(
        phone="+14155550104",
        first_name="Dee",
        last_name="Diaz",
        attributes={"city": "austin", "age": 19.5, "plan": ""},
    )
    ann.lists.add(vip)
    bob.lists.add(vip)
    return {"vip": vip, "ann": ann, "bob": bob, "cid": cid, "dee": dee}


# --- Conditions ---------------------------------------------------------------------


def test_member_of_a_list_or_not(people):
    vip = people["vip"].pk
    assert matching({"type": "list", "list": vip}) == {"Ann", "Bob"}
    assert matching({"type": "list", "list": vip, "negate": True}) == {"Cid", "Dee"}


def test_country(people):
    assert matching({"type": "country", "countries": ["gb"]}) == {"Bob"}
    assert matching({"type": "country", "countries": ["US", "GB"]}) == {
        "Ann",
        "Bob",
        "Cid",
        "Dee",
    }
    assert matching({"type": "country", "countries": ["US"], "negate": True}) == {"Bob"}


def test_contact_fields_equal_contain_and_are_set(people):
    assert matching(
        {"type": "field", "field": "first_name", "op": "equals", "value": "ann"}
    ) == {"Ann"}
    assert matching(
        {"type": "field", "field": "last_name", "op": "contains", "value": "A"}
    ) == {"Bob", "Dee"}
    assert matching({"type": "field", "field": "last_name", "op": "is_set"}) == {
        "Ann",
        "Bob",
        "Dee",
    }
    assert matching(
        {"type": "field", "field": "last_name", "op": "is_set", "negate": True}
    ) == {"Cid"}
    assert matching(
        {"type": "field", "field": "phone", "op": "contains", "value": "+44"}
    ) == {"Bob"}


def test_attributes_equal_ignoring_case_and_contain(people):
    assert matching(
        {"type": "attribute", "key": "city", "op": "equals", "value": "AUSTIN"}
    ) == {"Ann", "Dee"}
    assert matching(
        {"type": "attribute", "key": "city", "op": "contains", "value": "ond"}
    ) == {"Bob"}
    # A number equals its text.
    assert matching(
        {"type": "attribute", "key": "age", "op": "equals", "value": "34"}
    ) == {"Ann"}


def test_a_negated_attribute_test_matches_contacts_without_it(people):
    assert matching(
        {
            "type": "attribute",
            "key": "city",
            "op": "equals",
            "value": "austin",
            "negate": True,
        }
    ) == {"Bob", "Cid"}


def test_attribute_is_set_means_present_and_not_empty(people):
    assert matching({"type": "attribute", "key": "plan", "op": "is_set"}) == {"Ann"}
    assert matching(
        {"type": "attribute", "key": "plan", "op": "is_set", "negate": True}
    ) == {"Bob", "Cid", "Dee"}


def test_attribute_number_compare_reads_numbers_and_numeric_texts(people):
    """CSV imports store "41" as text: it compares as 41; "n/a" never compares."""

    def age(op: str, value, negate: bool = False) -> set[str]:
        condition = {"type": "attribute", "key": "age", "op": op, "value": value}
        if negate:
            condition["negate"] = True
        return matching(condition)

    assert age("gt", 30) == {"Ann", "Bob"}
    assert age("gte", 41) == {"Bob"}
    assert age("lt", 20) == {"Dee"}
    assert age("lte", "34") == {"Ann", "Dee"}
    # Not a number is not "> 30" either: the negation includes it.
    assert age("gt", 30, negate=True) == {"Cid", "Dee"}


def test_opted_in_before_or_after_a_day(people):
    now = timezone.now()
    Contact.objects.filter(pk=people["ann"].pk).update(
        created_at=now - timedelta(days=100)
    )
    Contact.objects.filter(pk=people["bob"].pk).update(
        created_at=now - timedelta(days=100)
    )
    # Bob opted back in recently: that is his opt-in time now.
    ConsentEvent.objects.create(
        phone=people["bob"].phone,
        contact=people["bob"],
        kind=ConsentEvent.Kind.OPT_IN,
        source="keyword",
        created_at=now - timedelta(days=2),
    )
    day = (now - timedelta(days=30)).date().isoformat()

    assert matching({"type": "opted_in", "op": "before", "date": day}) == {"Ann"}
    assert matching({"type": "opted_in", "op": "after", "date": day}) == {
        "Bob",
        "Cid",
        "Dee",
    }


def test_received_a_campaign_or_not(people):
    spring = CampaignFactory(name="Spring")
    MessageFactory(campaign=spring, contact=people["ann"], status="delivered")
    MessageFactory(campaign=spring, contact=people["bob"], status="sent")
    # Skipped or refused: never received.
    MessageFactory(
        campaign=spring, contact=people["cid"], status="failed", error_code="opted_out"
    )
    MessageFactory(campaign=spring, contact=people["dee"], status="queued")

    assert matching({"type": "received", "campaign": spring.pk}) == {"Ann", "Bob"}
    assert matching({"type": "received", "campaign": spring.pk, "negate": True}) == {
        "Cid",
        "Dee",
    }


def test_clicked_in_a_campaign_or_not(people):
    spring = CampaignFactory(name="Spring")
    now = timezone.now()
    MessageFactory(
        campaign=spring, contact=people["ann"], status="delivered", first_clicked_at=now
    )
    MessageFactory(campaign=spring, contact=people["bob"], status="delivered")
    # A click on another campaign's link is not a click on this one.
    MessageFactory(contact=people["cid"], status="delivered", first_clicked_at=now)

    assert matching({"type": "clicked", "campaign": spring.pk}) == {"Ann"}
    assert matching({"type": "clicked", "campaign": spring.pk, "negate": True}) == {
        "Bob",
        "Cid",
        "Dee",
    }
    assert describe_condition({"type": "clicked", "campaign": spring.pk}) == (
        "Clicked a link in campaign “Spring”"
    )


def test_no_marketing_message_in_the_last_days(people):
    now = timezone.now()
    MessageFactory(contact=people["ann"], status="delivered", handed_at=now)
    MessageFactory(
        contact=people["bob"], status="delivered", handed_at=now - timedelta(days=40)
    )
    # Replies and test sends are not marketing.
    MessageFactory(
        campaign=None,
        kind="reply",
        provider="locmem",
        contact=people["cid"],
        status="delivered",
    )
    MessageFactory(
        campaign=None,
        provider="locmem",
        kind="test",
        contact=people["cid"],
        status="delivered",
        handed_at=now,
    )

    assert matching({"type": "quiet", "days": 30}) == {"Bob", "Cid", "Dee"}
    assert matching({"type": "quiet", "days": 30, "negate": True}) == {"Ann"}


def test_all_or_any(people):
    us = {"type": "country", "countries": ["US"]}
    vip = {"type": "list", "list": people["vip"].pk}
    assert matching(us, vip) == {"Ann"}
    assert matching(us, vip, match="any") == {"Ann", "Bob", "Cid", "Dee"}


def test_three_conditions_count_in_one_query(people):
    Suppression.objects.create(phone=people["dee"].phone)
    segment = Segment.objects.create(
        name="Austin",
        conditions=clean_conditions(
            [
                {"type": "country", "countries": ["US"]},
                {"type": "attribute", "key": "city", "op": "equals", "value": "austin"},
                {"type": "quiet", "days": 7},
            ]
        ),
    )
    with CaptureQueriesContext(connection) as queries:
        counts = segment_counts(segment.q())
    assert counts == {"contacts": 2, "reachable": 1}
    assert len(queries) == 1


# --- Validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ([], "at least one condition"),
        ("country", "must be a list"),
        ([{"type": "age"}], "Condition 1: “type” must be one of"),
        ([{"type": "country", "countries": ["USA"]}], "two-letter country codes"),
        (
            [{"type": "attribute", "key": "age", "op": "gt", "value": "old"}],
            "must be a number",
        ),
        ([{"type": "field", "field": "email", "op": "is_set"}], "“field” must be"),
        ([{"type": "opted_in", "op": "after", "date": "soon"}], "YYYY-MM-DD"),
        ([{"type": "quiet", "days": 0}], "from 1 to 3650"),
        ([{"type": "list", "list": 999999}], "no contact list with id 999999"),
        ([{"type": "received", "campaign": 999999}], "no campaign with id 999999"),
        ([{"type": "clicked", "campaign": 999999}], "no campaign with id 999999"),
        ([{"type": "country", "countries": ["US"], "city": "x"}], "Unknown key"),
        ([{"type": "quiet", "days": 7}] * 21, "at most 20 conditions"),
    ],
)
def test_bad_conditions_are_refused_saying_why(conditions, message):
    with pytest.raises(ValidationError) as caught:
        clean_conditions(conditions)
    assert message in " ".join(caught.value.messages)


def test_conditions_are_kept_in_normal_form():
    assert clean_conditions(
        [
            {"type": "country", "countries": ["us", "ca", "us"], "negate": False},
            {"type": "attribute", "key": "age", "op": "gte", "value": "21"},
        ]
    ) == [
        {"type": "country", "countries": ["CA", "US"]},
        {"type": "attribute", "key": "age", "op": "gte", "value": 21.0},
    ]


def test_conditions_in_words(people):
    assert describe_condition({"type": "list", "list": people["vip"].pk}) == (
        "In list “VIP”"
    )
    assert describe_condition(
        {
            "type": "attribute",
            "key": "city",
            "op": "equals",
            "value": "Austin",
            "negate": True,
        }
    ) == ("Not: Attribute “city” is “Austin”")
    assert describe_condition({"type": "quiet", "days": 30}) == (
        "No marketing message in the last 30 days"
    )


# --- Campaigns with segments --------------------------------------------------------


@pytest.fixture
def austin(people):
    return Segment.objects.create(
        name="Austin",
        conditions=[
            {"type": "attribute", "key": "city", "op": "equals", "value": "austin"}
        ],
    )


def test_a_campaign_texts_its_lists_and_segments_once_each(people, austin):
    Suppression.objects.create(phone=people["bob"].phone)
    people["dee"].opted_out_at = timezone.now()
    people["dee"].save()
    campaign = CampaignFactory(lists=[people["vip"]], provider="locmem")
    campaign.segments.add(austin)

    assert set(campaign_audience(campaign).values_list("first_name", flat=True)) == {
        "Ann"
    }
    assert campaign_launch(campaign=campaign) == 1
    message = Message.objects.get(campaign=campaign)
    assert message.contact == people["ann"]


def test_a_campaign_with_only_a_segment_launches_who_matches(people, austin):
    campaign = CampaignFactory(provider="locmem")
    campaign.segments.add(austin)

    assert campaign_launch(campaign=campaign) == 2
    assert set(
        Message.objects.filter(campaign=campaign).values_list(
            "contact__first_name", flat=True
        )
    ) == {"Ann", "Dee"}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_launch_evaluates_the_segment_in_one_statement(people, austin):
    campaign = CampaignFactory(provider="locmem")
    campaign.segments.add(austin)
    with CaptureQueriesContext(connection) as queries:
        campaign_launch(campaign=campaign)
    inserts = [q["sql"] for q in queries if q["sql"].lstrip().startswith("INSERT")]
    assert len(inserts) == 1
    assert "SELECT" in inserts[0]
    # No contact row was read into Python.
    reads = [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().startswith("SELECT") and '"contacts_contact"' in q["sql"]
    ]
    assert reads == []


def test_a_second_launch_adds_only_new_matches(people, austin):
    campaign = CampaignFactory(provider="locmem")
    campaign.segments.add(austin)
    assert campaign_launch(campaign=campaign) == 2
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED)
    ContactFactory(first_name="Eve", attributes={"city": "Austin"})
    campaign.refresh_from_db()
    assert campaign_launch(campaign=campaign) == 1


def test_the_estimate_counts_segments_and_duplicates(people, austin):
    estimate = campaign_estimate(
        body="Hi", lists=[people["vip"]], segments=[austin], provider="locmem"
    )
    # VIP: Ann, Bob; Austin: Ann, Dee.
    assert (estimate.in_lists, estimate.in_segments) == (2, 2)
    assert (estimate.contacts, estimate.duplicates, estimate.recipients) == (3, 1, 3)


def test_a_campaign_created_with_segments_keeps_them(people, austin):
    campaign = campaign_create(
        name="Austin", body="Hi {first_name}", provider="locmem", segments=[austin]
    )
    assert list(campaign.segments.all()) == [austin]
    assert list(campaign.lists.all()) == []


def test_a_segment_used_by_an_unfinished_campaign_cannot_be_deleted(austin):
    campaign = CampaignFactory()
    campaign.segments.add(austin)
    with pytest.raises(SegmentInUse, match=campaign.name):
        segment_delete(segment=austin)

    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)
    segment_delete(segment=austin)
    assert not Segment.objects.exists()
