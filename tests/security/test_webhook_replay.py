"""Finding 3 (and issue #13 row 3): a captured callback signature cannot be used again.

Reproductions: one Plivo V2 header pair forged a STOP; any vendor's signed callback
replayed inside its freshness window was applied again; a vendor retry that kept its
first signature past 5.5 minutes was refused (and lost).
"""

import re
import threading
import time
import uuid
from datetime import timedelta

import pytest
import responses

from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone

from campaigns.models import DeliveryEvent, Message
from contacts.models import ConsentEvent, Suppression
from tests.factories import ContactFactory, MessageFactory
from webhooks.models import InboundMessage, SeenCallback
from webhooks.replay import seen_callbacks_prune

from .webhook_vendors import (
    compact,
    configure,
    plivo_inbound,
    plivo_status,
    plivo_v2_headers,
    plivo_v3_headers,
    post_form,
    post_json,
    sinch_headers,
    sinch_inbound,
    sinch_status,
    vendors,  # noqa: F401
    vonage_headers,
    vonage_inbound,
    vonage_status,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("vendors", "vendor_apis"),
]


@pytest.fixture
def client():
    # CSRF enforced, as for a real vendor: the webhooks must not need a token.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def vendor_apis():
    """The vendors' send APIs, for confirmations a keyword may trigger."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(re.compile(r"https://api\.nexmo\.com/.*"), json={"message_uuid": "x"}, status=202)  # fmt: skip
        mock.post(re.compile(r"https://api\.plivo\.com/.*"), json={"message_uuid": ["x"]}, status=202)  # fmt: skip
        mock.post(re.compile(r"https://.*sinch\.com/.*"), json={"id": "b"}, status=201)
        yield mock


# --- Plivo V2 -------------------------------------------------------------------------


def test_a_plivo_v2_signature_is_refused_by_default(client):
    contact = ContactFactory()
    path = "/webhooks/plivo/inbound/"
    # A V2 pair signs only the URL and a nonce: whoever captured one could post any
    # body with it. Here: a STOP "from" a contact who never sent one.
    response = post_form(
        client, path, plivo_inbound(contact.phone, "STOP"), plivo_v2_headers(path)
    )
    assert response.status_code == 401
    assert "PLIVO_ALLOW_V2_SIGNATURES" in response.json()["error"]
    contact.refresh_from_db()
    assert not contact.opted_out
    assert not Suppression.objects.exists()
    assert not InboundMessage.objects.exists()


def test_an_allowed_plivo_v2_pair_is_applied_once_and_cannot_forge_another_body(
    client, settings
):
    configure(settings, "plivo", allow_v2_signatures=True)
    sender, victim = ContactFactory(), ContactFactory()
    path = "/webhooks/plivo/inbound/"
    headers = plivo_v2_headers(path)
    first = post_form(client, path, plivo_inbound(sender.phone, "hello"), headers)
    assert first.status_code == 200
    assert InboundMessage.objects.count() == 1
    # The same header pair, captured, with a STOP for somebody else: answered (Plivo
    # gets its XML), not applied.
    replay = post_form(client, path, plivo_inbound(victim.phone, "STOP"), headers)
    assert replay.status_code == 200
    victim.refresh_from_db()
    assert not victim.opted_out
    assert InboundMessage.objects.count() == 1


# --- Every vendor: a replay inside the window is answered, not applied ----------------


def _vonage_stop(client, contact):
    body = compact(vonage_inbound(contact.phone, "STOP"))
    headers = vonage_headers(body)
    return lambda: post_json(client, "/webhooks/vonage/inbound/", body, headers)


def _plivo_stop(client, contact):
    path = "/webhooks/plivo/inbound/"
    params = plivo_inbound(contact.phone, "STOP")
    headers = plivo_v3_headers(path, params)
    return lambda: post_form(client, path, params, headers)


def _sinch_stop(client, contact):
    body = compact(sinch_inbound(contact.phone, "STOP"))
    headers = sinch_headers(body)
    return lambda: post_json(client, "/webhooks/sinch/inbound/", body, headers)


@pytest.mark.parametrize("make", [_vonage_stop, _plivo_stop, _sinch_stop])
def test_a_replayed_stop_after_start_does_not_opt_out_again(client, make):
    contact = ContactFactory()
    stop = make(client, contact)
    assert stop().status_code == 200
    contact.refresh_from_db()
    assert contact.opted_out
    # The contact texts START; then someone replays the captured STOP.
    from contacts.services import contact_opt_in

    contact_opt_in(phone=contact.phone, source="keyword", text="START")
    replay = stop()
    assert replay.status_code == 200
    contact.refresh_from_db()
    assert not contact.opted_out
    assert InboundMessage.objects.count() == 1
    assert ConsentEvent.objects.filter(kind="opt_out").count() == 1


def _signed_receipt(client, alias, message):
    if alias == "vonage":
        body = compact(vonage_status(message, "delivered"))
        headers = vonage_headers(body)
        return lambda: post_json(client, "/webhooks/vonage/status/", body, headers)
    if alias == "plivo":
        path = f"/webhooks/plivo/status/?ref={message.client_reference}"
        params = plivo_status(message, "delivered")
        headers = plivo_v3_headers(path, params)
        return lambda: post_form(client, path, params, headers)
    body = compact(sinch_status(message, "Delivered"))
    headers = sinch_headers(body)
    return lambda: post_json(client, "/webhooks/sinch/status/", body, headers)


@pytest.mark.parametrize("alias", ["vonage", "plivo", "sinch"])
def test_a_replayed_receipt_is_answered_and_not_stored_again(client, alias):
    message = MessageFactory(
        provider=alias, provider_message_id=str(uuid.uuid4()), status="sent"
    )
    receipt = _signed_receipt(client, alias, message)
    assert receipt().json() == {"status": "ok", "applied": 1}
    assert receipt().json() == {"status": "ok", "applied": 0}
    assert DeliveryEvent.objects.count() == 1
    message.refresh_from_db()
    assert message.status == "delivered"


def test_a_vendor_retry_with_a_new_signature_is_not_applied_twice(client):
    message = MessageFactory(
        provider="sinch", provider_message_id="B1", status="sent", to="+14155550123"
    )
    body = compact(sinch_status(message, "Delivered"))
    for _ in range(2):
        # Same event, signed again (new nonce and timestamp).
        response = post_json(
            client, "/webhooks/sinch/status/", body, sinch_headers(body)
        )
        assert response.status_code == 200
    assert DeliveryEvent.objects.count() == 1


# --- Issue #13 row 3: the window follows the vendor's retries -------------------------


@pytest.mark.parametrize(
    ("alias", "age", "expected"),
    [
        # Sinch retries for up to ~22 h 45 min with the first signature, Vonage for
        # 24 h: a retry 6 minutes (or 22 hours) late is a retry, not a forgery.
        ("sinch", 6 * 60, 200),
        ("sinch", 22 * 3600, 200),
        ("vonage", 6 * 60, 200),
        ("vonage", 23 * 3600, 200),
        ("sinch", 25 * 3600, 401),
        ("vonage", 25 * 3600, 401),
    ],
)
def test_the_freshness_window_covers_the_vendors_retries(client, alias, age, expected):
    message = MessageFactory(
        provider=alias, provider_message_id=str(uuid.uuid4()), status="sent"
    )
    if alias == "sinch":
        body = compact(sinch_status(message))
        headers = sinch_headers(body, timestamp=time.time() - age)
    else:
        body = compact(vonage_status(message))
        headers = vonage_headers(body, iat=time.time() - age)
    response = post_json(client, f"/webhooks/{alias}/status/", body, headers)
    assert response.status_code == expected


def test_the_window_is_a_per_provider_setting(client, settings):
    configure(settings, "sinch", webhook_max_age=600)
    message = MessageFactory(provider="sinch", provider_message_id="B9", status="sent")
    body = compact(sinch_status(message))
    late = sinch_headers(body, timestamp=time.time() - 700)
    assert post_json(client, "/webhooks/sinch/status/", body, late).status_code == 401
    fresh = sinch_headers(body, timestamp=time.time() - 500)
    assert post_json(client, "/webhooks/sinch/status/", body, fresh).status_code == 200


def test_remembered_callbacks_expire_with_the_window(client, settings):
    configure(settings, "sinch", webhook_max_age=600)
    message = MessageFactory(provider="sinch", provider_message_id="B9", status="sent")
    body = compact(sinch_status(message))
    post_json(client, "/webhooks/sinch/status/", body, sinch_headers(body))
    expiries = list(SeenCallback.objects.values_list("expires_at", flat=True))
    assert len(expiries) == 2  # the signature and the event
    for expires in expiries:
        remaining = (expires - timezone.now()).total_seconds()
        assert 600 < remaining <= 600 + settings.SMS_WEBHOOK_CLOCK_SKEW
    SeenCallback.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert seen_callbacks_prune() == 2
    assert not SeenCallback.objects.exists()


# --- Failures and races ----------------------------------------------------------------


def test_a_callback_that_failed_to_apply_is_applied_on_the_vendors_retry(
    client, monkeypatch
):
    from webhooks import handlers

    message = MessageFactory(provider="vonage", provider_message_id="V1", status="sent")
    body = compact(vonage_status(message))
    headers = vonage_headers(body)
    real = handlers.callback_items_apply

    def broken(**kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(handlers, "callback_items_apply", broken)
    assert (
        post_json(client, "/webhooks/vonage/status/", body, headers).status_code == 503
    )
    monkeypatch.setattr(handlers, "callback_items_apply", real)
    # Same signature: the 503 told the vendor to retry, and the retry must count.
    retry = post_json(client, "/webhooks/vonage/status/", body, headers)
    assert retry.json() == {"status": "ok", "applied": 1}
    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="SQLite serialises writers; the race needs concurrent transactions",
)
def test_two_copies_at_once_are_applied_once():
    """Two workers get the same callback at the same moment: one applies it."""
    contact = ContactFactory()
    body = compact(vonage_inbound(contact.phone, "hello"))
    headers = vonage_headers(body)
    barrier = threading.Barrier(8)
    answers = []

    def post():
        try:
            barrier.wait()
            answers.append(
                post_json(Client(), "/webhooks/vonage/inbound/", body, headers).json()
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["applied"] for a in answers) == [0] * 7 + [1]
    assert InboundMessage.objects.count() == 1
    assert Message.objects.filter(kind="reply").count() == 0
