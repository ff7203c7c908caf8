"""Delivering the outbox: signed POSTs, in order, one at a time per endpoint, with
exponential backoff for at least 24 hours."""

import threading
import time
from datetime import timedelta
from io import StringIO

import pytest

from django.core.management import call_command
from django.utils import timezone

from integrations import delivery, tasks
from integrations.delivery import (
    Poster,
    backoff_delay,
    deliver_due,
    endpoint_lease,
    endpoints_due,
)
from integrations.models import Delivery, Event, WebhookEndpoint
from integrations.services import deliveries_resend, delivery_log_prune, publish
from integrations.signing import SIGNATURE_HEADER, verify

from .conftest import endpoint_for
from .receiver import Receiver

pytestmark = pytest.mark.django_db


def run(**kwargs) -> int:
    """One delivery round on this thread, as the worker's would."""
    return deliver_due(deadline=time.monotonic() + 10, concurrency=0, **kwargs)


def opted_out(n: int) -> None:
    for i in range(n):
        publish("contact.opted_out", {"phone": f"+1415555{i:04d}", "n": i})


def test_each_event_is_posted_signed_with_its_id_and_type(receiver):
    endpoint = endpoint_for(receiver.url, "contact.opted_out")
    event = publish("contact.opted_out", {"phone": "+14155550101"})

    assert run() == 1

    [(headers, body)] = receiver.received
    assert body == event.body.encode()
    assert verify(endpoint.secret, body, headers[SIGNATURE_HEADER])
    assert headers["Content-Type"] == "application/json"
    assert headers["Smscampaigns-Event-Id"] == event.public_id
    assert headers["Smscampaigns-Event-Type"] == "contact.opted_out"
    sent = Delivery.objects.get()
    assert (sent.status, sent.attempts, sent.response_status) == ("delivered", 1, 200)
    assert sent.delivered_at is not None


def test_events_go_out_in_the_order_they_happened(receiver):
    endpoint_for(receiver.url, "contact.opted_out")
    opted_out(30)
    assert run() == 30
    assert [event["data"]["n"] for event in receiver.events()] == list(range(30))


def test_a_failing_endpoint_backs_off_and_keeps_its_order(settings):
    with Receiver(status=503) as down:
        endpoint = endpoint_for(down.url, "contact.opted_out")
        opted_out(3)

        assert run() == 0
        # The oldest event was tried once; the others wait behind it.
        assert len(down.received) == 1
        first, *rest = Delivery.objects.order_by("pk")
        assert (first.status, first.attempts, first.response_status) == (
            "pending",
            1,
            503,
        )
        assert first.error == "HTTP 503"
        assert [d.attempts for d in rest] == [0, 0]
        endpoint.refresh_from_db()
        assert endpoint.consecutive_failures == 1
        assert endpoint.failing_since is not None
        rest_for = endpoint.retry_at - timezone.now()
        assert timedelta(seconds=8) < rest_for <= timedelta(seconds=10)

        # Resting: nothing is tried before retry_at.
        assert endpoints_due() == []
        assert run() == 0
        assert len(down.received) == 1

        # Next try: still down, twice the rest.
        WebhookEndpoint.objects.update(retry_at=timezone.now())
        run()
        endpoint.refresh_from_db()
        assert endpoint.consecutive_failures == 2
        assert endpoint.retry_at - timezone.now() > timedelta(seconds=18)

        # Back up: everything goes, oldest first, and the endpoint is healthy.
        down.status = 200
        WebhookEndpoint.objects.update(retry_at=timezone.now())
        assert run() == 3
        assert [e["data"]["n"] for e in down.events()] == [0, 0, 0, 1, 2]
        endpoint.refresh_from_db()
        assert (endpoint.consecutive_failures, endpoint.failing_since) == (0, None)
        assert endpoint.retry_at is None
        assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_the_backoff_doubles_from_10_seconds_up_to_an_hour():
    delays = [backoff_delay(n).total_seconds() for n in range(1, 14)]
    assert delays == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600, 3600]
    # Retried for 24 hours: about 30 attempts.
    total, attempts = 0.0, 0
    while total < 24 * 3600:
        attempts += 1
        total += backoff_delay(attempts).total_seconds()
    assert attempts == 32


def test_an_event_is_given_up_only_when_an_attempt_fails_past_24_hours():
    with Receiver(status=500) as down:
        endpoint_for(down.url, "contact.opted_out")
        opted_out(3)
        old, recent, new = Delivery.objects.order_by("pk")
        now = timezone.now()
        Delivery.objects.filter(pk=old.pk).update(
            created_at=now - timedelta(hours=24, minutes=1)
        )
        Delivery.objects.filter(pk=recent.pk).update(
            created_at=now - timedelta(hours=25)
        )
        Delivery.objects.filter(pk=new.pk).update(created_at=now - timedelta(hours=23))

        run()

        old.refresh_from_db()
        recent.refresh_from_db()
        new.refresh_from_db()
        assert (old.status, old.attempts) == ("failed", 1)
        assert old.error == "HTTP 500 Gave up after 24 h."
        # Waited past the window behind it: given up with it, never posted.
        assert (recent.status, recent.attempts) == ("failed", 0)
        assert "kept failing" in recent.error
        assert (new.status, new.attempts) == ("pending", 0)


def test_a_timeout_counts_as_a_failure(settings):
    settings.WEBHOOK_TIMEOUT = 0.2
    with Receiver(delay=1.0) as slow:
        endpoint_for(slow.url, "contact.opted_out")
        opted_out(1)
        assert run() == 0
    sent = Delivery.objects.get()
    assert (sent.status, sent.attempts, sent.error) == ("pending", 1, "Timed out.")


def test_a_redirect_is_not_followed_and_counts_as_a_failure():
    with Receiver(status=302) as moved:
        endpoint_for(moved.url, "contact.opted_out")
        opted_out(1)
        run()
    assert Delivery.objects.get().response_status == 302


def test_a_refused_connection_counts_as_a_failure():
    endpoint_for("http://127.0.0.1:9/closed", "contact.opted_out")
    opted_out(1)
    run()
    sent = Delivery.objects.get()
    assert sent.attempts == 1
    assert sent.error


def test_one_worker_at_a_time_holds_an_endpoint(receiver):
    endpoint = endpoint_for(receiver.url, "contact.opted_out")
    assert endpoint_lease(endpoint_id=endpoint.pk, owner="a")
    assert not endpoint_lease(endpoint_id=endpoint.pk, owner="b")
    opted_out(2)
    # Held by a live worker: another one does not post to it.
    assert run(owner="b") == 0
    assert receiver.received == []
    # A lease that ran out (its worker died) is taken over.
    WebhookEndpoint.objects.update(leased_until=timezone.now() - timedelta(seconds=1))
    assert run(owner="b") == 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_post_to_one_endpoint_at_once():
    with Receiver(delay=0.003) as slow:
        endpoint_for(slow.url, "contact.opted_out")
        opted_out(60)
        results = []

        def worker() -> None:
            results.append(deliver_due(deadline=time.monotonic() + 20, concurrency=2))

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert slow.max_in_flight == 1
        assert [e["data"]["n"] for e in slow.events()] == list(range(60))
        assert sum(results) == 60


def test_an_inactive_endpoint_keeps_its_events_until_it_is_active_again(receiver):
    endpoint = endpoint_for(receiver.url, "contact.opted_out")
    opted_out(1)
    WebhookEndpoint.objects.update(is_active=False)
    assert run() == 0
    opted_out(1)  # not subscribed while inactive
    WebhookEndpoint.objects.update(is_active=True)
    assert run() == 1
    assert endpoint.deliveries.get().status == "delivered"


def test_a_resent_delivery_goes_out_again_after_what_is_waiting(receiver):
    endpoint_for(receiver.url, "contact.opted_out")
    opted_out(2)
    run()
    first = Delivery.objects.order_by("pk").first()
    assert deliveries_resend(deliveries=[first]) == 1
    run()
    assert [e["data"]["n"] for e in receiver.events()] == [0, 1, 0]
    again = Delivery.objects.order_by("pk").last()
    assert (again.resend_of, again.status) == (first, "delivered")
    assert receiver.events()[2]["id"] == receiver.events()[0]["id"]


def test_a_private_address_is_refused_unless_allowed(settings, receiver):
    settings.WEBHOOK_ALLOW_LOCAL_URLS = False
    endpoint = endpoint_for(receiver.url, "contact.opted_out")
    opted_out(1)
    outcome = Poster().post(endpoint, Delivery.objects.get().event)
    assert not outcome.ok
    assert "private address" in outcome.error
    assert receiver.received == []


def test_successes_are_recorded_a_few_at_a_time(receiver, monkeypatch):
    monkeypatch.setattr(delivery, "FLUSH_EVERY", 2)
    endpoint_for(receiver.url, "contact.opted_out")
    opted_out(5)
    assert run() == 5
    assert Delivery.objects.filter(status="delivered").count() == 5


def test_run_worker_delivers_events(receiver):
    endpoint_for(receiver.url, "contact.opted_out")
    opted_out(2)
    call_command("run_worker", "--once", stdout=StringIO())
    assert len(receiver.received) == 2


def test_the_celery_task_delivers_events(receiver, settings):
    settings.WEBHOOK_CONCURRENCY = 0  # on this thread: it sees the test's data
    endpoint_for(receiver.url, "contact.opted_out")
    opted_out(2)
    assert tasks.deliver_webhooks() == 2


def test_the_log_forgets_settled_deliveries_after_30_days(receiver):
    endpoint_for(receiver.url, "contact.opted_out")
    opted_out(3)
    old_delivered, old_waiting, recent = Delivery.objects.order_by("pk")
    Delivery.objects.filter(pk=old_delivered.pk).update(status="delivered")
    month_ago = timezone.now() - timedelta(days=31)
    Delivery.objects.filter(pk__in=[old_delivered.pk, old_waiting.pk]).update(
        created_at=month_ago
    )
    Event.objects.filter(pk=old_delivered.event_id).update(created_at=month_ago)

    assert delivery_log_prune() == 1
    assert list(Delivery.objects.order_by("pk")) == [old_waiting, recent]
    assert not Event.objects.filter(pk=old_delivered.event_id).exists()
