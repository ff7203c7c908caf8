"""Benchmark: what several-zone recipients cost the dispatcher's window check.

The dispatcher asks ``open_zones`` (and, when nothing is open, ``earliest_opening``)
about a campaign's distinct ``Message.time_zone`` values before each claim. A number
that may be in several zones is one value naming all of them (a Russian mobile: 16),
open only when the window is open in each. Prints microseconds per call for a mix of
single zones and several-zone values, at an hour when the multi-zone values are
closed (the expensive case: their common opening is searched), over N calls.

    .venv/bin/python bench/windows_zones.py [--calls 2000]
"""

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smscampaigns.settings_test")

import django

django.setup()

from campaigns.sending.windows import (  # noqa: E402
    SendWindow,
    earliest_opening,
    open_zones,
)
from contacts.phones import parse_phone  # noqa: E402

NUMBERS = [
    "+79161234567",  # Russian mobile: 16 zones
    "+61412345678",  # Australian mobile: 8 zones
    "+17015551234",  # North Dakota: 2 zones
    "+61292123456",  # Sydney
    "+15415551234",  # Oregon
    "+442071234567",  # London
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    window = SendWindow.from_dict(
        {"start": "09:00", "end": "20:00", "weekdays": [0, 1, 2, 3, 4]}
    )
    mixed = [parse_phone(number).time_zone for number in NUMBERS]
    single = [zone for zone in mixed if " " not in zone]
    for label, zones, at in [
        ("mixed, 14:00 UTC Wed", mixed, datetime(2026, 6, 10, 14, tzinfo=UTC)),
        (
            "single zones only, 14:00 UTC Wed",
            single,
            datetime(2026, 6, 10, 14, tzinfo=UTC),
        ),
        ("mixed, 00:30 UTC Sat", mixed, datetime(2026, 6, 13, 0, 30, tzinfo=UTC)),
    ]:
        start = time.perf_counter()
        for _ in range(calls):
            opened = open_zones(window, zones, at)
        open_us = (time.perf_counter() - start) / calls * 1e6
        start = time.perf_counter()
        for _ in range(calls):
            opening = earliest_opening(window, zones, at)
        next_us = (time.perf_counter() - start) / calls * 1e6
        print(
            f"{label}: open_zones {open_us:,.0f} µs/call ({len(opened)} of "
            f"{len(zones)} values open), earliest_opening {next_us:,.0f} µs/call "
            f"(next {opening:%a %H:%M} UTC)"
        )


if __name__ == "__main__":
    main()
