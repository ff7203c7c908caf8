"""Finding 6: without a broker, STOP/HELP confirmations were sent inside the webhook
request (a provider taking 6 s made STOP webhooks take 6-12 s). Now the webhook only
queues the confirmation; the worker sends it, with its own retry, exactly once.
(The latency figures are measured by bench/stop_replies.py.)"""

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
import responses

from django.db import connection
from django.test import Client
from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from tests.factories import ContactFactory
from webhooks.models import InboundMessage

from .webhook_vendors import (
    compact,
    post_json,
    vendors,  # noqa: F401
    vonage_headers,
    vonage_inbound,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("vendors"),
]

VONAGE_SEND = "https://api.nexmo.com/v1/messages"


def _stop(contact):
    body = compact(vonage_inbound(contact.phone, "STOP"))
    return post_json(Client(), "/webhooks/vonage/inbound/", body, vonage_headers(body))


def test_the_stop_webhook_answers_without_calling_the_provider():
    contact = ContactFactory()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as vonage:
        vonage.post(VONAGE_SEND, json={"message_uuid": "m"}, status=202)
        response = _stop(contact)
        assert len(vonage.calls) == 0
    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.opted_out
    reply = Message.objects.get(kind="reply")
    assert reply.status == "queued"
    assert reply.next_attempt_at is not None  # due now, for the worker


def test_the_worker_sends_each_confirmation_once_and_retries_a_failure():
    contacts = [ContactFactory() for _ in range(3)]
    for contact in contacts:
        assert _stop(contact).status_code == 200
    sender = DirectSender(concurrency=2, stop=threading.Event())
    with responses.RequestsMock() as vonage:
        # The first attempt of one reply meets a 503 (nothing sent: retry later).
        vonage.post(VONAGE_SEND, status=503, json={"title": "down"})
        vonage.post(VONAGE_SEND, json={"message_uuid": str(uuid.uuid4())}, status=202)
        vonage.post(VONAGE_SEND, json={"message_uuid": str(uuid.uuid4())}, status=202)
        assert sender.drain() == 3
        assert len(vonage.calls) == 3
        assert sender.drain() == 0  # the failed one waits for its retry time
        Message.objects.filter(status="queued").update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        vonage.post(VONAGE_SEND, json={"message_uuid": str(uuid.uuid4())}, status=202)
        assert sender.drain() == 1
        assert sender.drain() == 0
        assert len(vonage.calls) == 4
    replies = Message.objects.filter(kind="reply")
    assert sorted(replies.values_list("status", flat=True)) == ["submitted"] * 3
    assert sorted(r.to for r in replies) == sorted(c.phone for c in contacts)


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="threads need a database they can share: run on PostgreSQL",
)
def test_the_worker_thread_sends_while_webhooks_keep_answering():
    contacts = [ContactFactory() for _ in range(20)]
    stop = threading.Event()
    sender = DirectSender(concurrency=8, stop=stop)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as vonage:

        def slow(request):
            time.sleep(0.5)  # a provider that takes its time
            return (202, {}, json.dumps({"message_uuid": str(uuid.uuid4())}))

        vonage.add_callback(responses.POST, VONAGE_SEND, callback=slow)
        sender.start()
        try:
            for contact in contacts:
                assert _stop(contact).status_code == 200
            deadline = time.monotonic() + 30
            while (
                Message.objects.filter(kind="reply", status="submitted").count() < 20
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
        finally:
            stop.set()
            sender.join()
            connection.close()
        assert len(vonage.calls) == 20
    assert Message.objects.filter(kind="reply", status="submitted").count() == 20
    assert InboundMessage.objects.count() == 20
