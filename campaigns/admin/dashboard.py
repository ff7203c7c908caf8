"""Watching campaigns in the admin.

- The campaign page's progress panel (``_dashboard.html``): counts, cost, delivery
  rate, a chart of delivery over time, failure reasons and links to the messages,
  refreshed in place every few seconds while the campaign can still change.
- The campaign changelist's status badge and progress bar, from each campaign's latest
  snapshot (one query for the whole page).
- The message changelist's campaign filter, exact-match search and capped count, so
  it stays fast with millions of messages.

Pages read snapshots (campaigns.stats) instead of counting messages: the scheduler
and the dispatcher take them while a campaign sends. When the latest is stale and the
campaign can still change (receipts still arriving after the end, nobody sending),
the page shows it at once and its script asks the progress view, which counts (one
request at a time per campaign; users who may only view a campaign never count, they
read what the workers and the others counted).

Each count on the panel links to the messages it counts: the message changelist's
"outcome" filter (OutcomeListFilter) selects exactly what each card adds up.
"""

import contextlib
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from contacts.models import Contact
from contacts.phones import InvalidPhoneNumber, parse_phone

# Shared with the contacts admin; campaigns.admin imports it from here for MessageAdmin.
from smscampaigns.admin_paginator import CappedCountPaginator  # noqa: F401
from smscampaigns.admin_site import shows_commands
from smscampaigns.celery import broker_configured

from .. import lifecycle
from ..models import Campaign, CampaignSnapshot, Message
from ..preview import format_money
from ..sending.liveness import no_worker_running
from ..stats import (
    OPT_OUT_ATTRIBUTION,
    SNAPSHOT_MAX_AGE,
    campaign_can_change,
    campaign_progress,
    click_rate,
    other_opt_out_filter,
    replied_stop_filter,
    variant_figures,
)

#: The "refresh" link may ask for figures this fresh (a new count at most this often).
FRESH_MAX_AGE = timedelta(seconds=5)

_DASHBOARD_TEMPLATE = "admin/campaigns/campaign/_dashboard.html"


# --- Figures ----------------------------------------------------------------------------


def tracks_links(campaign: Campaign) -> bool:
    """Whether the campaign's page shows clicks: it tracks links that were found
    in its text when it was sent (the set of links is small and indexed)."""
    cached = getattr(campaign, "_tracks_links", None)
    if cached is None:
        cached = campaign.tracked_links.exists()
        campaign._tracks_links = cached
    return cached


@dataclass(frozen=True)
class Figures:
    """A snapshot's counts as the panel groups them."""

    total: int
    queued: int
    """Not yet sent (queued, or being handed to the provider)."""
    sent: int
    """Accepted by the provider or the carrier, waiting for a delivery receipt."""
    delivered: int
    failed: int
    """Sent but not delivered (failed, undelivered, rejected, expired); skipped
    messages are not in it."""
    skipped_opted_out: int
    opt_outs: int
    """Recipients who opted out after this campaign's message, in any way."""
    cancelled: int
    unknown: int
    replied_stop: int | None = None
    """Those of ``opt_outs`` who replied STOP; None in snapshots from before it was
    counted apart (all of them are then shown as STOP replies)."""

    @property
    def stop_replies(self) -> int:
        return self.opt_outs if self.replied_stop is None else self.replied_stop

    @property
    def other_opt_outs(self) -> int:
        """Opted out after the message by a vendor's signal, the admin or the API."""
        return self.opt_outs - self.stop_replies

    frequency_capped: int = 0
    """Not sent: the recipient had reached the frequency cap."""
    unique_clicks: int = 0
    """Recipients who clicked a tracked link."""
    clicks: int = 0

    @property
    def click_rate(self) -> float | None:
        return click_rate(self.unique_clicks, self.delivered)

    @property
    def opted_out(self) -> int:
        return self.skipped_opted_out + self.opt_outs

    @property
    def not_sent(self) -> int:
        return self.skipped_opted_out + self.cancelled + self.frequency_capped

    @property
    def done_percent(self) -> float:
        """Share of the messages that have left the queue."""
        return 100 * (self.total - self.queued) / self.total if self.total else 0.0

    @classmethod
    def from_snapshot(cls, snapshot: CampaignSnapshot) -> "Figures":
        return cls.from_values(
            counts=snapshot.counts,
            skipped_opted_out=snapshot.skipped_opted_out,
            opt_outs=snapshot.opt_outs,
            replied_stop=snapshot.replied_stop,
            failure_reasons=snapshot.failure_reasons,
            unique_clicks=snapshot.unique_clicks,
            clicks=snapshot.clicks,
        )

    @classmethod
    def from_values(
        cls,
        *,
        counts: dict,
        skipped_opted_out: int,
        opt_outs: int,
        failure_reasons: list,
        replied_stop: int | None = None,
        unique_clicks: int = 0,
        clicks: int = 0,
    ) -> "Figures":
        def count(*statuses: str) -> int:
            return sum(counts.get(status, 0) for status in statuses)

        def skipped(code: str) -> int:
            return sum(
                reason["count"]
                for reason in failure_reasons
                if reason.get("skipped") and reason.get("code") == code
            )

        cancelled = skipped(Message.SkipReason.CANCELLED)
        capped = skipped(Message.SkipReason.FREQUENCY_CAP)
        return cls(
            total=sum(counts.values()),
            queued=count(*Message.IN_FLIGHT),
            sent=count(Message.Status.SUBMITTED, Message.Status.SENT),
            delivered=count(Message.Status.DELIVERED),
            failed=max(
                count(*Message.FAILURES) - skipped_opted_out - cancelled - capped, 0
            ),
            skipped_opted_out=skipped_opted_out,
            opt_outs=opt_outs,
            cancelled=cancelled,
            unknown=count(Message.Status.UNKNOWN),
            replied_stop=replied_stop,
            frequency_capped=capped,
            unique_clicks=unique_clicks,
            clicks=clicks,
        )


@dataclass(frozen=True)
class BarSegment:
    key: str
    label: str
    count: int
    x: float
    width: float


def progress_bar(figures: Figures, *, width: float = 100.0) -> list[BarSegment]:
    """Stacked segments, settled first; what is left of ``width`` is still queued."""
    parts = [
        ("delivered", "Delivered", figures.delivered),
        ("failed", "Failed", figures.failed),
        ("skipped", "Not sent (opted out, cancelled or capped)", figures.not_sent),
        ("unknown", "Unknown", figures.unknown),
        ("sent", "Sent, awaiting receipt", figures.sent),
    ]
    segments, x = [], 0.0
    for key, label, count in parts:
        if not count or not figures.total:
            continue
        part = width * count / figures.total
        segments.append(BarSegment(key, label, count, round(x, 2), round(part, 2)))
        x += part
    return segments


def format_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


# --- Chart --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartLine:
    key: str
    label: str
    points: str
    last: int


@dataclass(frozen=True)
class Chart:
    """Delivery over time as SVG geometry; the template draws it (no JavaScript)."""

    lines: list[ChartLine]
    rate_lines: list[str]
    """Delivery rate polylines, broken where no rate was known yet."""
    y_ticks: list[tuple[float, str]]
    rate_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    points: int
    description: str

    # The drawing's coordinates (the SVG scales to the panel's width).
    width: ClassVar[int] = 720
    height: ClassVar[int] = 250
    left: ClassVar[int] = 64
    plot_right: ClassVar[int] = 720 - 56
    top: ClassVar[int] = 14
    plot_bottom: ClassVar[int] = 250 - 40

    # Where the axis labels go.
    left_label_x: ClassVar[int] = 64 - 6
    right_label_x: ClassVar[int] = 720 - 56 + 6
    tick_end_y: ClassVar[int] = 250 - 40 + 4
    time_label_y: ClassVar[int] = 250 - 40 + 17
    axis_title_y: ClassVar[int] = 250 - 4
    # The vertical axis titles are rotated by 90 degrees around the origin.
    left_title: ClassVar[tuple[int, int]] = (-(14 + 250 - 40) // 2, 14)
    right_title: ClassVar[tuple[int, int]] = ((14 + 250 - 40) // 2, -(720 - 12))
    middle_x: ClassVar[int] = (64 + 720 - 56) // 2


_TIME_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _nice_step(value: float, intervals: int = 4) -> int:
    """A round step (1, 2, 2.5 or 5 times a power of ten, at least 1) that covers ``value`` in about
    ``intervals`` steps."""
    raw = max(value / intervals, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        step = multiple * magnitude
        if step >= raw and step == int(step):
            return int(step)
    return int(10 * magnitude)


def _time_ticks(start: datetime, end: datetime) -> tuple[int, list[datetime]]:
    span = (end - start).total_seconds()
    step = next((s for s in _TIME_STEPS if span / s <= 6), None)
    if step is None:
        step = 86400 * math.ceil(span / 86400 / 6)
    # Align on the local clock (a 30-minute zone offset must not give 09:30, 10:30…).
    offset = timezone.localtime(start).utcoffset() or timedelta(0)
    local = start.timestamp() + offset.total_seconds()
    first = math.ceil(local / step) * step - offset.total_seconds()
    ticks = []
    moment = first
    while moment <= end.timestamp():
        ticks.append(datetime.fromtimestamp(moment, tz=start.tzinfo))
        moment += step
    return step, ticks


def delivery_chart(campaign: Campaign) -> Chart | None:
    """The campaign's snapshots as lines of delivered, failed and awaiting-receipt
    messages over time, and the delivery rate, from the start of sending. None
    before there are snapshots."""
    snapshots = CampaignSnapshot.objects.filter(campaign=campaign)
    if campaign.started_at:
        # Anything older (zeros counted while it was scheduled) would stretch the
        # time axis over the days before sending.
        snapshots = snapshots.filter(taken_at__gte=campaign.started_at)
    rows = list(
        snapshots.order_by("taken_at", "id").values_list(
            "taken_at",
            "counts",
            "delivery_rate",
            "skipped_opted_out",
            "opt_outs",
            "failure_reasons",
            "unique_clicks",
        )
    )
    if not rows:
        return None
    samples: list[tuple[datetime, Figures, float | None]] = [
        (
            taken_at,
            Figures.from_values(
                counts=counts,
                skipped_opted_out=skipped,
                opt_outs=opt_outs,
                failure_reasons=reasons,
                unique_clicks=clicked,
            ),
            rate,
        )
        for taken_at, counts, rate, skipped, opt_outs, reasons, clicked in rows
    ]
    zero = Figures(0, 0, 0, 0, 0, 0, 0, 0, 0)
    if campaign.started_at and campaign.started_at < samples[0][0]:
        # Nothing was delivered when sending started: the lines rise from there.
        samples.insert(0, (campaign.started_at, zero, None))
    start, end = samples[0][0], samples[-1][0]
    if end - start < timedelta(minutes=1):
        end = start + timedelta(minutes=1)

    chart = Chart
    plot_width = chart.plot_right - chart.left
    plot_height = chart.plot_bottom - chart.top
    span = (end - start).total_seconds()
    series = {
        "delivered": ("Delivered", [f.delivered for _, f, _ in samples]),
        "failed": ("Failed", [f.failed for _, f, _ in samples]),
        "sent": ("Sent, awaiting receipt", [f.sent for _, f, _ in samples]),
    }
    if tracks_links(campaign):
        series["clicked"] = (
            "Clicked (recipients)",
            [f.unique_clicks for _, f, _ in samples],
        )
    highest = max(max(values) for _, values in series.values())
    step = _nice_step(highest)
    y_max = max(step * math.ceil(highest / step), step)

    def x_of(moment: datetime) -> float:
        return chart.left + (moment - start).total_seconds() / span * plot_width

    def y_of(value: float) -> float:
        return chart.plot_bottom - value / y_max * plot_height

    xs = [x_of(moment) for moment, _, _ in samples]
    lines = []
    for key, (label, values) in series.items():
        points = [f"{x:.1f},{y_of(v):.1f}" for x, v in zip(xs, values, strict=True)]
        # A single point still shows as a dot (round line caps).
        if len(points) == 1:
            points *= 2
        lines.append(ChartLine(key, label, " ".join(points), values[-1]))
    # The rate is unknown until an outcome is: its line breaks where it is None.
    rate_runs: list[list[str]] = [[]]
    for x, (_, _, rate) in zip(xs, samples, strict=True):
        if rate is None:
            rate_runs.append([])
        else:
            rate_runs[-1].append(
                f"{x:.1f},{chart.plot_bottom - rate * plot_height:.1f}"
            )
    rate_lines = [
        " ".join(run * 2 if len(run) == 1 else run) for run in rate_runs if run
    ]

    time_step, moments = _time_ticks(start, end)
    if time_step >= 86400:
        time_format = "M j"
    elif span > 86400:
        time_format = "M j H:i"
    else:
        time_format = "H:i"
    last_figures, last_rate = samples[-1][1], samples[-1][2]
    return Chart(
        lines=lines,
        rate_lines=rate_lines,
        y_ticks=[(round(y_of(v), 1), f"{v:,}") for v in range(0, y_max + 1, step)],
        rate_ticks=[
            (round(chart.plot_bottom - share * plot_height, 1), f"{share:.0%}")
            for share in (0, 0.25, 0.5, 0.75, 1)
        ],
        x_ticks=[
            (round(x_of(m), 1), format_date(timezone.localtime(m), time_format))
            for m in moments
        ],
        points=len(samples),
        description=(
            f"From {format_date(timezone.localtime(start), 'N j, H:i')} to "
            f"{format_date(timezone.localtime(samples[-1][0]), 'N j, H:i')}: "
            f"{last_figures.delivered:,} delivered, {last_figures.failed:,} failed, "
            f"{last_figures.sent:,} awaiting a receipt"
            + (
                f", {last_figures.unique_clicks:,} clicked"
                if "clicked" in series
                else ""
            )
            + f"; delivery rate {format_rate(last_rate)}."
        ),
    )


# --- The panel ------------------------------------------------------------------------------


def messages_url(campaign_id: int, **filters: str) -> str:
    """The message changelist filtered to one campaign (and ``filters``)."""
    query = {"campaign__id__exact": campaign_id, **filters}
    return f"{reverse('admin:campaigns_message_changelist')}?{urlencode(query)}"


#: The message changelist's ``outcome`` filter: one value per count of the panel, in
#: the panel's order, selecting exactly the messages that count adds up
#: (Figures.from_values and campaigns.stats.campaign_stats).
OUTCOMES = {
    "queued": "Queued",
    "sent": "Sent, awaiting receipt",
    "delivered": "Delivered",
    "failed": "Failed (sent, not delivered)",
    "opted_out": "Not sent: had opted out",
    "cancelled": "Not sent: campaign cancelled",
    "frequency_cap": "Not sent: frequency cap",
    "unknown": "Unknown",
    "replied_stop": "Replied STOP afterwards",
    "opted_out_later": "Opted out afterwards, not by a STOP reply",
    "clicked": "Clicked a link",
}

#: The outcome of the messages each skip code marks.
_SKIPPED_OUTCOMES = {
    Message.SkipReason.OPTED_OUT: "opted_out",
    Message.SkipReason.CANCELLED: "cancelled",
    Message.SkipReason.FREQUENCY_CAP: "frequency_cap",
}


def outcome_condition(outcome: str) -> Q | None:
    """The condition selecting the messages of one of :data:`OUTCOMES`."""
    status = Message.Status
    skipped = Message.SkipReason.values
    conditions = {
        "queued": lambda: Q(status__in=Message.IN_FLIGHT),
        "sent": lambda: Q(status__in=[status.SUBMITTED, status.SENT]),
        "delivered": lambda: Q(status=status.DELIVERED),
        # Skipped messages are stored as failed but never reached a carrier.
        "failed": lambda: (
            Q(status__in=Message.FAILURES)
            & ~Q(status=status.FAILED, error_code__in=skipped)
        ),
        "opted_out": lambda: Q(
            status=status.FAILED, error_code=Message.SkipReason.OPTED_OUT
        ),
        "cancelled": lambda: Q(
            status=status.FAILED, error_code=Message.SkipReason.CANCELLED
        ),
        "frequency_cap": lambda: Q(
            status=status.FAILED, error_code=Message.SkipReason.FREQUENCY_CAP
        ),
        "unknown": lambda: Q(status=status.UNKNOWN),
        "replied_stop": replied_stop_filter,
        "opted_out_later": other_opt_out_filter,
        "clicked": lambda: Q(first_clicked_at__isnull=False),
    }
    condition = conditions.get(outcome)
    return condition() if condition else None


@dataclass(frozen=True)
class FailureRow:
    code: str
    reason: str
    count: int
    skipped: bool
    url: str

    @property
    def count_display(self) -> str:
        return f"{self.count:,}"


@dataclass(frozen=True)
class Card:
    """One count of the panel."""

    key: str
    label: str
    count: int
    url: str
    note: str

    @property
    def count_display(self) -> str:
        return f"{self.count:,}"


@dataclass(frozen=True)
class Dashboard:
    campaign: Campaign
    snapshot: CampaignSnapshot | None
    live: bool
    """The figures can still change: the page refreshes the panel."""
    stale: bool
    """Older than the page would like: the page asks for fresh ones at once."""
    hint: str
    """One line instead of the figures (drafts, campaigns not started)."""
    worker_missing: bool
    progress_url: str

    @cached_property
    def figures(self) -> Figures | None:
        return Figures.from_snapshot(self.snapshot) if self.snapshot else None

    @cached_property
    def bar(self) -> list[BarSegment]:
        return progress_bar(self.figures) if self.figures else []

    @property
    def delivery_rate(self) -> str:
        return format_rate(self.snapshot.delivery_rate if self.snapshot else None)

    @cached_property
    def cost_by_currency(self) -> dict[str, Decimal]:
        """The cost in each currency, the main one (largest total) first.

        Snapshots taken before they kept every currency have an empty
        ``cost_by_currency``: their one ``cost`` in ``currency`` stands for it.
        """
        snapshot = self.snapshot
        if snapshot is None:
            return {self.currency: Decimal(0)}
        amounts = {
            code: Decimal(amount)
            for code, amount in (snapshot.cost_by_currency or {}).items()
        }
        if not amounts:
            return {self.currency: snapshot.cost}
        main = (
            {self.currency: amounts.pop(self.currency)}
            if self.currency in amounts
            else {}
        )
        others = sorted(amounts.items(), key=lambda item: (-item[1], item[0]))
        return main | dict(others)

    @property
    def cost(self) -> str:
        """Every currency messages were priced in: "$1.23 + €0.50"."""
        return " + ".join(
            format_money(amount, code) for code, amount in self.cost_by_currency.items()
        )

    @property
    def currency(self) -> str:
        if self.snapshot and self.snapshot.currency:
            return self.snapshot.currency
        return settings.SMS_PRICE_CURRENCY

    @cached_property
    def failure_reasons(self) -> list[FailureRow]:
        if not self.snapshot:
            return []
        return [
            FailureRow(
                code=reason["code"],
                reason=reason["reason"],
                count=reason["count"],
                skipped=bool(reason.get("skipped")),
                url=self._failure_url(reason),
            )
            for reason in self.snapshot.failure_reasons
        ]

    def _failure_url(self, reason: dict) -> str:
        if reason.get("skipped") and reason["code"] in _SKIPPED_OUTCOMES:
            return messages_url(
                self.campaign.pk, outcome=_SKIPPED_OUTCOMES[reason["code"]]
            )
        # A row counts one (code, reason) pair among the failed messages.
        return messages_url(
            self.campaign.pk,
            outcome="failed",
            error_code=reason["code"],
            error_reason=reason["reason"],
        )

    @cached_property
    def links(self) -> dict[str, str]:
        """The campaign's messages, and those of each outcome (see OUTCOMES)."""
        pk = self.campaign.pk
        return {
            "all": messages_url(pk),
            **{outcome: messages_url(pk, outcome=outcome) for outcome in OUTCOMES},
        }

    @cached_property
    def cards(self) -> list[Card]:
        f, links = self.figures, self.links
        if f is None:
            return []
        cards = [
            Card("queued", "Queued", f.queued, links["queued"], "waiting to be sent"),
            Card(
                "sent", "Sent", f.sent, links["sent"], "waiting for a delivery receipt"
            ),
            Card("delivered", "Delivered", f.delivered, links["delivered"], ""),
            Card(
                "failed", "Failed", f.failed, links["failed"], "sent but not delivered"
            ),
            Card(
                "opted-out",
                "Not sent: opted out",
                f.skipped_opted_out,
                links["opted_out"],
                "had opted out before their message was sent",
            ),
            Card(
                "replied-stop",
                "Replied STOP",
                f.stop_replies,
                links["replied_stop"],
                f"texted STOP within {OPT_OUT_ATTRIBUTION.days} days of this message",
            ),
            Card(
                "unknown",
                "Unknown",
                f.unknown,
                links["unknown"],
                "in flight when a worker stopped; a receipt may still settle them",
            ),
        ]
        if f.other_opt_outs:
            cards.append(
                Card(
                    "opted-out-later",
                    "Opted out otherwise",
                    f.other_opt_outs,
                    links["opted_out_later"],
                    "by a provider's opt-out signal, the admin or the API, within "
                    f"{OPT_OUT_ATTRIBUTION.days} days of this message",
                )
            )
        if tracks_links(self.campaign):
            cards.append(
                Card(
                    "clicked",
                    "Clicked",
                    f.unique_clicks,
                    links["clicked"],
                    f"{format_rate(f.click_rate)} of delivered "
                    f"(click-through rate), {f.clicks:,} click"
                    f"{'' if f.clicks == 1 else 's'} in all",
                )
            )
        if f.cancelled:
            cards.append(
                Card(
                    "cancelled",
                    "Cancelled",
                    f.cancelled,
                    links["cancelled"],
                    "not sent: the campaign was cancelled",
                )
            )
        if f.frequency_capped:
            cards.append(
                Card(
                    "frequency-cap",
                    "Not sent: frequency cap",
                    f.frequency_capped,
                    links["frequency_cap"],
                    "had had as many marketing messages as the cap allows",
                )
            )
        return cards

    @cached_property
    def variant_rows(self) -> list[dict]:
        """Figures per text variant (A first), for a campaign with several texts."""
        if not self.snapshot or not self.snapshot.variants:
            return []
        rows = variant_figures(campaign=self.campaign, stats=self.snapshot.variants)
        for row in rows:
            row["click_rate_text"] = format_rate(row["click_rate"])
        return rows

    @property
    def headline(self) -> str:
        f = self.figures
        if f is None:
            return ""
        return (
            f"{f.total - f.queued:,} of {f.total:,} messages sent "
            f"({f.done_percent:.0f}%), {f.delivered:,} delivered"
        )

    @cached_property
    def chart(self) -> Chart | None:
        return delivery_chart(self.campaign) if self.snapshot else None

    @property
    def broker(self) -> bool:
        return broker_configured()

    def as_json(self) -> dict:
        snapshot, figures = self.snapshot, self.figures
        return {
            "campaign": self.campaign.pk,
            "status": self.campaign.status,
            "status_display": lifecycle.status_display(self.campaign),
            "allowed_actions": lifecycle.allowed_actions(self.campaign),
            "as_of": snapshot.taken_at.isoformat() if snapshot else None,
            "live": self.live,
            "stale": self.stale,
            "hint": self.hint,
            "waiting_reason": self.campaign.waiting_reason,
            "worker_missing": self.worker_missing,
            "counts": (
                {
                    "total": figures.total,
                    "queued": figures.queued,
                    "sent": figures.sent,
                    "delivered": figures.delivered,
                    "failed": figures.failed,
                    "opted_out": figures.opted_out,
                    "skipped_opted_out": figures.skipped_opted_out,
                    "opt_outs": figures.opt_outs,
                    "replied_stop": figures.stop_replies,
                    "cancelled": figures.cancelled,
                    "frequency_capped": figures.frequency_capped,
                    "unknown": figures.unknown,
                    "unique_clicks": figures.unique_clicks,
                    "clicks": figures.clicks,
                }
                if figures
                else None
            ),
            "by_status": snapshot.counts if snapshot else None,
            "delivery_rate": snapshot.delivery_rate if snapshot else None,
            "click_rate": figures.click_rate if figures else None,
            "cost": str(snapshot.cost) if snapshot else None,
            "currency": self.currency,
            "cost_by_currency": (
                {code: str(amount) for code, amount in self.cost_by_currency.items()}
                if snapshot
                else None
            ),
            "failure_reasons": snapshot.failure_reasons if snapshot else [],
            "variants": [
                {k: v for k, v in row.items() if k != "click_rate_text"}
                for row in self.variant_rows
            ],
        }


def campaign_dashboard(
    campaign: Campaign,
    *,
    max_age: timedelta = SNAPSHOT_MAX_AGE,
    count_if_stale: bool = True,
    may_count: bool = True,
) -> Dashboard:
    """What the campaign page's panel shows: the latest figures (counted afresh when
    older than ``max_age`` and still changing), and what the campaign is waiting for.

    With ``count_if_stale`` off, stale figures are shown as they are and marked
    ``stale``: the page then renders at once and its script asks for fresh figures
    (counting a million messages takes a few hundred milliseconds). Figures are
    counted in any case when there are none yet. With ``may_count`` off (a user who
    may only view the campaign) nothing is counted: the latest figures are shown, as
    the workers keep them.
    """
    now = timezone.now()
    progress_url = reverse("admin:campaigns_campaign_progress", args=[campaign.pk])
    snapshot = None
    if not count_if_stale or not may_count:
        snapshot = campaign_progress(campaign=campaign, may_count=False)
    if snapshot is None and may_count:
        snapshot = campaign_progress(campaign=campaign, max_age=max_age)
    due = lifecycle.status_key(campaign) in (
        Campaign.Status.SENDING,
        lifecycle.STARTING[0],
    )
    # A worker waiting for a send window or a provider says so in waiting_reason.
    worker_missing = (
        due
        and not campaign.waiting_reason
        and no_worker_running(campaign.pk, due_since=_due_since(campaign))
    )
    hint = _hint(campaign, snapshot)
    live = campaign.status != Campaign.Status.DRAFT and campaign_can_change(
        campaign=campaign, snapshot=snapshot
    )
    stale = (
        may_count
        and live
        and snapshot is not None
        and now - snapshot.taken_at >= max_age
    )
    return Dashboard(
        campaign=campaign,
        snapshot=snapshot,
        live=live,
        stale=stale,
        hint=hint,
        worker_missing=worker_missing,
        progress_url=progress_url,
    )


def _due_since(campaign: Campaign):
    """When the campaign last became due to send: its scheduled time once passed,
    else its last change (sent now, resumed)."""
    if campaign.status == Campaign.Status.SCHEDULED and campaign.scheduled_at:
        return campaign.scheduled_at
    return campaign.updated_at


def _hint(campaign: Campaign, snapshot: CampaignSnapshot | None) -> str:
    """One line shown instead of figures while there is nothing to count."""
    if campaign.status == Campaign.Status.DRAFT:
        return "Progress appears here once the campaign is sent."
    if snapshot is not None and sum(snapshot.counts.values()):
        return ""
    if lifecycle.status_key(campaign) == lifecycle.STARTING[0]:
        return "Starting: a worker prepares the messages in a few seconds."
    if campaign.status == Campaign.Status.SCHEDULED:
        when = (
            format_date(timezone.localtime(campaign.scheduled_at), "N j, Y, H:i")
            if campaign.scheduled_at
            else "later"
        )
        return f"Scheduled for {when}. Progress appears here once sending starts."
    if campaign.status == Campaign.Status.SENDING:
        return "Preparing the messages: progress appears here in a few seconds."
    if campaign.status == Campaign.Status.PAUSED:
        return "Paused before any message was prepared."
    if campaign.status == Campaign.Status.CANCELLED:
        return "Cancelled before any message was sent."
    return "No messages: the campaign's lists had nobody to send to."


# --- Changelist --------------------------------------------------------------------------


class CampaignProgressChangeList(ChangeList):
    """Loads each listed campaign's latest snapshot in one query for the whole page."""

    def get_queryset(self, request, exclude_parameters=None) -> QuerySet:
        queryset = super().get_queryset(request, exclude_parameters)
        latest = (
            CampaignSnapshot.objects.filter(campaign=OuterRef("pk"))
            .order_by("-taken_at", "-id")
            .values("pk")[:1]
        )
        return queryset.annotate(latest_snapshot_id=Subquery(latest))

    def get_results(self, request) -> None:
        super().get_results(request)
        # Evaluating the page here fills the queryset's cache: the template then
        # iterates the same rows, and the snapshots come in one query.
        campaigns = list(self.result_list)
        snapshots = CampaignSnapshot.objects.in_bulk(
            [c.latest_snapshot_id for c in campaigns if c.latest_snapshot_id]
        )
        for campaign in campaigns:
            campaign.latest_snapshot = snapshots.get(campaign.latest_snapshot_id)


#: Characters of a campaign's name shown in lists before it is cut.
LIST_NAME_CHARS = 40


class DashboardMixin(admin.ModelAdmin):
    # Five columns that fit a 1,400 px screen beside the filters: a long name is
    # cut (the full one is its link's title), and one date says what matters.
    list_display = ["short_name", "status_badge", "progress", "provider", "when"]
    list_display_links = ["short_name"]
    list_filter = ["status", "provider"]
    date_hierarchy = "created_at"

    class Media:
        css = {"all": ["campaigns/dashboard.css"]}
        js = ["campaigns/dashboard.js"]

    def get_changelist(self, request, **kwargs):
        return CampaignProgressChangeList

    @admin.display(description="Name", ordering="name")
    def short_name(self, campaign: Campaign) -> str:
        return format_html(
            '<span title="{}">{}</span>',
            campaign.name,
            Truncator(campaign.name).chars(LIST_NAME_CHARS),
        )

    @admin.display(description="When", ordering="scheduled_at")
    def when(self, campaign: Campaign) -> str:
        """Scheduled for, started or created: the one date that says the most."""
        if campaign.started_at:
            label, moment = "Started", campaign.started_at
        elif campaign.scheduled_at:
            label, moment = "Scheduled for", campaign.scheduled_at
        else:
            label, moment = "Created", campaign.created_at
        return f"{label} {format_date(timezone.localtime(moment), 'M j, H:i')}"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, campaign: Campaign) -> str:
        return format_html(
            '<span class="campaign-status campaign-status-{}">{}</span>',
            lifecycle.status_key(campaign),
            lifecycle.status_display(campaign),
        )

    @admin.display(description="Progress")
    def progress(self, campaign: Campaign) -> str:
        snapshot = getattr(campaign, "latest_snapshot", None)
        if snapshot is None or not sum(snapshot.counts.values()):
            text = "Not sent yet" if campaign.status == Campaign.Status.DRAFT else "—"
            return format_html('<span class="quiet">{}</span>', text)
        figures = Figures.from_snapshot(snapshot)
        return format_html(
            '<span class="campaign-progress" title="{title}">'
            '<svg class="dashboard-bar dashboard-bar-small" viewBox="0 0 100 6" '
            'preserveAspectRatio="none" aria-hidden="true">'
            '<rect class="dashboard-bar-track" x="0" y="0" width="100" height="6"></rect>'
            "{segments}</svg>"
            '<span class="campaign-progress-text">{delivered} / {total} delivered'
            "</span></span>",
            title=f"As of {format_date(timezone.localtime(snapshot.taken_at), 'N j, H:i')}: "
            f"{figures.delivered:,} delivered, {figures.failed:,} failed, "
            f"{figures.sent:,} awaiting receipt, {figures.queued:,} queued",
            segments=_bar_rects(progress_bar(figures), height=6),
            delivered=f"{figures.delivered:,}",
            total=f"{figures.total:,}",
        )

    # --- Campaign page -------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        my_urls = [
            path(
                "<path:object_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="{}_{}_progress".format(*info),
            )
        ]
        return my_urls + super().get_urls()

    def page_actions(self, request: HttpRequest, campaign: Campaign) -> list[dict]:
        """The campaign page's action buttons (campaigns.admin.actions has them)."""
        return []

    def page_state(self, request: HttpRequest, campaign: Campaign) -> dict:
        """What the page shows of the campaign's state outside the panel: its title,
        status and buttons. The panel carries it, so the script that refreshes the
        panel updates them when they changed (dashboard.js)."""
        return {
            "title": page_title(campaign),
            "status": lifecycle.status_key(campaign),
            "status_display": lifecycle.status_display(campaign),
            "actions": self.page_actions(request, campaign),
        }

    def render_change_form(
        self, request, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None and not add:
            # Stale figures are shown at once and refreshed by the page's script.
            context["dashboard"] = campaign_dashboard(
                obj,
                count_if_stale=False,
                may_count=self.has_change_permission(request, obj),
            )
            context["can_view_messages"] = request.user.has_perm(
                "campaigns.view_message"
            )
            context["show_commands"] = shows_commands(request)
            context["page_state"] = self.page_state(request, obj)
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def progress_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The panel's figures as JSON, or with ``?format=html`` the panel itself
        (the page swaps it in every few seconds)."""
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404("No such campaign")
        if not self.has_view_or_change_permission(request, campaign):
            raise PermissionDenied
        # Counting writes a snapshot: only for those who may change the campaign.
        may_count = self.has_change_permission(request, campaign)
        fresh = may_count and request.GET.get("fresh")
        dashboard = campaign_dashboard(
            campaign,
            max_age=FRESH_MAX_AGE if fresh else SNAPSHOT_MAX_AGE,
            may_count=may_count,
        )
        if request.GET.get("format") == "html":
            html = render_to_string(
                _DASHBOARD_TEMPLATE,
                {
                    "dashboard": dashboard,
                    "can_view_messages": request.user.has_perm(
                        "campaigns.view_message"
                    ),
                    "show_commands": shows_commands(request),
                    "page_state": self.page_state(request, campaign),
                },
                request=request,
            )
            return HttpResponse(html)
        return JsonResponse(
            {
                **dashboard.as_json(),
                "title": page_title(campaign),
                "actions": [
                    item["id"].removeprefix("action-")
                    for item in self.page_actions(request, campaign)
                ],
            }
        )


def page_title(campaign: Campaign) -> str:
    """The campaign page's title: its name and state, "Spring sale (sending)"."""
    return f"{campaign.name} ({lifecycle.status_display(campaign).lower()})"


def _bar_rects(segments: list[BarSegment], *, height: int) -> str:
    return format_html_join(
        "",
        '<rect class="dashboard-bar-{}" x="{}" y="0" width="{}" height="{}">'
        "<title>{}: {}</title></rect>",
        ((s.key, s.x, s.width, height, s.label, f"{s.count:,}") for s in segments),
    )


# --- Messages: filters, search and paging for millions of rows -----------------------


class CampaignListFilter(admin.RelatedFieldListFilter):
    """The campaign facet: the most recent campaigns and the one selected, not every
    campaign there ever was."""

    shown = 15

    def field_choices(self, field, request, model_admin) -> list[tuple[int, str]]:
        choices = list(
            Campaign.objects.exclude(status=Campaign.Status.DRAFT)
            .order_by("-created_at", "-id")
            .values_list("pk", "name")[: self.shown]
        )
        selected = [
            int(value)
            for value in (self.lookup_val or [])
            if str(value).isdigit() and int(value) not in {pk for pk, _ in choices}
        ]
        if selected:
            choices += list(
                Campaign.objects.filter(pk__in=selected).values_list("pk", "name")
            )
        return choices

    def choices(self, changelist):
        self.empty_value_display = "Replies and test sends"
        yield from super().choices(changelist)


class OutcomeListFilter(admin.SimpleListFilter):
    """The campaign page's counts, each as a filter (see OUTCOMES): the page links
    each count here, and the list shows exactly the messages it counted."""

    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        choices = list(OUTCOMES.items())
        if not request.GET.get("campaign__id__exact"):
            # Over every message ever sent that would be an EXISTS per row.
            choices = [
                c for c in choices if c[0] not in ("replied_stop", "opted_out_later")
            ]
        return choices

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        condition = outcome_condition(self.value() or "")
        return queryset if condition is None else queryset.filter(condition)


class ProviderListFilter(admin.SimpleListFilter):
    """Providers from the settings: listing the distinct values of the column would
    read every message."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in settings.SMS_PROVIDERS]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(provider=self.value())
        return queryset


def message_search(queryset: QuerySet, term: str) -> QuerySet:
    """Exact matches only, each answered from an index: a phone number in any common
    format (through the contacts' phone index, and the recipient of messages with no
    contact), the provider's message id, our client reference, or a message id."""
    term = term.strip()
    if not term:
        return queryset
    conditions = Q(provider_message_id=term)
    if term.isdigit() and len(term) < 19:
        conditions |= Q(pk=int(term))
    try:
        phone = parse_phone(term).e164
    except InvalidPhoneNumber:
        phone = None
    if phone:
        contact_ids = list(
            Contact.objects.filter(phone=phone).values_list("pk", flat=True)
        )
        conditions |= Q(contact_id__in=contact_ids) | Q(contact__isnull=True, to=phone)
    with contextlib.suppress(ValueError):
        conditions |= Q(client_reference=uuid.UUID(term))
    return queryset.filter(conditions)


def filtered_campaign(request: HttpRequest) -> Campaign | None:
    """The campaign a message changelist is filtered to, if any."""
    value = request.GET.get("campaign__id__exact", "")
    if not value.isdigit():
        return None
    return Campaign.objects.filter(pk=int(value)).only("pk", "name").first()
