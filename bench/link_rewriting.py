"""Benchmark: what tracked links add to launching and dispatching a campaign.

The same campaign text with one link is launched and dispatched to M contacts
(default 100,000) through the simulator with 1,000 recipients per request (no
latency, no rate limit, as bench/dispatch.py's bulk mode), once with link tracking
off and once on, alternating (off, on, off, on… ``--rounds`` times) so that a
drifting machine load hits both alike. Prints each run's launch and dispatch time
and the overhead of tracking on the totals. Target: at most +10 %.

    .venv/bin/python bench/link_rewriting.py [--messages M] [--rounds R]
        [--database-url URL]
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
    settle_database,
    setup_django,
    verdict,
)
from dispatch import QUIET, SIMULATOR

ALIAS = "bench_bulk"
BODY = (
    "Hi {first_name|there}, 20% off this weekend: "
    "https://shop.example.com/spring-sale?utm_source=sms. Reply STOP to opt out."
)
TARGET_OVERHEAD = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    add_common_arguments(parser)
    args = parser.parse_args()

    print(f"Setting up {args.messages:,} contacts in {args.database_url}")
    print(f"  {machine_load()}")
    with phase("migrate and empty the tables"):
        setup_django(args.database_url)

    from django.conf import settings
    from django.test import override_settings

    with phase("contacts"):
        create_contacts(args.messages)
    with phase("list membership"):
        audience, _ = add_to_list("Bench: everyone")

    providers = {
        ALIAS: {"BACKEND": SIMULATOR, "OPTIONS": {**QUIET, "max_recipients": 1000}}
    }
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with override_settings(
        SMS_PROVIDERS={**settings.SMS_PROVIDERS, **providers},
        PUBLIC_BASE_URL="https://sms.example.com",
    ):
        for round_number in range(args.rounds):
            for track in (False, True):
                times[track].append(_run(audience, track, round_number))

    print("\nSummary")
    print(f"  ({machine_load()} at the end)")
    totals = {}
    for track, runs in times.items():
        launch = statistics.mean(r[0] for r in runs)
        dispatch = statistics.mean(r[1] for r in runs)
        totals[track] = launch + dispatch
        print(
            f"  tracking {'on ' if track else 'off'}: launch {launch:.2f} s + dispatch "
            f"{dispatch:.2f} s = {launch + dispatch:.2f} s (mean of {len(runs)})"
        )
    overhead = totals[True] / totals[False] - 1
    print(
        f"  overhead of tracking: {overhead:+.1%} (target <= +{TARGET_OVERHEAD:.0%}: "
        f"{verdict(overhead, TARGET_OVERHEAD, higher_is_better=False)})"
    )


def _run(audience, track: bool, round_number: int) -> tuple[float, float]:
    from campaigns.models import Campaign, Message
    from campaigns.sending.dispatch import Dispatcher
    from campaigns.sending.launch import campaign_launch

    campaign = Campaign.objects.create(
        name=f"Bench links {'on' if track else 'off'} {round_number}",
        body=BODY,
        opt_out_footer="",
        provider=ALIAS,
        track_links=track,
    )
    campaign.lists.set([audience])
    with phase("ANALYZE and CHECKPOINT"):
        settle_database()
    started = time.perf_counter()
    queued = campaign_launch(campaign=campaign)
    launched = time.perf_counter()
    dispatcher = Dispatcher(campaign.pk, rate=1e9)
    dispatcher.run(deadline=time.monotonic() + 900)
    done = time.perf_counter()
    sample = Message.objects.filter(campaign=campaign).order_by("id").first().body
    print(
        f"  tracking {'on ' if track else 'off'}: {queued:,} launched in "
        f"{launched - started:.2f} s, {dispatcher.stats.submitted:,} sent in "
        f"{done - launched:.2f} s ({machine_load()}); e.g. {sample!r}"
    )
    return launched - started, done - launched


if __name__ == "__main__":
    main()
