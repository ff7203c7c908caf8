"""Benchmark: the admin pages that watch a campaign, with 1,000,000 messages.

Builds a database with 1,000,000 contacts and one campaign of 1,000,000 messages caught
mid-send (70 % delivered, 6 % awaiting a receipt, 3.5 % failed in several ways, 2 %
skipped for an opt-out, 18 % still queued...), two hours of progress snapshots and
2,000 STOP replies attributed to it, plus 29 other campaigns (10 completed with 5,000
messages each, 5 scheduled, 14 drafts). Then, with the Django test client logged in as
a superuser, times each page several times (median and max) and counts its queries:

- the campaign page (progress panel, chart, failure reasons) and its progress JSON
  and HTML (the panel's auto-refresh), reading a fresh snapshot;
- the campaign page when the snapshot is stale, so the view counts the campaign again;
- the campaign changelist (30 campaigns with progress bars);
- the message changelist: unfiltered, filtered by campaign and status, and searched
  by phone number and by provider message id.

Target: under 500 ms each. ``--reuse`` keeps the data of a previous run (same
``--messages``) instead of building it again (about a minute).

    .venv/bin/python bench/admin_pages.py [--messages N] [--runs R] [--reuse]
        [--database-url URL]
"""

import argparse
from datetime import timedelta
from decimal import Decimal

from admin_common import (
    TARGET_MS,
    add_admin_arguments,
    admin_client,
    delete_bench_user,
    print_header,
    report_page,
    report_service,
    start_django,
)
from common import (
    create_contacts,
    machine_load,
    phase,
    scalar,
    settle_database,
    truncate_app_tables,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_admin"
BIG_CAMPAIGN = "Bench: Black Friday"
SENDING_FOR = timedelta(hours=2)
OTHER_COMPLETED, OTHER_MESSAGES, OTHER_SCHEDULED, OTHER_DRAFTS = 10, 5_000, 5, 14
STOP_REPLIES = 2_000

# Share of the sent part of the big campaign (per mille) in each outcome, with the
# error code and reason a provider would give.
OUTCOMES = [
    (855, "delivered", "", ""),
    (50, "sent", "", ""),
    (25, "submitted", "", ""),
    (8, "undelivered", "30003", "Unreachable destination handset"),
    (7, "undelivered", "30005", "Unknown destination handset"),
    (6, "failed", "30006", "Landline or unreachable carrier"),
    (4, "rejected", "30007", "Message filtered by the carrier"),
    (3, "expired", "30008", "Message expired before it could be delivered"),
    (2, "unknown", "", "In flight when its sender stopped"),
    (40, "failed", "opted_out", "Recipient opted out before this message was sent"),
]
SENT_SHARE = 0.82  # the rest is still queued (the newest ids: claims go in id order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_admin_arguments(
        parser, size="messages", default_database_url=DEFAULT_DATABASE_URL
    )
    args = parser.parse_args()

    print(f"Admin pages with {args.messages:,} messages in {args.database_url}")
    print(f"  {machine_load()}")
    start_django(args.database_url)
    if not (args.reuse and _built(args.messages)):
        _build(args.messages)
    _measure(args.runs)


def _built(messages: int) -> bool:
    from campaigns.models import Campaign

    campaign = Campaign.objects.filter(name=BIG_CAMPAIGN).first()
    if campaign is None:
        return False
    count = scalar(
        "SELECT count(*) FROM campaigns_message WHERE campaign_id = %s", [campaign.pk]
    )
    return count == messages


# --- Data --------------------------------------------------------------------------


def _build(messages: int) -> None:
    with phase("empty the tables"):
        truncate_app_tables()
        delete_bench_user()
    with phase(f"{messages:,} contacts"):
        create_contacts(messages)
    with phase(f"campaign of {messages:,} messages"):
        campaign = _big_campaign(messages)
    with phase(f"{STOP_REPLIES:,} STOP replies"):
        _stop_replies(campaign)
    with phase("other campaigns"):
        _other_campaigns()
    with phase("two hours of snapshots"):
        _snapshot_history(campaign)
    with phase("ANALYZE and CHECKPOINT"):
        settle_database()


def _big_campaign(messages: int):
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign

    now = timezone.now()
    started = now - SENDING_FOR
    campaign = Campaign.objects.create(
        name=BIG_CAMPAIGN,
        body="Hi {first_name|there}, 30% off everything until Sunday.",
        provider="simulator",
        status=Campaign.Status.SENDING,
        scheduled_at=started,
        started_at=started,
    )
    # Outcome of message i among the sent ones: a scramble of its id over the
    # per-mille table, so every status is spread over the whole campaign.
    cases, lower = [], 0
    for share, status, code, reason in OUTCOMES:
        cases.append((lower, lower + share, status, code, reason))
        lower += share
    assert lower == 1000
    outcome = " ".join(
        f"WHEN (c.id::bigint * 7919) %% 1000 < {upper} THEN ARRAY['{status}', '{code}', '{reason}']"
        for _, upper, status, code, reason in cases
    )
    sent_upto = int(messages * SENT_SHARE)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO campaigns_message (
                kind, campaign_id, contact_id, "to", body, provider, sender,
                provider_message_id, client_reference, status, error_code, error_reason,
                encoding, segments, price, currency, attempts, queued_at, handed_at,
                submitted_at, status_changed_at, time_zone
            )
            SELECT 'campaign', %(campaign)s, c.id, c.phone,
                   'Hi ' || coalesce(nullif(c.first_name, ''), 'there')
                       || ', 30%% off everything until Sunday.',
                   'simulator', '',
                   CASE WHEN sent THEN 'SIM' || lpad(to_hex(c.id), 10, '0') ELSE '' END,
                   overlay(gen_random_uuid()::text placing lpad(to_hex(c.id), 8, '0')
                           from 1 for 8)::uuid,
                   o[1], o[2], o[3], 'gsm7', 1,
                   CASE WHEN sent AND o[2] <> 'opted_out' THEN 0.0075 END,
                   CASE WHEN sent AND o[2] <> 'opted_out' THEN 'USD' ELSE '' END,
                   CASE WHEN sent AND o[2] <> 'opted_out' THEN 1 ELSE 0 END,
                   %(started)s,
                   CASE WHEN sent THEN at END,
                   CASE WHEN sent AND o[2] <> 'opted_out' THEN at END,
                   CASE WHEN sent THEN at + interval '20 seconds' ELSE %(started)s END,
                   c.time_zone
            FROM contacts_contact c,
                 LATERAL (SELECT c.id <= %(sent_upto)s AS sent) s,
                 LATERAL (SELECT %(started)s::timestamptz
                          + (c.id::float / %(sent_upto)s) * %(span)s * interval '1 second'
                          AS at) t,
                 LATERAL (SELECT CASE WHEN NOT sent THEN ARRAY['queued', '', '']
                                      {outcome} END AS o) x
            WHERE c.id <= %(messages)s
            ORDER BY c.id
            """,
            {
                "campaign": campaign.pk,
                "started": started,
                "sent_upto": sent_upto,
                "span": (now - started).total_seconds() - 60,
                "messages": messages,
            },
        )
    return campaign


def _stop_replies(campaign) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO contacts_consentevent
                (phone, contact_id, kind, source, text, provider, created_at)
            SELECT m."to", m.contact_id, 'opt_out', 'keyword', 'STOP', 'simulator',
                   m.submitted_at + interval '5 minutes'
            FROM campaigns_message m
            WHERE m.campaign_id = %s AND m.status = 'delivered'
            ORDER BY m.id
            LIMIT %s
            """,
            [campaign.pk, STOP_REPLIES],
        )


def _other_campaigns() -> None:
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign
    from campaigns.stats import campaign_snapshot_take

    now = timezone.now()
    for n in range(OTHER_COMPLETED):
        campaign = Campaign.objects.create(
            name=f"Bench: weekly newsletter {n + 1}",
            body="This week: {first_name|friend}, new arrivals.",
            provider="simulator",
            status=Campaign.Status.COMPLETED,
            scheduled_at=now - timedelta(days=7 * (n + 1)),
            started_at=now - timedelta(days=7 * (n + 1)),
            completed_at=now - timedelta(days=7 * (n + 1), hours=-1),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO campaigns_message (
                    kind, campaign_id, contact_id, "to", body, provider, sender,
                    provider_message_id, client_reference, status, error_code,
                    error_reason, encoding, segments, price, currency, attempts,
                    queued_at, submitted_at, status_changed_at, time_zone
                )
                SELECT 'campaign', %(campaign)s, c.id, c.phone, 'This week: new arrivals.',
                       'simulator', '', '', gen_random_uuid(),
                       CASE WHEN c.id %% 20 = 0 THEN 'undelivered' ELSE 'delivered' END,
                       CASE WHEN c.id %% 20 = 0 THEN '30003' ELSE '' END,
                       CASE WHEN c.id %% 20 = 0 THEN 'Unreachable destination handset'
                            ELSE '' END,
                       'gsm7', 1, 0.0075, 'USD', 1, %(at)s, %(at)s, %(at)s, c.time_zone
                FROM contacts_contact c
                WHERE c.id > %(offset)s AND c.id <= %(offset)s + %(count)s
                """,
                {
                    "campaign": campaign.pk,
                    "at": campaign.started_at,
                    "offset": n * OTHER_MESSAGES,
                    "count": OTHER_MESSAGES,
                },
            )
        campaign_snapshot_take(campaign=campaign)
    for n in range(OTHER_SCHEDULED):
        Campaign.objects.create(
            name=f"Bench: reminder {n + 1}",
            body="Reminder: {first_name|friend}, the sale ends tonight.",
            provider="simulator",
            status=Campaign.Status.SCHEDULED,
            scheduled_at=now + timedelta(days=n + 1),
        )
    for n in range(OTHER_DRAFTS):
        Campaign.objects.create(
            name=f"Bench: draft {n + 1}",
            body="Draft {n}",
            provider="simulator",
        )


def _snapshot_history(campaign) -> None:
    """Snapshots as the scheduler would have left them after pruning: one per 10
    minutes for the first hour, then one every 15 seconds, with figures growing
    towards today's counts (receipts lagging the sends by a minute or so)."""
    from django.utils import timezone

    from campaigns.models import CampaignSnapshot
    from campaigns.stats import campaign_snapshot_take

    final = campaign_snapshot_take(campaign=campaign)
    started, end = campaign.started_at, final.taken_at
    span = (end - started).total_seconds()
    moments = [started + timedelta(minutes=10 * i) for i in range(1, 6)]
    moment = end - timedelta(hours=1)
    while moment < end - timedelta(seconds=15):
        moments.append(moment)
        moment += timedelta(seconds=15)
    total = sum(final.counts.values())
    snapshots = []
    for moment in moments:
        done = (moment - started).total_seconds() / span
        settled = max(done - 60 / span, 0)
        counts = {
            status: int(n * (settled if status not in ("sent", "submitted") else done))
            for status, n in final.counts.items()
        }
        counts["queued"] = total - sum(n for s, n in counts.items() if s != "queued")
        outcomes = sum(
            counts[s]
            for s in ("delivered", "undelivered", "failed", "rejected", "expired")
        ) - int(final.skipped_opted_out * settled)
        snapshots.append(
            CampaignSnapshot(
                campaign=campaign,
                taken_at=moment,
                counts=counts,
                delivery_rate=counts["delivered"] / outcomes if outcomes else None,
                opt_outs=int(final.opt_outs * settled),
                skipped_opted_out=int(final.skipped_opted_out * settled),
                cost=final.cost * Decimal(f"{done:.4f}"),
                currency=final.currency,
                failure_reasons=[
                    {**reason, "count": int(reason["count"] * settled)}
                    for reason in final.failure_reasons
                ],
            )
        )
    CampaignSnapshot.objects.bulk_create(snapshots)
    # The final snapshot is the latest: move it to now.
    CampaignSnapshot.objects.filter(pk=final.pk).update(taken_at=timezone.now())


# --- Measurements ------------------------------------------------------------------


def _measure(runs: int) -> None:
    from django.db.models import F
    from django.utils import timezone

    from campaigns.models import Campaign, CampaignSnapshot, Message
    from campaigns.stats import campaign_snapshot_take

    big = Campaign.objects.get(name=BIG_CAMPAIGN)
    total = scalar("SELECT count(*) FROM campaigns_message")
    in_big = scalar(
        "SELECT count(*) FROM campaigns_message WHERE campaign_id = %s", [big.pk]
    )
    snapshots = CampaignSnapshot.objects.filter(campaign=big).count()
    sample = Message.objects.filter(campaign=big, status="delivered").order_by("id")[
        1234
    ]
    client = admin_client()

    print()
    print(
        f"{total:,} messages, {in_big:,} in campaign #{big.pk} "
        f"({snapshots} snapshots); {Campaign.objects.count()} campaigns"
    )
    national = f"({sample.to[2:5]}) {sample.to[5:8]}-{sample.to[8:]}"
    pages = [
        ("campaign page", f"/admin/campaigns/campaign/{big.pk}/change/"),
        ("progress JSON", f"/admin/campaigns/campaign/{big.pk}/progress/"),
        (
            "progress HTML (auto-refresh)",
            f"/admin/campaigns/campaign/{big.pk}/progress/?format=html",
        ),
        ("campaign changelist", "/admin/campaigns/campaign/"),
        ("message changelist", "/admin/campaigns/message/"),
        (
            "messages: campaign + delivered",
            f"/admin/campaigns/message/?campaign__id__exact={big.pk}&status__exact=delivered",
        ),
        (
            "messages: campaign + failed",
            f"/admin/campaigns/message/?campaign__id__exact={big.pk}&outcome=failed",
        ),
        (
            "messages: campaign + error code",
            f"/admin/campaigns/message/?campaign__id__exact={big.pk}"
            "&outcome=failed&error_code=30007",
        ),
        (
            "messages: campaign + opted out",
            f"/admin/campaigns/message/?campaign__id__exact={big.pk}&outcome=opted_out",
        ),
        (
            "messages: campaign + replied STOP",
            f"/admin/campaigns/message/?campaign__id__exact={big.pk}"
            "&outcome=replied_stop",
        ),
        (
            "messages: search phone (national)",
            f"/admin/campaigns/message/?q={national}",
        ),
        (
            "messages: search provider id",
            f"/admin/campaigns/message/?q={sample.provider_message_id}",
        ),
    ]
    print()
    print_header(f"target < {TARGET_MS:g} ms")
    for label, url in pages:
        # The pages read the latest snapshot; a fresh one means no view counts.
        campaign_snapshot_take(campaign=big)
        report_page(label, url, client, runs, show_target=False)

    # Figures older than 30 s. The page shows them at once (its script then asks for
    # fresh ones); the progress view counts the campaign: what the auto-refresh pays
    # at most every 30 s when no worker takes snapshots (e.g. receipts still arriving
    # after the campaign completed).
    def make_stale() -> None:
        CampaignSnapshot.objects.filter(
            campaign=big, taken_at__gt=timezone.now() - timedelta(minutes=1)
        ).update(taken_at=F("taken_at") - timedelta(minutes=1))

    for label, url in [
        ("campaign page, stale figures", f"/admin/campaigns/campaign/{big.pk}/change/"),
        (
            "progress HTML, stale: counts",
            f"/admin/campaigns/campaign/{big.pk}/progress/?format=html",
        ),
    ]:
        report_page(label, url, client, runs, before=make_stale, show_target=False)
    report_service(
        "campaign_snapshot_take (service)",
        runs,
        lambda: campaign_snapshot_take(campaign=big),
    )
    print()
    print(f"({machine_load()} at the end)")


if __name__ == "__main__":
    main()
