"""campaign_estimate: the audience and cost the composer and confirmation pages show."""

from decimal import Decimal

import pytest

from django.test import override_settings
from django.utils import timezone

from campaigns.preview import ESTIMATE_SAMPLE, campaign_estimate, format_money
from contacts.models import Suppression
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

PRICES = {"locmem": Decimal("0.01")}


@pytest.fixture
def lists():
    first, second = ContactListFactory(), ContactListFactory()
    ann = ContactFactory(phone="+12065550100", first_name="Ann")
    bob = ContactFactory(phone="+12065550101", first_name="Bob")
    gone = ContactFactory(phone="+12065550102", opted_out_at=timezone.now())
    blocked = ContactFactory(phone="+12065550103")
    Suppression.objects.create(phone=blocked.phone)
    for contact in (ann, bob, gone, blocked):
        contact.lists.add(first)
    ann.lists.add(second)  # in both lists: texted once
    return [first, second]


@override_settings(SMS_PRICE_PER_SEGMENT=PRICES)
def test_counts_every_exclusion_and_prices_the_rest(lists):
    estimate = campaign_estimate(body="Sale today", lists=lists, provider="locmem")
    assert (estimate.in_lists, estimate.contacts, estimate.duplicates) == (5, 4, 1)
    assert (estimate.opted_out, estimate.suppressed, estimate.excluded) == (1, 1, 2)
    assert estimate.recipients == 2
    assert (estimate.segments, estimate.encoding, estimate.exact) == (2, "gsm7", True)
    assert estimate.cost == Decimal("0.02")


@override_settings(SMS_PRICE_PER_SEGMENT=PRICES)
def test_the_footer_and_unicode_are_counted(lists):
    body = "Sale today 🎉 " + "x" * 40
    plain = campaign_estimate(body=body, lists=lists, provider="locmem")
    footed = campaign_estimate(
        body=body,
        lists=lists,
        provider="locmem",
        opt_out_footer="Reply STOP to opt out",
    )
    assert (plain.encoding, plain.segments_per_message) == ("ucs2", 1)
    # 55 + 22 UCS-2 characters exceed the 70 of one segment.
    assert footed.segments_per_message == 2
    assert footed.cost == Decimal("0.04")


def test_placeholders_are_rendered_for_the_audience_and_unknown_ones_flagged(lists):
    estimate = campaign_estimate(
        body="Hi {first_name}, {shoe_size}", lists=lists, provider="locmem"
    )
    assert estimate.segments_per_message == 1
    assert estimate.exact is True
    assert len(estimate.problems) == 1
    assert "{shoe_size}" in estimate.problems[0]


def test_a_large_audience_is_estimated_from_a_sample():
    contact_list = ContactListFactory()
    for contact in ContactFactory.create_batch(ESTIMATE_SAMPLE + 5):
        contact.lists.add(contact_list)
    estimate = campaign_estimate(
        body="Hi {first_name|there}", lists=[contact_list], provider="locmem"
    )
    assert estimate.recipients == ESTIMATE_SAMPLE + 5
    assert estimate.exact is False
    assert estimate.segments == ESTIMATE_SAMPLE + 5


def test_no_lists_means_no_audience():
    estimate = campaign_estimate(body="Hi {first_name|there}", lists=[], provider="x")
    assert (estimate.recipients, estimate.segments, estimate.problems) == (0, 0, [])
    assert estimate.segments_per_message == 1


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("1234.5"), "USD", "$1,234.50"),
        (Decimal("0.0075"), "USD", "$0.0075"),
        (Decimal("0.03"), "EUR", "€0.03"),
        (0, "GBP", "£0.00"),
        (Decimal("12.5"), "CHF", "12.50 CHF"),
    ],
)
def test_money_reads_the_same_on_every_page(amount, currency, text):
    assert format_money(amount, currency) == text
