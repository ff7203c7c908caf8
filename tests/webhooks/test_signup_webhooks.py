"""Keyword sign-ups through the signed vendor webhooks: a replayed or retried callback
asks once and welcomes once; two YESes at once sign up once."""

import re
import threading
import uuid

import pytest
import responses

from django.db import connection
from django.test import Client

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from contacts.models import ConsentEvent, ListMembership, PendingSignup
from tests.factories import SignupKeywordFactory
from tests.security.webhook_vendors import (
    compact,
    plivo_inbound,
    plivo_v3_headers,
    post_form,
    post_json,
    sinch_headers,
    sinch_inbound,
    vendors,  # noqa: F401
    vonage_headers,
    vonage_inbound,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("vendors", "vendor_apis"),
]

PERSON = "+14155550123"


@pytest.fixture
def vendor_apis():
    """The vendors' send APIs, for the questions and welcomes the worker sends."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(re.compile(r"https://api\.nexmo\.com/.*"), json={"message_uuid": "x"}, status=202)  # fmt: skip
        mock.post(re.compile(r"https://api\.plivo\.com/.*"), json={"message_uuid": ["x"]}, status=202)  # fmt: skip
        mock.post(re.compile(r"https://.*sinch\.com/.*"), json={"id": "b"}, status=201)
        yield mock


@pytest.fixture
def join():
    return SignupKeywordFactory(keyword="JOIN")


def vonage(text: str, message_uuid: str = ""):
    body = compact(vonage_inbound(PERSON, text, message_uuid))
    headers = vonage_headers(body)
    return lambda: post_json(Client(), "/webhooks/vonage/inbound/", body, headers)


def plivo(text: str, message_uuid: str = ""):
    path = "/webhooks/plivo/inbound/"
    params = plivo_inbound(PERSON, text, message_uuid)
    headers = plivo_v3_headers(path, params)
    return lambda: post_form(Client(), path, params, headers)


def sinch(text: str, message_uuid: str = ""):
    body = compact(sinch_inbound(PERSON, text, message_uuid))
    headers = sinch_headers(body)
    return lambda: post_json(Client(), "/webhooks/sinch/inbound/", body, headers)


def replies(text: str) -> int:
    return Message.objects.filter(kind="reply", body__contains=text).count()


@pytest.mark.parametrize("send", [vonage, plivo, sinch])
def test_a_replayed_keyword_and_yes_ask_once_and_welcome_once(join, send):
    keyword = send("JOIN")
    assert keyword().status_code == 200
    assert keyword().status_code == 200  # the same signed callback again
    assert replies("Reply YES") == 1
    yes = send("YES")
    for _ in range(3):
        assert yes().status_code == 200
    assert replies("Welcome") == 1
    assert ConsentEvent.objects.count() == 1
    assert ListMembership.objects.count() == 1
    assert DirectSender(concurrency=1, stop=threading.Event()).drain() == 2
    assert set(
        Message.objects.filter(kind="reply").values_list("status", flat=True)
    ) == {"submitted"}


def test_a_vendor_retry_signed_again_is_not_applied_twice(join):
    keyword_id, yes_id = str(uuid.uuid4()), str(uuid.uuid4())
    for _ in range(2):
        # The same message (same vendor id), signed afresh for each attempt.
        assert vonage("JOIN", keyword_id)().status_code == 200
    for _ in range(2):
        assert vonage("YES", yes_id)().status_code == 200
    assert replies("Reply YES") == 1
    assert replies("Welcome") == 1
    assert ConsentEvent.objects.count() == 1


def test_the_webhook_answers_before_the_question_is_sent(join, vendor_apis):
    assert vonage("JOIN")().status_code == 200
    assert len(vendor_apis.calls) == 0
    question = Message.objects.get(kind="reply")
    assert question.status == "queued"
    assert question.next_attempt_at is not None  # due now, for the worker


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="SQLite serialises writers; the race needs concurrent transactions",
)
def test_two_yeses_at_once_sign_up_once(join):
    assert vonage("JOIN")().status_code == 200
    yeses = [vonage("YES") for _ in range(8)]  # eight different messages
    barrier = threading.Barrier(len(yeses))

    def post(yes):
        try:
            barrier.wait()
            assert yes().status_code == 200
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(yes,)) for yes in yeses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not PendingSignup.objects.exists()
    assert ListMembership.objects.count() == 1
    assert ConsentEvent.objects.filter(keyword="JOIN").count() == 1
    assert replies("Welcome") == 1
