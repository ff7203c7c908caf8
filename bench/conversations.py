"""Benchmark: the inbox, conversations and replies with a busy inbox.

Builds 1,000,000 contacts (``--contacts``), one campaign sent to all of them an hour
ago from one number, and 100,000 replies (``--replies``: two from each of 50,000
contacts, a quarter of them unread, a few STOPs). Then times, with the Django test
client logged in as a superuser:

- the admin index (unread count), the inbox (unread count, each row's conversation
  and the campaign it answers), and a conversation page;
- ``GET /api/v1/conversations/`` (first page and ``?unread=true``) and one thread;
- storing a new reply (``inbound_message_record``, which finds the campaign message
  it answers) and a conversation reply (``conversation_reply``).

Target: under 500 ms each page, a few ms per stored reply.

    .venv/bin/python bench/conversations.py [--contacts N] [--replies N] [--runs R]
        [--reuse] [--database-url URL]
"""

import argparse

from admin_common import (
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
    settle_database,
    truncate_app_tables,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_convo"
OUR_NUMBER = "+12025550100"
CAMPAIGN = "Bench: replies"


def build(contacts: int, replies: int) -> None:
    from django.db import connection

    from campaigns.models import Campaign, Message
    from webhooks.models import InboundMessage

    truncate_app_tables()
    with phase(f"{contacts:,} contacts"):
        create_contacts(contacts)
    campaign = Campaign.objects.create(
        name=CAMPAIGN, body="Sale!", provider="simulator", sender=OUR_NUMBER
    )
    qn = connection.ops.quote_name
    message_table = qn(Message._meta.db_table)
    inbound_table = qn(InboundMessage._meta.db_table)
    with phase(f"{contacts:,} campaign messages"), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {message_table} (
                kind, campaign_id, contact_id, "to", body, provider, sender,
                provider_message_id, client_reference, status, error_code,
                error_reason, encoding, segments, currency, attempts, queued_at,
                handed_at,
                submitted_at, status_changed_at, time_zone
            )
            SELECT 'campaign', %s, c.id, c.phone, 'Sale!', 'simulator', %s,
                   'sim-' || c.id, gen_random_uuid(), 'delivered', '', '', 'gsm7',
                   1, '', 1, now() - interval '1 hour', now() - interval '1 hour',
                   now() - interval '1 hour', now(), c.time_zone
            FROM contacts_contact c ORDER BY c.id
            """,
            [campaign.pk, OUR_NUMBER],
        )
    writers = replies // 2
    with phase(f"{replies:,} replies"), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {inbound_table} (
                provider, provider_message_id, from_number, to_number, text,
                keyword, contact_id, received_at, payload, read_at, in_reply_to_id
            )
            SELECT 'simulator', 'mo-' || c.id || '-' || n, c.phone, %s,
                   CASE WHEN c.id %% 97 = 0 AND n = 2 THEN 'STOP'
                        ELSE 'Reply ' || n || ' from ' || c.id END,
                   CASE WHEN c.id %% 97 = 0 AND n = 2 THEN 'opt_out' ELSE '' END,
                   c.id, now() - interval '30 minutes' + n * interval '1 minute'
                         + (c.id %% 600) * interval '1 second',
                   '{{}}'::jsonb,
                   CASE WHEN c.id %% 4 = 0 THEN NULL ELSE now() END,
                   m.id
            FROM (SELECT id, phone FROM contacts_contact ORDER BY id LIMIT %s) c
            CROSS JOIN generate_series(1, 2) AS n
            JOIN {message_table} m ON m.contact_id = c.id AND m.campaign_id = %s
            """,
            [OUR_NUMBER, writers, campaign.pk],
        )
    settle_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_admin_arguments(
        parser, size="contacts", default_database_url=DEFAULT_DATABASE_URL
    )
    parser.add_argument("--replies", type=int, default=100_000)
    args = parser.parse_args()
    start_django(args.database_url)

    from django.urls import reverse

    from contacts.models import Contact
    from providers.messages import InboundSms
    from webhooks.models import InboundMessage
    from webhooks.services import conversation_reply, inbound_message_record

    if not args.reuse:
        delete_bench_user()
        build(args.contacts, args.replies)
    client = admin_client()
    # A contact who wrote, and one who did not yet (the new replies come from them).
    writer = (
        Contact.objects.filter(inbound_messages__keyword="").order_by("pk")[:1].get()
    )
    quiet = Contact.objects.order_by("-pk")[:1].get()
    print(
        f"{Contact.objects.count():,} contacts, "
        f"{InboundMessage.objects.count():,} replies "
        f"({InboundMessage.objects.filter(read_at__isnull=True).count():,} unread); "
        f"{machine_load()}"
    )
    print_header("target")
    runs = args.runs
    report_page("admin index", reverse("admin:index"), client, runs)
    inbox = reverse("admin:webhooks_inboundmessage_changelist")
    report_page("inbox", inbox, client, runs)
    report_page("inbox, unread only", inbox + "?unread=1", client, runs)
    conversation = reverse(
        "admin:webhooks_inboundmessage_conversation", args=[writer.pk]
    )
    report_page("conversation page", conversation, client, runs)
    report_page("API conversations", "/api/v1/conversations/", client, runs)
    report_page(
        "API conversations ?unread=true",
        "/api/v1/conversations/?unread=true",
        client,
        runs,
    )
    report_page(
        "API thread ?page=last",
        f"/api/v1/conversations/{writer.pk}/?page=last",
        client,
        runs,
    )

    counter = iter(range(1_000_000))

    def store():
        return inbound_message_record(
            provider="simulator",
            inbound=InboundSms(
                from_number=quiet.phone,
                to_number=OUR_NUMBER,
                text="When does it end?",
                provider_message_id=f"bench-new-{next(counter)}",
            ),
        )

    stored = report_service("store a reply (attributed)", runs, store)
    assert stored.in_reply_to_id is not None
    report_service(
        "conversation_reply",
        runs,
        lambda: conversation_reply(contact=quiet, text="Until Sunday."),
    )
    delete_bench_user()


if __name__ == "__main__":
    main()
