"""The inbox: inbound replies as a marketer reads them in the admin."""

import pytest

from django.urls import reverse

from tests.factories import ContactFactory
from webhooks.models import InboundMessage

pytestmark = pytest.mark.django_db

INBOX = reverse("admin:webhooks_inboundmessage_changelist")


def inbound(text: str, keyword: str = "", contact=None, **fields) -> InboundMessage:
    return InboundMessage.objects.create(
        provider="vonage",
        from_number=contact.phone if contact else "+14155550999",
        to_number="+14155550000",
        text=text,
        keyword=keyword,
        contact=contact,
        **fields,
    )


def test_the_inbox_lists_replies_newest_first_with_their_sender(admin_client):
    ada = ContactFactory(first_name="Ada", last_name="Lovelace")
    inbound("Is the sale on Sunday too?", contact=ada, received_at="2026-05-01T10:00Z")
    inbound(
        "STOP", keyword=InboundMessage.Keyword.OPT_OUT, received_at="2026-05-02T10:00Z"
    )

    page = admin_client.get(INBOX).content.decode()
    assert "Inbox: inbound replies" in page
    assert page.index("STOP") < page.index("Is the sale on Sunday too?")
    ada_url = reverse("admin:contacts_contact_change", args=[ada.pk])
    assert f'<a href="{ada_url}">Ada Lovelace ({ada.phone})</a>' in page
    assert "+14155550999" in page
    assert 'sms-badge sms-badge--stop" title="Opt-out (STOP)">STOP</span>' in page


@pytest.mark.parametrize(
    ("keyword", "label"),
    [
        (InboundMessage.Keyword.OPT_IN, ">START</span>"),
        (InboundMessage.Keyword.HELP, ">HELP</span>"),
    ],
)
def test_keywords_show_as_badges(admin_client, keyword, label):
    inbound("whatever", keyword=keyword)
    assert label in admin_client.get(INBOX).content.decode()


def test_the_inbox_filters_by_keyword_and_searches_text(admin_client):
    inbound("STOP", keyword=InboundMessage.Keyword.OPT_OUT)
    inbound("Loved the coupon, thanks")

    page = admin_client.get(INBOX, {"keyword__exact": "opt_out"}).content.decode()
    assert "Loved the coupon" not in page
    page = admin_client.get(INBOX, {"q": "coupon"}).content.decode()
    assert "Loved the coupon" in page
    assert ">STOP</span>" not in page


def test_the_inbox_filters_by_date(admin_client):
    inbound("old news", received_at="2020-01-01T00:00Z")
    inbound("fresh")
    page = admin_client.get(
        INBOX,
        {
            "received_at__gte": "2026-01-01 00:00:00+00:00",
            "received_at__lt": "2100-01-01 00:00:00+00:00",
        },
    ).content.decode()
    assert "fresh" in page
    assert "old news" not in page


def test_the_inbox_is_read_only(admin_client):
    message = inbound("hello")
    page = admin_client.get(INBOX).content.decode()
    assert reverse("admin:webhooks_inboundmessage_add") not in page
    assert (
        admin_client.get(reverse("admin:webhooks_inboundmessage_add")).status_code
        == 403
    )
    response = admin_client.post(
        reverse("admin:webhooks_inboundmessage_change", args=[message.pk]),
        {"text": "edited"},
    )
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.text == "hello"


def test_the_inbox_runs_in_bounded_queries(admin_client, django_assert_max_num_queries):
    for contact in ContactFactory.create_batch(60):
        inbound("Yes please", contact=contact)
    with django_assert_max_num_queries(10):
        response = admin_client.get(INBOX)
    assert response.content.decode().count('field-message">Yes please') == 60
