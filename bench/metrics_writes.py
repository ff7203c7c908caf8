"""Benchmark: what recording /metrics figures costs a webhook, on PostgreSQL.

Every provider callback adds one observation to the webhook histogram (one upsert of
two rows, smscampaigns/metrics.py). This runs that call in several processes at once,
all on the same figure (the worst case: one vendor, one outcome), and prints the
calls per second and the latency of one call; then one scrape's time with the rows
those calls left. With ``--queued N``, it then launches a sending campaign of N
messages (all queued), takes its progress snapshot as the workers do, and times the
scrape again (median of 5): queues are counted at each scrape up to 100,000 messages,
longer ones read their snapshot.

    .venv/bin/python bench/metrics_writes.py [--processes 3] [--calls 2000]
        [--queued 1000000] [--database-url URL]
"""

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import add_to_list, create_contacts, settle_database, setup_django

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_metrics"


def _worker(database_url: str, calls: int, start, out) -> None:
    setup_django(database_url, empty_tables=False)
    from smscampaigns import metrics

    start.wait()
    took = []
    for _ in range(calls):
        began = time.perf_counter()
        metrics.webhook_observe(
            vendor="plivo", kind="status", outcome="accepted", seconds=0.004
        )
        took.append(time.perf_counter() - began)
    metrics.webhook_observations_write()  # what the process held back, as at exit
    out.put(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--queued", type=int, default=0)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args()
    setup_django(args.database_url)
    from django.db import connection

    from smscampaigns.models import MetricValue

    MetricValue.objects.all().delete()
    connection.close()

    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [
        context.Process(
            target=_worker, args=(args.database_url, args.calls, start, out)
        )
        for _ in range(args.processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(3)  # every process has started Django
    began = time.perf_counter()
    start.set()
    took = [t for _ in workers for t in out.get()]
    elapsed = time.perf_counter() - began
    for worker in workers:
        worker.join()

    took.sort()
    total = len(took)
    print(f"{args.processes} processes x {args.calls} observations, one figure:")
    print(f"  {total / elapsed:,.0f} calls/s in all")
    print(
        f"  one call: median {statistics.median(took) * 1000:.2f} ms, "
        f"p99 {took[int(total * 0.99)] * 1000:.2f} ms, max {took[-1] * 1000:.2f} ms"
    )
    from smscampaigns import metrics, metrics_view

    rows = MetricValue.objects.count()
    began = time.perf_counter()
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics_view.DatabaseCollector())
    body = generate_latest(registry)
    print(
        f"  scrape: {(time.perf_counter() - began) * 1000:.1f} ms for {rows} rows "
        f"({len(body):,} bytes)"
    )
    count = sum(
        MetricValue.objects.filter(name=metrics.WEBHOOK_DURATION).values_list(
            "value", flat=True
        )
    )
    print(f"  counted {count:,.0f} of {total:,} observations")
    if args.queued:
        _scrape_with_queue(args.queued)


def _scrape_with_queue(queued: int) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from campaigns.models import Campaign
    from campaigns.sending.launch import campaign_launch
    from campaigns.stats import campaign_snapshot_take
    from smscampaigns import metrics_view

    create_contacts(queued)
    contact_list, _ = add_to_list("Bench: metrics")
    campaign = Campaign.objects.create(
        name="Bench metrics", body="Hi {first_name|there}", provider="simulator"
    )
    campaign.lists.set([contact_list])
    created = campaign_launch(campaign=campaign)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    settle_database()
    # As the workers do every 10-15 s while a campaign sends: the long queue's figure.
    campaign_snapshot_take(campaign=campaign)
    took = []
    for _ in range(5):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics_view.DatabaseCollector())
        began = time.perf_counter()
        body = generate_latest(registry)
        took.append(time.perf_counter() - began)
    depth = next(
        line
        for line in body.decode().splitlines()
        if line.startswith('sms_queue_depth{campaign="' + str(campaign.pk))
    )
    print(
        f"  scrape with {created:,} queued messages: median "
        f"{statistics.median(took) * 1000:.0f} ms (max {max(took) * 1000:.0f} ms); {depth}"
    )


if __name__ == "__main__":
    main()
