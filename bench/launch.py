"""Benchmark: launching a campaign to a million contacts.

Creates N contacts in two overlapping lists (some opted out, some suppressed), then
times ``campaign_launch`` and reports the seconds it took, the messages it created and
the memory this process used while it ran. A second launch, which should add nothing,
is timed too. Targets: at most 15 s and 250 MB peak RSS for 1,000,000 contacts.

    .venv/bin/python bench/launch.py [--contacts N] [--database-url URL]
"""

import argparse
import gc
import time

from common import (
    Audience,
    RssSampler,
    add_common_arguments,
    add_to_list,
    create_contacts,
    machine_load,
    max_rss_mb,
    phase,
    rss_mb,
    scalar,
    settle_database,
    setup_django,
    verdict,
)

TARGET_SECONDS = 15.0
TARGET_PEAK_MB = 250.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    add_common_arguments(parser)
    args = parser.parse_args()

    print(f"Setting up {args.contacts:,} contacts in {args.database_url}")
    with phase("migrate and empty the tables"):
        print(f"  {machine_load()}")
        setup_django(args.database_url)

    from campaigns.models import Campaign, Message
    from campaigns.sending.launch import campaign_launch

    with phase("contacts, opt-outs and suppressions"):
        audience = create_contacts(
            args.contacts, opted_out_every=50, suppressed_every=100
        )
    # Two lists overlapping on 30 % of the contacts: 70 % in the first, 60 % in the
    # second, so the launch has to de-duplicate.
    with phase("list memberships"):
        first, first_size = add_to_list("Bench: newsletter", "mod(c.id, 10) < 7")
        second, second_size = add_to_list("Bench: customers", "mod(c.id, 10) >= 4")
    with phase("ANALYZE and CHECKPOINT"):
        settle_database()
    expected = _eligible()
    campaign = Campaign.objects.create(
        name="Bench launch",
        body="Hi {first_name|there}, 20% off this weekend. Reply STOP to opt out.",
        provider="simulator",
    )
    campaign.lists.set([first, second])
    _print_audience(audience, first_size, second_size, expected)

    gc.collect()
    rss_before, max_rss_before = rss_mb(), max_rss_mb()
    with RssSampler() as sampler:
        started = time.perf_counter()
        created = campaign_launch(campaign=campaign)
        seconds = time.perf_counter() - started
    rss_after, max_rss_after = rss_mb(), max_rss_mb()

    started = time.perf_counter()
    created_again = campaign_launch(campaign=campaign)
    seconds_again = time.perf_counter() - started
    rows = Message.objects.filter(campaign=campaign).count()

    print()
    print("First launch")
    print(f"  ({machine_load()} at the end)")
    print(
        f"  time:                {seconds:.2f} s (target <= {TARGET_SECONDS:g} s: "
        f"{verdict(seconds, TARGET_SECONDS, higher_is_better=False)})"
    )
    print(
        f"  messages created:    {created:,} (expected {expected:,}; "
        f"{rows:,} rows in the table)"
    )
    print(f"  rate:                {created / seconds:,.0f} messages/s")
    print(f"  RSS before:          {rss_before:.1f} MB")
    print(
        f"  RSS peak (sampled):  {sampler.peak:.1f} MB (target <= "
        f"{TARGET_PEAK_MB:g} MB: "
        f"{verdict(sampler.peak, TARGET_PEAK_MB, higher_is_better=False)}); "
        f"+{sampler.peak - rss_before:.1f} MB over before"
    )
    print(f"  RSS after:           {rss_after:.1f} MB")
    print(
        f"  ru_maxrss:           {max_rss_before:.1f} MB before, "
        f"{max_rss_after:.1f} MB after (process lifetime, setup included)"
    )
    print("Second launch (nothing new to queue)")
    print(f"  time:                {seconds_again:.2f} s")
    print(f"  messages created:    {created_again:,} (expected 0)")


def _eligible() -> int:
    """The launch's expected count, computed independently of the launch's query."""
    return scalar(
        """
        SELECT count(*) FROM contacts_contact c
        WHERE c.opted_out_at IS NULL
          AND c.id IN (SELECT contact_id FROM contacts_listmembership)
          AND c.phone NOT IN (SELECT phone FROM contacts_suppression)
        """
    )


def _print_audience(
    audience: Audience, first_size: int, second_size: int, expected: int
) -> None:
    print(f"  contacts:            {audience.contacts:,}")
    print(
        f"  list sizes:          {first_size:,} and {second_size:,} "
        f"({first_size + second_size - audience.contacts:,} in both)"
    )
    print(f"  opted out:           {audience.opted_out:,}")
    print(
        f"  suppressed:          {audience.suppressed_contacts:,} contacts "
        f"+ {audience.suppressed_others:,} other numbers"
    )
    print(f"  eligible recipients: {expected:,}")


if __name__ == "__main__":
    main()
