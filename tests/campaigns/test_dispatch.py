from datetime import timedelta

import pytest

from django.utils import timezone

from campaigns.models import Campaign, Message
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.launch import campaign_launch
from campaigns.sending.liveness import recover_stale
from contacts.models import Source
from contacts.services import contact_opt_out
from providers.backends import locmem
from providers.messages import SendError, SendErrorKind
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def audience():
    contact_list = ContactListFactory()
    contacts = [
        ContactFactory(first_name=name, attributes={"city": city})
        for name, city in [
            ("Ada", "London"),
            ("Alan", "Wilmslow"),
            ("Grace", ""),
            ("Edsger", "Austin"),
        ]
    ]
    for contact in contacts:
        contact.lists.add(contact_list)
    return contact_list, contacts


@pytest.fixture
def campaign(audience):
    contact_list, _ = audience
    campaign = CampaignFactory(
        lists=[contact_list],
        provider="locmem",
        body="Hi {first_name|there}, news from {city|your town}!",
    )
    campaign_launch(campaign=campaign)
    return campaign


def run(campaign, **kwargs):
    return Dispatcher(campaign.pk, **kwargs).run(deadline=_soon())


def _soon():
    import time

    return time.monotonic() + 10


def test_sends_every_message_personalized_once_and_completes(campaign, sms_outbox):
    step = run(campaign, batch_size=3)
    assert step.state == "done"
    texts = sorted(m.text for m in sms_outbox)
    assert texts == sorted(
        [
            "Hi Ada, news from London!",
            "Hi Alan, news from Wilmslow!",
            "Hi Grace, news from your town!",
            "Hi Edsger, news from Austin!",
        ]
    )
    messages = Message.objects.filter(campaign=campaign)
    assert {m.status for m in messages} == {"submitted"}
    assert all(m.provider_message_id.startswith("locmem-") for m in messages)
    message = messages.get(contact__first_name="Ada")
    assert (message.body, message.encoding, message.segments, message.attempts) == (
        "Hi Ada, news from London!",
        "gsm7",
        1,
        1,
    )
    assert {m.reference for m in sms_outbox} == {
        str(m.client_reference) for m in messages
    }
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.completed_at is not None


def test_a_stop_after_launch_is_honoured(campaign, audience, sms_outbox):
    _, contacts = audience
    contact_opt_out(phone=contacts[1].phone, source=Source.KEYWORD, text="STOP")
    run(campaign)
    assert contacts[1].phone not in {m.to for m in sms_outbox}
    skipped = Message.objects.get(campaign=campaign, contact=contacts[1])
    assert (skipped.status, skipped.error_code) == ("failed", "opted_out")
    assert len(sms_outbox) == 3


def test_retryable_errors_back_off_then_go_out(campaign, settings, sms_outbox):
    settings.SMS_RETRY_BASE_DELAY = 0.0
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.NOT_SENT, code="503", reason="Service Unavailable"
        ),
        count=2,
    )
    run(campaign)
    assert Message.objects.filter(campaign=campaign, status="submitted").count() == 4
    retried = Message.objects.filter(campaign=campaign, attempts=2)
    assert retried.count() == 2
    assert len(sms_outbox) == 4


def test_retries_stop_at_the_attempt_limit(campaign, settings):
    settings.SMS_RETRY_BASE_DELAY = 0.0
    settings.SMS_SEND_MAX_ATTEMPTS = 2
    settings.SMS_CIRCUIT_FAILURES = 100
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.NOT_SENT, code="500", reason="Internal Server Error"
        ),
        count=8,
    )
    run(campaign)
    failed = Message.objects.filter(campaign=campaign, status="failed")
    assert failed.count() == 4
    assert {(m.error_code, m.error_reason, m.attempts) for m in failed} == {
        ("500", "Internal Server Error", 2)
    }
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.FAILED


def test_permanent_errors_fail_at_once_with_the_vendor_reason(campaign, sms_outbox):
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.PERMANENT,
            code="invalid_number",
            reason="Invalid destination number",
        )
    )
    run(campaign)
    failed = Message.objects.get(campaign=campaign, status="failed")
    assert (failed.error_code, failed.error_reason, failed.attempts) == (
        "invalid_number",
        "Invalid destination number",
        1,
    )
    assert len(sms_outbox) == 3
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_rejected_credentials_pause_the_campaign_and_keep_messages_queued(campaign):
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.MISCONFIGURED,
            code="401",
            reason="Invalid credentials",
        ),
        count=4,
    )
    step = run(campaign)
    campaign.refresh_from_db()
    assert step.state == "stopped"
    assert campaign.status == Campaign.Status.PAUSED
    assert "credentials" in campaign.waiting_reason
    assert Message.objects.filter(campaign=campaign, status="queued").count() == 4


def test_pause_takes_effect_within_one_batch_and_resume_sends_the_rest_once(
    campaign, sms_outbox
):
    def pause_after_first_batch(dispatcher):
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)

    step = Dispatcher(campaign.pk, batch_size=2, on_batch=pause_after_first_batch).run(
        deadline=_soon()
    )
    assert step.state == "stopped"
    assert len(sms_outbox) == 2
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    run(campaign, batch_size=2)
    assert len(sms_outbox) == 4
    assert len({m.to for m in sms_outbox}) == 4


def test_messages_left_sending_by_a_dead_worker_become_unknown_not_resent(
    campaign, sms_outbox, settings
):
    stuck = Message.objects.filter(campaign=campaign).order_by("pk").first()
    Message.objects.filter(pk=stuck.pk).update(
        status=Message.Status.SENDING,
        handed_at=timezone.now(),
        status_changed_at=timezone.now()
        - timedelta(seconds=settings.SMS_SEND_LEASE_SECONDS + 1),
    )
    run(campaign)
    stuck.refresh_from_db()
    assert stuck.status == "unknown"
    assert stuck.to not in {m.to for m in sms_outbox}
    assert len(sms_outbox) == 3


def test_recover_stale_leaves_fresh_claims_alone(campaign):
    Message.objects.filter(campaign=campaign).update(
        status=Message.Status.SENDING, status_changed_at=timezone.now()
    )
    assert recover_stale(campaign_id=campaign.pk) == 0


def test_outside_the_send_window_nothing_is_sent(audience, sms_outbox):
    contact_list, _ = audience
    now = timezone.now()
    closed_day = (now.weekday() + 3) % 7
    campaign = CampaignFactory(
        lists=[contact_list],
        provider="locmem",
        send_window={
            "start": "09:00",
            "end": "17:00",
            "weekdays": [closed_day],
            "time_zone": "UTC",
        },
    )
    campaign_launch(campaign=campaign)
    step = Dispatcher(campaign.pk).step()
    assert step.state == "waiting"
    assert step.wait_until is not None
    assert step.wait_until > now
    assert sms_outbox == []
    campaign.refresh_from_db()
    assert "send window" in campaign.waiting_reason


def test_repeated_provider_failures_open_the_circuit_and_the_fallback_takes_over(
    campaign, settings, sms_outbox
):
    settings.SMS_RETRY_BASE_DELAY = 0.0
    settings.SMS_CIRCUIT_FAILURES = 2
    settings.SMS_CIRCUIT_RESET_SECONDS = 60
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "backup": {
            "BACKEND": "providers.backends.console.SmsBackend",
            "OPTIONS": {"stream": __import__("io").StringIO()},
        },
    }
    Campaign.objects.filter(pk=campaign.pk).update(fallback_provider="backup")
    locmem.fail_next(
        SendError(kind=SendErrorKind.NOT_SENT, code="502", reason="Bad Gateway"),
        count=2,
    )
    dispatcher = Dispatcher(campaign.pk, batch_size=1)
    dispatcher.step()
    dispatcher.settle()
    dispatcher.step()
    dispatcher.settle()
    # Circuit open for locmem: the rest goes through the fallback.
    dispatcher.run(deadline=_soon())
    assert (
        Message.objects.filter(
            campaign=campaign, status="submitted", provider="backup"
        ).count()
        >= 2
    )
    assert sms_outbox == []


def test_with_circuit_open_and_no_fallback_messages_wait_queued(campaign, settings):
    settings.SMS_RETRY_BASE_DELAY = 0.0
    settings.SMS_CIRCUIT_FAILURES = 1
    settings.SMS_CIRCUIT_RESET_SECONDS = 60
    locmem.fail_next(
        SendError(kind=SendErrorKind.NOT_SENT, code="503", reason="down"), count=1
    )
    dispatcher = Dispatcher(campaign.pk, batch_size=1)
    dispatcher.step()
    dispatcher.settle()
    step = dispatcher.step()
    assert step.state == "waiting"
    campaign.refresh_from_db()
    assert "Waiting for provider locmem" in campaign.waiting_reason
    assert Message.objects.filter(campaign=campaign, status="queued").count() == 4


def test_claimed_but_never_handed_over_messages_go_back_to_the_queue(
    campaign, sms_outbox, settings
):
    # A dispatcher claimed these, then died waiting for its turn at the rate limiter.
    Message.objects.filter(campaign=campaign).update(
        status=Message.Status.SENDING,
        attempts=1,
        status_changed_at=timezone.now()
        - timedelta(seconds=settings.SMS_SEND_LEASE_SECONDS + 1),
    )
    assert recover_stale(campaign_id=campaign.pk) == 0
    assert set(Message.objects.values_list("status", "attempts")) == {("queued", 0)}
    run(campaign)
    assert len(sms_outbox) == 4


def test_a_read_timeout_leaves_the_message_unknown_instead_of_sending_it_twice(
    campaign, settings, sms_outbox
):
    settings.SMS_RETRY_BASE_DELAY = 0.0
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.MAYBE_SENT, code="timeout", reason="Read timed out"
        )
    )
    run(campaign)
    unknown = Message.objects.get(campaign=campaign, status="unknown")
    assert unknown.attempts == 1
    assert "may have been sent" in unknown.error_reason
    assert len(sms_outbox) == 3


def test_a_claim_that_lost_its_messages_to_recovery_does_not_send_them(campaign):
    from campaigns.sending.claims import claim_batch, mark_handed

    claimed_at = timezone.now()
    claim = claim_batch(
        campaign_id=campaign.pk, provider="locmem", after_id=0, now=claimed_at, limit=10
    )
    ids = [m.id for m in claim.messages]
    # Meanwhile the lease ran out, recovery re-queued one, and another dispatcher took it.
    taken = ids[0]
    Message.objects.filter(pk=taken).update(
        status_changed_at=claimed_at + timedelta(minutes=6)
    )
    ours = mark_handed(ids, claimed_at=claimed_at, now=timezone.now())
    assert ours == set(ids) - {taken}
    # Handing over twice is refused too.
    assert mark_handed(ids, claimed_at=claimed_at, now=timezone.now()) == set()


def test_a_provider_that_breaks_mid_campaign_pauses_it_with_the_reason(
    campaign, settings, sms_outbox
):
    # Credentials removed after the campaign started: no worker may die of it.
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "broken": {
            "BACKEND": "providers.backends.sinch.SmsBackend",
            "OPTIONS": {"service_plan_id": "", "api_token": "", "number": ""},
        },
    }
    Campaign.objects.filter(pk=campaign.pk).update(provider="broken")

    step = run(campaign)

    assert step.state == "stopped"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "'broken'" in campaign.waiting_reason
    assert "SINCH_API_TOKEN" in campaign.waiting_reason
    assert set(Message.objects.values_list("status", flat=True)) == {"queued"}
    assert sms_outbox == []


def test_a_lost_answer_among_accepted_ones_leaves_the_circuit_closed(
    campaign, settings, sms_outbox
):
    from campaigns.sending.dispatch import circuit_for

    settings.SMS_CIRCUIT_FAILURES = 1
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.MAYBE_SENT, code="connection_lost", reason="closed"
        )
    )
    step = run(campaign)

    assert step.state == "done"
    assert sorted(Message.objects.values_list("status", flat=True)) == [
        "submitted",
        "submitted",
        "submitted",
        "unknown",
    ]
    assert circuit_for("locmem").state() == "closed"


def test_a_campaign_with_nothing_left_finishes_even_with_the_circuit_open(
    campaign, settings
):
    from campaigns.sending.dispatch import circuit_for

    settings.SMS_CIRCUIT_FAILURES = 1
    settings.SMS_CIRCUIT_RESET_SECONDS = 600
    Message.objects.filter(campaign=campaign).update(status=Message.Status.SUBMITTED)
    circuit_for("locmem").record_failure()

    step = Dispatcher(campaign.pk).step()

    assert step.state == "done"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
