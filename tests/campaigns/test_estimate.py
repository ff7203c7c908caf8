"""campaign_estimate: the audience and cost the composer and confirmation pages show."""

from decimal import Decimal

import pytest

from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from campaigns.admin import composer
from campaigns.preview import (
    ESTIMATE_SAMPLE,
    audience_facts,
    campaign_estimate,
    format_money,
)
from contacts.models import Source, Suppression
from contacts.services import contact_opt_out
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

PRICES = {"locmem": Decimal("0.01")}


@pytest.fixture(autouse=True)
def _no_cached_audiences():
    cache.clear()


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


def test_the_audience_is_counted_in_a_fixed_number_of_queries(
    lists, django_assert_max_num_queries
):
    for contact in ContactFactory.create_batch(30, attributes={"city": "Austin"}):
        contact.lists.add(lists[1])
    # The cache key, the memberships, one pass over the audience for its counts,
    # its attribute keys, and the contacts rendered.
    with django_assert_max_num_queries(5):
        estimate = campaign_estimate(
            body="Hi {first_name}, {city|see you}", lists=lists, provider="locmem"
        )
    assert (estimate.contacts, estimate.recipients, estimate.problems) == (34, 32, [])


def test_the_audience_is_counted_once_while_nothing_changes(
    lists, django_assert_max_num_queries
):
    campaign_estimate(body="Hi {first_name}", lists=lists, provider="locmem")
    # The cache key and the contacts rendered: nothing is counted again.
    with django_assert_max_num_queries(2):
        again = campaign_estimate(
            body="Hello {first_name}!", lists=lists, provider="locmem"
        )
    assert (again.contacts, again.recipients) == (4, 2)


def test_the_composer_and_the_confirmation_pages_share_the_counts(
    lists, django_assert_max_num_queries
):
    facts = composer.audience_facts(lists)
    with django_assert_max_num_queries(2):
        estimate = campaign_estimate(body="Hi", lists=lists, provider="locmem")
    assert (estimate.in_lists, estimate.recipients) == (facts.in_lists, 2)


def test_new_members_suppressions_and_opt_outs_are_counted_at_once(lists):
    def recipients() -> int:
        return campaign_estimate(body="Hi", lists=lists, provider="locmem").recipients

    assert recipients() == 2
    newcomer = ContactFactory(phone="+12065550104")
    newcomer.lists.add(lists[1])
    assert recipients() == 3
    Suppression.objects.create(phone=newcomer.phone)
    assert recipients() == 2
    contact_opt_out(phone="+12065550101", source=Source.KEYWORD, text="STOP")
    assert recipients() == 1


def test_an_attribute_only_excluded_contacts_have_is_unknown(lists):
    ContactFactory(
        phone="+12065550105", opted_out_at=timezone.now(), attributes={"vip": "yes"}
    ).lists.add(lists[0])
    estimate = campaign_estimate(body="Hi {vip}", lists=lists, provider="locmem")
    assert len(estimate.problems) == 1
    assert "{vip}" in estimate.problems[0]


def test_a_page_can_leave_a_large_uncounted_audience_for_later(
    lists, django_assert_max_num_queries
):
    # 5 memberships: more than 4 is "large".
    assert audience_facts(lists, max_memberships=4) is None
    counted = audience_facts(lists)
    # Once counted, even a large audience is read from the cache.
    with django_assert_max_num_queries(1):
        assert audience_facts(lists, max_memberships=4) == counted


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
