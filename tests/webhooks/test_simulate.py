"""The admin's "Simulate an inbound message": STOP, START and HELP tried locally,
through the signed webhook."""

import pytest

from django.urls import reverse

from contacts.models import ConsentEvent, Source
from tests.factories import ContactFactory
from webhooks.models import InboundMessage

pytestmark = pytest.mark.django_db

SIMULATE = reverse("admin:webhooks_inboundmessage_simulate")
INBOX = reverse("admin:webhooks_inboundmessage_changelist")


def test_a_simulated_stop_goes_through_the_webhook(admin_client, settings):
    settings.DEBUG = True
    contact = ContactFactory()
    assert 'id="simulate-inbound"' in admin_client.get(INBOX).content.decode()

    response = admin_client.post(
        SIMULATE,
        {"from_number": contact.phone, "text": "STOP", "provider": "simulator"},
    )
    assert response.status_code == 302
    assert response.url == INBOX
    inbound = InboundMessage.objects.get()
    assert (inbound.provider, inbound.keyword) == ("simulator", "opt_out")
    contact.refresh_from_db()
    assert contact.opted_out
    event = ConsentEvent.objects.get()
    assert (event.source, event.provider) == (Source.KEYWORD, "simulator")


def test_a_badly_signed_callback_is_still_refused(client, settings):
    settings.DEBUG = True
    response = client.post(
        "/webhooks/simulator/inbound/",
        data=b'{"type": "inbound", "from": "+14155550123", "to": "+1", "text": "STOP"}',
        content_type="application/json",
        HTTP_X_SIMULATOR_TIMESTAMP="1",
        HTTP_X_SIMULATOR_NONCE="n",
        HTTP_X_SIMULATOR_SIGNATURE="v1=forged",
    )
    assert response.status_code == 401
    assert not InboundMessage.objects.exists()


def test_no_simulation_on_a_site_sending_through_a_vendor(admin_client, settings):
    settings.DEBUG = False
    settings.SMS_DEFAULT_PROVIDER = "vonage"
    assert admin_client.get(SIMULATE).status_code == 404
    assert 'id="simulate-inbound"' not in admin_client.get(INBOX).content.decode()
