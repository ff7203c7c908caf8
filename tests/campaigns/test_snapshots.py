from datetime import timedelta
from decimal import Decimal

import pytest

from django.core.cache import cache
from django.utils import timezone

from campaigns.models import Campaign, CampaignSnapshot, Message
from campaigns.sending import scheduling
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.launch import campaign_launch
from campaigns.sending.liveness import campaign_stalled
from campaigns.stats import (
    campaign_progress,
    campaign_snapshot_refresh,
    campaign_snapshot_take,
    campaign_snapshot_take_once,
    campaign_snapshots_prune,
    campaign_stats,
)
from contacts.models import ConsentEvent
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeats_from_other_tests():
    cache.clear()


def messages(campaign, status, n=1, **fields):
    return [
        MessageFactory(campaign=campaign, status=status, **fields) for _ in range(n)
    ]


def age(snapshot, **delta):
    CampaignSnapshot.objects.filter(pk=snapshot.pk).update(
        taken_at=snapshot.taken_at - timedelta(**delta)
    )


def test_a_snapshot_keeps_counts_cost_opt_outs_and_failure_reasons():
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    now = timezone.now()
    delivered = messages(
        campaign,
        "delivered",
        3,
        price=Decimal("0.0075"),
        currency="EUR",
        submitted_at=now - timedelta(hours=1),
    )
    messages(campaign, "queued", 2)
    messages(campaign, "undelivered", 2, error_code="30003", error_reason="Unreachable")
    messages(campaign, "rejected", 1, error_code="30007", error_reason="Filtered")
    messages(
        campaign, "failed", 1, error_code=Message.SkipReason.OPTED_OUT, error_reason="x"
    )
    messages(
        campaign, "failed", 1, error_code=Message.SkipReason.CANCELLED, error_reason="y"
    )
    ConsentEvent.objects.create(
        phone=delivered[0].to, kind=ConsentEvent.Kind.OPT_OUT, source="keyword"
    )

    snapshot = campaign_snapshot_take(campaign=campaign)

    assert snapshot.counts["delivered"] == 3
    assert snapshot.counts["queued"] == 2
    assert snapshot.counts["failed"] == 2
    assert snapshot.cost == Decimal("0.0225")
    assert snapshot.currency == "EUR"
    assert snapshot.opt_outs == 1
    assert snapshot.skipped_opted_out == 1
    # Skipped messages never reached a carrier: 3 delivered out of 6 outcomes.
    assert snapshot.delivery_rate == pytest.approx(3 / 6)
    assert snapshot.failure_reasons == [
        {"code": "30003", "reason": "Unreachable", "count": 2, "skipped": False},
        {"code": "30007", "reason": "Filtered", "count": 1, "skipped": False},
        {
            "code": Message.SkipReason.CANCELLED,
            "reason": "Not sent: the campaign was cancelled",
            "count": 1,
            "skipped": True,
        },
        {
            "code": Message.SkipReason.OPTED_OUT,
            "reason": "Not sent: the recipient had opted out",
            "count": 1,
            "skipped": True,
        },
    ]


def test_failure_reasons_are_the_top_ten_and_always_the_skipped():
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    for n in range(12):
        messages(campaign, "undelivered", 12 - n, error_code=f"E{n:02}")
    messages(campaign, "failed", 1, error_code=Message.SkipReason.OPTED_OUT)

    reasons = campaign_snapshot_take(campaign=campaign).failure_reasons

    assert [r["code"] for r in reasons if not r["skipped"]] == [
        f"E{n:02}" for n in range(10)
    ]
    assert [r["code"] for r in reasons if r["skipped"]] == [
        Message.SkipReason.OPTED_OUT
    ]


def test_progress_reads_a_fresh_snapshot_and_counts_again_when_stale():
    campaign = CampaignFactory(
        status=Campaign.Status.SENDING, started_at=timezone.now() - timedelta(hours=1)
    )
    messages(campaign, "queued", 2)

    first = campaign_progress(campaign=campaign)
    messages(campaign, "delivered", 1)
    again = campaign_progress(campaign=campaign)

    assert again.pk == first.pk
    assert CampaignSnapshot.objects.filter(campaign=campaign).count() == 1
    age(first, seconds=31)
    fresh = campaign_progress(campaign=campaign)
    assert fresh.pk != first.pk
    assert fresh.counts["delivered"] == 1
    assert CampaignSnapshot.objects.filter(campaign=campaign).count() == 2


def test_progress_of_a_draft_counts_nothing():
    campaign = CampaignFactory()

    assert campaign_progress(campaign=campaign) is None
    assert not CampaignSnapshot.objects.exists()


@pytest.mark.parametrize(
    ("ended_ago", "in_flight", "taken_before_end", "counts_again"),
    [
        # Receipts may still arrive for messages sent and not yet settled.
        (timedelta(hours=1), True, False, True),
        # Nothing left in flight: the figures are final.
        (timedelta(hours=1), False, False, False),
        # Receipts that late no longer come.
        (timedelta(days=4), True, False, False),
        # A snapshot from before the end misses the end.
        (timedelta(days=4), False, True, True),
    ],
)
def test_a_finished_campaign_is_counted_again_only_while_it_can_change(
    ended_ago, in_flight, taken_before_end, counts_again
):
    ended = timezone.now() - ended_ago
    campaign = CampaignFactory(
        status=Campaign.Status.COMPLETED,
        started_at=ended - timedelta(hours=1),
        completed_at=ended,
    )
    messages(campaign, "delivered", 2)
    if in_flight:
        messages(campaign, "sent", 1)
    snapshot = campaign_snapshot_take(campaign=campaign)
    taken_at = ended - timedelta(minutes=1) if taken_before_end else ended
    CampaignSnapshot.objects.filter(pk=snapshot.pk).update(taken_at=taken_at)

    latest = campaign_progress(campaign=campaign)

    assert (latest.pk != snapshot.pk) == counts_again
    assert CampaignSnapshot.objects.count() == (2 if counts_again else 1)


def test_tick_snapshots_sending_campaigns_at_most_every_fifteen_seconds():
    sending = CampaignFactory(status=Campaign.Status.SENDING, started_at=timezone.now())
    messages(sending, "submitted", 2)
    completed = CampaignFactory(
        status=Campaign.Status.COMPLETED, started_at=timezone.now()
    )
    messages(completed, "delivered", 1)

    assert scheduling.tick()["snapshots"] == 1
    assert scheduling.tick()["snapshots"] == 0

    snapshots = CampaignSnapshot.objects.filter(campaign=sending)
    assert snapshots.count() == 1
    assert snapshots.get().counts["submitted"] == 2
    assert not CampaignSnapshot.objects.filter(campaign=completed).exists()
    age(snapshots.get(), seconds=16)
    assert scheduling.tick()["snapshots"] == 1
    assert snapshots.count() == 2


def test_tick_follows_a_finished_campaign_until_its_receipts_are_in():
    campaign = CampaignFactory(
        status=Campaign.Status.COMPLETED,
        started_at=timezone.now() - timedelta(minutes=5),
        completed_at=timezone.now() - timedelta(minutes=1),
    )
    waiting = messages(campaign, "submitted", 2)
    first = campaign_snapshot_take(campaign=campaign)
    age(first, seconds=16)
    # The receipts arrive after the dispatcher's last snapshot.
    for message in waiting:
        message.status = "delivered"
        message.save()
    assert scheduling.tick()["snapshots"] == 1
    latest = CampaignSnapshot.objects.filter(campaign=campaign).latest()
    assert latest.counts["delivered"] == 2
    # Nothing left in flight: the figures are final, no more snapshots.
    age(latest, seconds=16)
    assert scheduling.tick()["snapshots"] == 0


def test_the_dispatcher_snapshots_the_campaign_it_completes_and_reports_it_works():
    contact_list = ContactListFactory()
    for _ in range(3):
        ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list], provider="locmem")
    campaign_launch(campaign=campaign)
    assert campaign_stalled(campaign.pk)

    Dispatcher(campaign.pk).run()

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    snapshot = CampaignSnapshot.objects.get(campaign=campaign)
    assert snapshot.counts["submitted"] == 3
    assert snapshot.taken_at >= campaign.completed_at
    assert not campaign_stalled(campaign.pk)


def test_pruning_keeps_the_last_hour_then_ten_minute_then_hourly_points():
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    # A snapshot a minute for three days.
    moments = [now - timedelta(minutes=i) for i in range(3 * 24 * 60)]
    CampaignSnapshot.objects.bulk_create(
        CampaignSnapshot(campaign=campaign, taken_at=moment) for moment in moments
    )
    first = min(moments)

    campaign_snapshots_prune(campaign_id=campaign.pk, now=now)

    kept = list(
        CampaignSnapshot.objects.filter(campaign=campaign).values_list(
            "taken_at", flat=True
        )
    )
    last_hour = [t for t in kept if now - t < timedelta(hours=1)]
    day = [t for t in kept if timedelta(hours=1) <= now - t < timedelta(days=1)]
    older = [t for t in kept if now - t >= timedelta(days=1)]
    assert len(last_hour) == 60
    assert 138 <= len(day) <= 140  # one per 10 minutes
    assert 48 <= len(older) <= 50  # one per hour, and the first
    assert first in kept
    assert len(kept) < 260
    # Pruning again changes nothing.
    assert campaign_snapshots_prune(campaign_id=campaign.pk, now=now) == 0


def test_cost_is_in_the_currency_with_the_largest_total():
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    messages(campaign, "delivered", 3, price=Decimal("0.01"), currency="EUR")
    messages(campaign, "sent", 1, price=Decimal("0.02"), currency="USD")
    messages(campaign, "queued", 2)

    stats = campaign_stats(campaign=campaign)

    assert (stats.cost, stats.currency) == (Decimal("0.03"), "EUR")
    assert list(stats.cost_by_currency.items()) == [
        ("EUR", Decimal("0.03")),
        ("USD", Decimal("0.02")),
    ]
    assert stats.counts["delivered"] == 3
    assert sum(stats.counts.values()) == 6


def test_a_snapshot_keeps_the_cost_in_every_currency():
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    messages(campaign, "delivered", 3, price=Decimal("0.0125"), currency="EUR")
    messages(campaign, "sent", 1, price=Decimal("0.02"), currency="USD")
    messages(campaign, "queued", 2)

    campaign_snapshot_take(campaign=campaign)

    snapshot = CampaignSnapshot.objects.get(campaign=campaign)
    assert (snapshot.cost, snapshot.currency) == (Decimal("0.0375"), "EUR")
    # Strings in JSON (no float rounding). No order: PostgreSQL's jsonb sorts keys
    # its own way, so the page orders them itself.
    assert all(isinstance(v, str) for v in snapshot.cost_by_currency.values())
    assert {k: Decimal(v) for k, v in snapshot.cost_by_currency.items()} == {
        "EUR": Decimal("0.0375"),
        "USD": Decimal("0.02"),
    }


@pytest.mark.parametrize("status", ["scheduled", "paused", "cancelled"])
def test_nothing_is_counted_before_a_campaign_starts_sending(status):
    campaign = CampaignFactory(
        status=status,
        # Not due yet: the tick would launch it.
        scheduled_at=timezone.now() + timedelta(days=1),
        completed_at=timezone.now() if status == "cancelled" else None,
    )

    assert campaign_progress(campaign=campaign) is None
    assert scheduling.tick()["snapshots"] == 0
    assert not CampaignSnapshot.objects.exists()


def test_a_snapshot_from_before_the_start_is_counted_again():
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    zeros = CampaignSnapshot.objects.create(campaign=campaign)
    Campaign.objects.filter(pk=campaign.pk).update(started_at=timezone.now())
    campaign.refresh_from_db()
    messages(campaign, "queued", 2)

    latest = campaign_progress(campaign=campaign)

    assert latest.pk != zeros.pk
    assert latest.counts["queued"] == 2
    assert campaign_progress(campaign=campaign, may_count=False).pk == latest.pk


def test_one_process_counts_a_campaign_at_a_time_and_viewers_never():
    campaign = CampaignFactory(
        status=Campaign.Status.SENDING, started_at=timezone.now() - timedelta(hours=1)
    )
    messages(campaign, "queued", 2)
    assert campaign_progress(campaign=campaign, may_count=False) is None
    first = campaign_progress(campaign=campaign)
    age(first, minutes=5)
    lock = f"campaigns:snapshot-lock:{campaign.pk}"
    cache.add(lock, True, 30)  # someone else is counting

    assert campaign_progress(campaign=campaign).pk == first.pk
    assert (
        campaign_snapshot_refresh(campaign=campaign, min_interval=timedelta(seconds=15))
        is None
    )
    assert campaign_snapshot_take_once(campaign=campaign) is None
    cache.delete(lock)
    assert campaign_progress(campaign=campaign, may_count=False).pk == first.pk

    fresh = campaign_progress(campaign=campaign)

    assert fresh.pk != first.pk
    assert CampaignSnapshot.objects.count() == 2
    assert cache.add(lock, True, 30)  # released after counting
