"""/metrics: token protection, Prometheus' text format, and figures that move with
what the application does."""

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from django.test import Client
from django.utils import timezone

from campaigns.models import Campaign, Message
from campaigns.sending import scheduling
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.launch import campaign_launch
from campaigns.sending.liveness import Liveness
from providers.backends import locmem
from providers.messages import SendError, SendErrorKind
from smscampaigns import metrics
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0123456789"
SINCH_SECRET = "sinch-webhook-secret"


@pytest.fixture(autouse=True)
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape(client=None, token=TOKEN):
    client = client or Client()
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response


def samples(response) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, parsed by prometheus-client's own parser."""
    parsed = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            parsed[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return parsed


def value(parsed, name, **labels) -> float | None:
    return parsed.get((name, tuple(sorted(labels.items()))))


# --- Who may read it -------------------------------------------------------------------


def test_metrics_are_off_without_a_token(settings, client):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Token {TOKEN}", f"Basic {TOKEN}", "Bearer", TOKEN],
)
def test_a_missing_or_wrong_token_is_refused(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 403
    assert b"sms_" not in response.content


def test_the_right_token_gets_prometheus_text(client):
    response = scrape(client)
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert (
        "no-cache" in response["Cache-Control"]
        or "max-age=0" in response["Cache-Control"]
    )
    names = {f.name for f in text_string_to_metric_families(response.content.decode())}
    assert {
        "sms_messages",
        "sms_provider_throttled",
        "sms_send_duration_seconds",
        "sms_webhook_duration_seconds",
        "sms_webhook_requests",
        "sms_queue_depth",
        "sms_queue_oldest_age_seconds",
        "sms_dispatchers_alive",
        "sms_dispatcher_last_beat_timestamp_seconds",
        "sms_scheduler_last_tick_timestamp_seconds",
        "sms_campaigns",
    } <= names


def test_metrics_are_not_redirected_to_https(settings, client):
    """A Prometheus on the same machine scrapes gunicorn over plain http."""
    settings.SECURE_SSL_REDIRECT = True
    assert scrape(client).status_code == 200
    assert client.get("/health/").status_code == 301


# --- Sends -------------------------------------------------------------------------------


def launched(n: int, provider: str = "locmem") -> Campaign:
    contact_list = ContactListFactory()
    for _ in range(n):
        ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list], provider=provider)
    campaign_launch(campaign=campaign)
    return campaign


def test_sends_count_accepted_failed_unknown_and_429s_per_provider(settings):
    settings.SMS_RETRY_BASE_DELAY = 600  # the throttled one is not sent again here
    campaign = launched(7)
    locmem.fail_next(SendError(SendErrorKind.PERMANENT, "invalid", "bad number"))
    locmem.fail_next(SendError(SendErrorKind.MAYBE_SENT, "timeout", "no answer"))
    locmem.fail_next(
        SendError(SendErrorKind.THROTTLED, "429", "too fast", retry_after=0.0)
    )
    Dispatcher(campaign.pk).run(deadline=time.monotonic() + 2)

    parsed = samples(scrape())
    total = "sms_messages_total"
    assert value(parsed, total, provider="locmem", outcome="accepted") == 4
    assert value(parsed, total, provider="locmem", outcome="failed") == 1
    assert value(parsed, total, provider="locmem", outcome="unknown") == 1
    assert value(parsed, total, provider="locmem", outcome="retried") == 1
    assert value(parsed, "sms_provider_throttled_total", provider="locmem") == 1
    requests = value(parsed, "sms_send_duration_seconds_count", provider="locmem")
    assert requests >= 1
    assert (
        value(parsed, "sms_send_duration_seconds_bucket", provider="locmem", le="+Inf")
        == requests
    )
    assert value(parsed, "sms_send_duration_seconds_sum", provider="locmem") >= 0


def test_counters_add_up_over_batches():
    campaign = launched(5)
    Dispatcher(campaign.pk, batch_size=2).run(deadline=time.monotonic() + 5)
    parsed = samples(scrape())
    assert (
        value(parsed, "sms_messages_total", provider="locmem", outcome="accepted") == 5
    )


def test_figures_that_cannot_be_stored_leave_the_callers_transaction_usable(
    monkeypatch,
):
    from django.db import transaction

    from smscampaigns.models import MetricValue

    monkeypatch.setattr(MetricValue._meta, "db_table", "no_such_table")
    with transaction.atomic():
        metrics.sends_record(provider="locmem", accepted=1)  # logged, not raised
        assert Campaign.objects.count() == 0


# --- Webhooks ----------------------------------------------------------------------------


@pytest.fixture
def sinch(settings):
    providers = dict(settings.SMS_PROVIDERS)
    providers["sinch"] = {
        **providers["sinch"],
        "OPTIONS": {
            **providers["sinch"]["OPTIONS"],
            "service_plan_id": "plan",
            "api_token": "token",
            "number": "+14155550100",
            "webhook_secret": SINCH_SECRET,
        },
    }
    settings.SMS_PROVIDERS = providers


def sinch_post(client, payload, *, secret=SINCH_SECRET):
    body = json.dumps(payload).encode()
    nonce, timestamp = "01JHFFHWYY7HSS4FWTMDTQEK8V", str(int(time.time()))
    digest = hmac.new(
        secret.encode(), f"{body.decode()}.{nonce}.{timestamp}".encode(), hashlib.sha256
    ).digest()
    return client.post(
        "/webhooks/sinch/status/",
        body,
        content_type="application/json",
        HTTP_X_SINCH_WEBHOOK_SIGNATURE=base64.b64encode(digest).decode(),
        HTTP_X_SINCH_WEBHOOK_SIGNATURE_NONCE=nonce,
        HTTP_X_SINCH_WEBHOOK_SIGNATURE_TIMESTAMP=timestamp,
        HTTP_X_SINCH_WEBHOOK_SIGNATURE_ALGORITHM="HmacSHA256",
    )


def test_webhooks_count_by_vendor_kind_and_outcome(sinch):
    client = Client(enforce_csrf_checks=True)
    report = {
        "type": "recipient_delivery_report_sms",
        "batch_id": "B1",
        "recipient": "14155550199",
        "code": 0,
        "status": "Delivered",
        "at": "2024-06-06T08:17:19.210Z",
    }
    assert sinch_post(client, report).status_code == 200
    assert sinch_post(client, report, secret="forged").status_code == 401
    assert (
        client.post("/webhooks/nosuch/status/", b"x", "text/plain").status_code == 404
    )

    parsed = samples(scrape())
    requests = "sms_webhook_requests_total"
    labels = {"vendor": "sinch", "kind": "status"}
    assert value(parsed, requests, outcome="accepted", **labels) == 1
    assert value(parsed, requests, outcome="unauthorized", **labels) == 1
    # Any path is not a new series: unknown aliases count as "other".
    assert (
        value(
            parsed,
            requests,
            vendor="other",
            kind="status",
            outcome="unknown_provider",
        )
        == 1
    )
    duration = "sms_webhook_duration_seconds"
    assert value(parsed, duration + "_count", outcome="accepted", **labels) == 1
    assert (
        value(parsed, duration + "_bucket", outcome="accepted", le="5.0", **labels) == 1
    )
    assert value(parsed, duration + "_sum", outcome="accepted", **labels) > 0


# --- Gauges read at scrape ---------------------------------------------------------------


def test_queue_depth_and_oldest_queued_age_per_campaign():
    now = timezone.now()
    sending = CampaignFactory(status=Campaign.Status.SENDING)
    MessageFactory.create_batch(3, campaign=sending, queued_at=now - timedelta(hours=1))
    MessageFactory(campaign=sending, status=Message.Status.SUBMITTED)
    paused = CampaignFactory(status=Campaign.Status.PAUSED)
    MessageFactory(campaign=paused, queued_at=now - timedelta(minutes=5))
    drained = CampaignFactory(status=Campaign.Status.SENDING)
    CampaignFactory(status=Campaign.Status.DRAFT)
    MessageFactory(
        campaign=None,
        kind=Message.Kind.REPLY,
        provider="locmem",
        queued_at=now - timedelta(seconds=30),
    )

    parsed = samples(scrape())
    depth, age = "sms_queue_depth", "sms_queue_oldest_age_seconds"
    assert value(parsed, depth, campaign=str(sending.pk), status="sending") == 3
    assert 3600 <= value(parsed, age, campaign=str(sending.pk), status="sending") < 3660
    assert value(parsed, depth, campaign=str(paused.pk), status="paused") == 1
    assert 300 <= value(parsed, age, campaign=str(paused.pk), status="paused") < 360
    assert value(parsed, depth, campaign=str(drained.pk), status="sending") == 0
    assert value(parsed, age, campaign=str(drained.pk), status="sending") == 0
    assert value(parsed, depth, campaign="direct", status="") == 1
    assert 30 <= value(parsed, age, campaign="direct", status="") < 90
    # Only campaigns that can still send are listed.
    assert not [k for k in parsed if k[0] == depth and ("status", "draft") in k[1]]
    assert value(parsed, "sms_campaigns", status="sending") == 2
    assert value(parsed, "sms_campaigns", status="completed") == 0


def test_a_long_queue_shows_its_latest_snapshot_instead_of_being_counted(
    monkeypatch,
):
    from campaigns.models import CampaignSnapshot
    from smscampaigns import metrics_view

    monkeypatch.setattr(metrics_view, "EXACT_QUEUE", 2)
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    MessageFactory.create_batch(4, campaign=campaign)
    depth = "sms_queue_depth"
    # No snapshot yet: at least what was counted.
    assert (
        value(samples(scrape()), depth, campaign=str(campaign.pk), status="sending")
        == 3
    )
    CampaignSnapshot.objects.create(campaign=campaign, counts={"queued": 250_000})
    assert (
        value(samples(scrape()), depth, campaign=str(campaign.pk), status="sending")
        == 250_000
    )


def test_live_dispatchers_and_their_heartbeats():
    liveness = Liveness()
    session_id = liveness.open()
    try:
        parsed = samples(scrape())
    finally:
        liveness.close()
    assert value(parsed, "sms_dispatchers_alive") == 1
    [(labels, beat)] = [
        (dict(k[1]), v)
        for k, v in parsed.items()
        if k[0] == "sms_dispatcher_last_beat_timestamp_seconds"
    ]
    assert labels["dispatcher"] == str(session_id)
    assert abs(beat - time.time()) < 60

    assert value(samples(scrape()), "sms_dispatchers_alive") == 0


def test_the_scheduler_tick_is_the_workers_heartbeat(monkeypatch):
    monkeypatch.setattr(metrics, "_tick_written_at", 0.0)
    before = time.time()
    scheduling.tick()
    parsed = samples(scrape())
    tick = value(parsed, "sms_scheduler_last_tick_timestamp_seconds")
    assert before - 1 <= tick <= time.time() + 1


def test_figures_recorded_inside_a_callers_transaction_keep_its_durability():
    """Only a transaction of the figures' own commits without waiting for the disk."""
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    with transaction.atomic():
        metrics.sends_record(provider="locmem", accepted=1)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


@pytest.mark.django_db(transaction=True)
def test_figures_recorded_on_their_own_are_committed():
    metrics.sends_record(provider="locmem", accepted=2)
    metrics.sends_record(provider="locmem", accepted=3)
    parsed = samples(scrape())
    assert (
        value(parsed, "sms_messages_total", provider="locmem", outcome="accepted") == 5
    )
