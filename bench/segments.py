"""Benchmark: counting and launching segments over a million contacts.

Creates N contacts (2 % opted out, 1 % suppressed), a list holding 60 % of them, and a
past campaign "Welcome" delivered to every fifth contact ten days ago. Then:

1. times the count of a segment of three conditions (in the list, attribute ``tier``
   ≥ 1 as a number, did not receive "Welcome"): the admin builder's and the API's
   ``count``, one query (median of 5 runs, after one warm-up);
2. times launching a campaign to a segment matching everyone (country US, ``tier`` ≥
   0, no marketing message in the last 3 days) against launching the same people as a
   plain list, each on a fresh outbox (only the "Welcome" messages in it).

Targets: count ≤ 1 s, segment launch ≤ 15 s (1,000,000 contacts).

    .venv/bin/python bench/segments.py [--contacts N] [--database-url URL] [--reuse]
        [--count-only]

``--reuse`` keeps a previous run's contacts, lists and segments (to measure again
when the machine is quieter); ``--count-only`` skips the launches.
"""

import argparse
import statistics
import time

from common import (
    add_common_arguments,
    add_to_list,
    create_contacts,
    machine_load,
    phase,
    scalar,
    settle_database,
    setup_django,
    verdict,
)

COUNT_TARGET = 1.0
LAUNCH_TARGET = 15.0
COUNT_RUNS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--count-only", action="store_true")
    add_common_arguments(parser)
    args = parser.parse_args()

    print(f"Setting up {args.contacts:,} contacts in {args.database_url}")
    print(f"  {machine_load()}")
    with phase("migrate and empty the tables"):
        setup_django(args.database_url, empty_tables=not args.reuse)

    from campaigns.models import Campaign
    from campaigns.segments import Segment, clean_conditions

    if args.reuse:
        _measure(
            welcome=Campaign.objects.get(name="Welcome"),
            three=Segment.objects.get(name="Bench: three conditions"),
            all_of_them=Segment.objects.get(name="Bench: everyone, as a segment"),
            everyone=_list("Bench: everyone"),
            customers_id=_list("Bench: customers").pk,
            count_only=args.count_only,
        )
        return

    with phase("contacts, opt-outs and suppressions"):
        create_contacts(args.contacts, opted_out_every=50, suppressed_every=100)
    with phase("lists"):
        customers, customers_size = add_to_list(
            "Bench: customers", "mod(c.id, 10) >= 4"
        )
        everyone, everyone_size = add_to_list("Bench: everyone")
    welcome = Campaign.objects.create(
        name="Welcome", body="Welcome!", provider="simulator", status="completed"
    )
    with phase("past campaign messages"):
        welcomed = _reset_outbox(welcome.pk)
    with phase("ANALYZE and CHECKPOINT"):
        settle_database()
    print(f"  list sizes:          {customers_size:,} and {everyone_size:,}")
    print(f"  got 'Welcome':       {welcomed:,}")

    all_of_them = Segment.objects.create(
        name="Bench: everyone, as a segment",
        conditions=clean_conditions(
            [
                {"type": "country", "countries": ["US"]},
                {"type": "attribute", "key": "tier", "op": "gte", "value": 0},
                {"type": "quiet", "days": 3},
            ]
        ),
    )
    three = Segment.objects.create(
        name="Bench: three conditions",
        conditions=clean_conditions(
            [
                {"type": "list", "list": customers.pk},
                {"type": "attribute", "key": "tier", "op": "gte", "value": 1},
                {"type": "received", "campaign": welcome.pk, "negate": True},
            ]
        ),
    )
    _measure(
        welcome=welcome,
        three=three,
        all_of_them=all_of_them,
        everyone=everyone,
        customers_id=customers.pk,
        count_only=args.count_only,
    )


def _list(name: str):
    from contacts.models import ContactList

    return ContactList.objects.get(name=name)


def _measure(*, welcome, three, all_of_them, everyone, customers_id, count_only):
    from campaigns.segments import segment_counts

    _reset_outbox(welcome.pk)
    settle_database()
    segment_counts(three.q())  # warm-up
    timings, counts = [], None
    for _ in range(COUNT_RUNS):
        started = time.perf_counter()
        counts = segment_counts(three.q())
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    # Baselines taken in the same minute, for a loaded machine: a plain count of
    # the table, and the composer's count of a list's audience.
    from contacts.models import Contact

    table = _median_seconds(lambda: Contact.objects.count())
    in_list = _median_seconds(
        lambda: Contact.objects.in_lists([customers_id]).reachable().count()
    )
    expected = scalar(
        """
        SELECT count(*) FROM contacts_contact c
        WHERE c.id IN (SELECT contact_id FROM contacts_listmembership
                       WHERE contact_list_id = %s)
          AND (c.attributes ->> 'tier')::int >= 1
          AND c.id NOT IN (SELECT contact_id FROM campaigns_message
                           WHERE campaign_id = %s)
        """,
        [customers_id, welcome.pk],
    )
    print()
    print("Count of a segment of three conditions")
    print(f"  ({machine_load()})")
    print(
        f"  median of {COUNT_RUNS}:        {median:.3f} s (max {max(timings):.3f} s; "
        f"target <= {COUNT_TARGET:g} s: "
        f"{verdict(median, COUNT_TARGET, higher_is_better=False)})"
    )
    print(
        f"  matches:             {counts['contacts']:,} (expected {expected:,}), "
        f"{counts['reachable']:,} reachable"
    )
    print(f"  baseline: count(*) of the contacts:        {table:.3f} s")
    print(f"  baseline: reachable contacts of the list:  {in_list:.3f} s")

    if count_only:
        return
    results = {}
    for label, lists, segments in (
        ("plain list", [everyone], []),
        ("segment", [], [all_of_them]),
    ):
        results[label] = _timed_launch(welcome.pk, label, lists, segments)
    print()
    print("Launch (fresh outbox each time, 'Welcome' messages only)")
    for label, (seconds, created, load) in results.items():
        line = f"  {label + ':':<20} {seconds:.2f} s, {created:,} messages ({load})"
        if label == "segment":
            line += (
                f"; target <= {LAUNCH_TARGET:g} s: "
                f"{verdict(seconds, LAUNCH_TARGET, higher_is_better=False)}"
            )
        print(line)
    ratio = results["segment"][0] / results["plain list"][0]
    print(f"  segment / list:      {ratio:.2f}")


def _median_seconds(run) -> float:
    timings = []
    for _ in range(COUNT_RUNS):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _reset_outbox(welcome_id: int) -> int:
    """Empty the outbox but for "Welcome", delivered ten days ago to every fifth
    contact; return how many got it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE campaigns_message RESTART IDENTITY CASCADE")
        cursor.execute(
            """
            INSERT INTO campaigns_message (
                kind, campaign_id, contact_id, "to", body, provider, sender,
                provider_message_id, client_reference, status, error_code,
                error_reason, encoding, segments, currency, attempts, queued_at,
                handed_at, submitted_at, status_changed_at, time_zone
            )
            SELECT 'campaign', %s, c.id, c.phone, 'Welcome!', 'simulator', '',
                   '', gen_random_uuid(), 'delivered', '', '', 'gsm7', 1, '', 1,
                   now() - interval '10 days', now() - interval '10 days',
                   now() - interval '10 days', now() - interval '10 days', c.time_zone
            FROM contacts_contact c
            WHERE mod(c.id, 5) = 0
            ORDER BY c.id
            """,
            [welcome_id],
        )
        return cursor.rowcount


def _timed_launch(welcome_id: int, label: str, lists, segments):
    from campaigns.models import Campaign
    from campaigns.sending.launch import campaign_launch

    _reset_outbox(welcome_id)
    settle_database()
    campaign = Campaign.objects.create(
        name=f"Bench launch: {label}",
        body="Hi {first_name|there}, 20% off this weekend.",
        provider="simulator",
    )
    campaign.lists.set(lists)
    campaign.segments.set(segments)
    started = time.perf_counter()
    created = campaign_launch(campaign=campaign)
    return time.perf_counter() - started, created, machine_load()


if __name__ == "__main__":
    main()
