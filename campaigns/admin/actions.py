"""Campaign actions in the admin, each behind a confirmation page.

Send a test, send now, schedule, pause, resume, cancel, retry failed messages and
duplicate. Each page restates who the campaign reaches and what it costs, and carries
a fingerprint of what it showed; its POST rebuilds the page from the current state
and acts only if nothing changed in between, by calling the service in
campaigns/actions.py or campaigns/writes.py, then goes back to the campaign page with
a message. A state that does not allow the action becomes an error message, never a
500.

Counts use the campaign page's words (campaigns/admin/dashboard.py): queued, sent
(waiting for a delivery receipt), delivered, failed (sent but not delivered), opted
out, unknown; messages ever accepted by the provider are "handed to the provider".
"""

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from contacts.permissions import can_view_contact_data
from providers.encoding import TextInfo, analyze

from .. import lifecycle
from ..actions import (
    audience_problem,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_retry_failed,
    campaign_schedule,
    campaign_send_now,
)
from ..frequency import cap_description, effective_cap
from ..lifecycle import CampaignError
from ..models import Campaign, Message
from ..preview import (
    Estimate,
    campaign_estimate,
    format_money as money,
    price_for,
)
from ..provider_checks import campaign_providers_problem
from ..sending.windows import SendWindow, WindowError
from ..writes import (
    BodyError,
    RecipientsOptedOut,
    campaign_create,
    campaign_send_test,
    campaign_test_text,
)
from .action_forms import RetryForm, ScheduleForm, TestSendForm

Status = Campaign.Status
# The multiplication sign between the factors of a cost, as an escape because ruff
# flags the literal.
_TIMES = "\u00d7"
#: Shown, and nothing done, when a confirmation comes back for a page that no
#: longer shows what the campaign is.
CHANGED_MESSAGE = (
    "This campaign changed since you opened this page: check the figures again."
)
COPY_SUFFIX = " (copy)"

#: Message.FINAL_FAILURES in the order the pages list them.
_FINAL_FAILURES = [s for s in Message.Status if s in Message.FINAL_FAILURES]


@dataclass(frozen=True)
class Action:
    name: str
    """URL segment, URL name suffix, template suffix and button id suffix."""
    label: str
    transition: str | None
    """The campaigns.lifecycle action it performs, whose table says which states
    allow it; None for the actions that change no state (any status)."""
    permission: str = "change"
    """"change": change permission on the campaign; "add": add permission (and a
    view of the campaign), for the actions that create a campaign."""
    verb_if_stateless: str = ""

    @property
    def verb(self) -> str:
        """Past participle for refusals: "it cannot be paused"."""
        if self.transition is None:
            return self.verb_if_stateless
        return lifecycle.TRANSITIONS[self.transition].verb

    def allows(self, campaign: Campaign) -> bool:
        return self.transition is None or lifecycle.can(campaign, self.transition)


ACTIONS = {
    action.name: action
    for action in [
        Action("test", "Send a test", None, verb_if_stateless="tested"),
        Action("send", "Send now", "send"),
        Action("schedule", "Schedule", "schedule"),
        Action("pause", "Pause", "pause"),
        Action("resume", "Resume", "resume"),
        Action("cancel", "Cancel campaign", "cancel"),
        Action("retry", "Retry failed", "retry_failed"),
        # Any status: the way to fix a typo once sending started.
        Action(
            "duplicate",
            "Duplicate",
            None,
            permission="add",
            verb_if_stateless="duplicated",
        ),
    ]
}


@dataclass(frozen=True)
class FigureRow:
    label: str
    value: str
    note: str = ""
    html_id: str = ""


@dataclass(frozen=True)
class Sample:
    """The text as it goes out: rendered for the first contact of the audience, or
    with the placeholders' defaults (see campaigns.writes.campaign_test_text)."""

    text: str
    info: TextInfo
    uses_contact_data: bool

    @property
    def encoding_label(self) -> str:
        return Message.Encoding(self.info.encoding).label


@dataclass
class Progress:
    """A launched campaign's messages, grouped as the campaign page groups them
    (campaigns.admin.dashboard.Figures), from two GROUP BY queries on its messages."""

    total: int = 0
    queued: int = 0
    """Waiting to be sent, including those being handed to the provider now."""
    in_flight: int = 0
    """Of the queued, those being handed to the provider now."""
    sent: int = 0
    """Accepted, waiting for a delivery receipt (submitted or sent)."""
    delivered: int = 0
    failed: int = 0
    """Sent but not delivered (failed, undelivered, rejected, expired); messages
    not sent because of an opt-out or a cancel are not in it."""
    retryable: int = 0
    """Of the failed, those in status "failed": what "Retry failed" queues again."""
    final_failures: dict[str, int] = field(default_factory=dict)
    """Of the failed, the carrier's final answers, by status: never retried."""
    opted_out: int = 0
    """Not sent: the recipient had opted out."""
    cancelled: int = 0
    """Not sent: the campaign was cancelled."""
    frequency_capped: int = 0
    """Not sent: the recipient had reached the frequency cap."""
    unknown: int = 0
    handed: int = 0
    """Ever handed to the provider and accepted, whatever happened next."""
    handed_segments: int = 0
    cost_by_currency: dict[str, Decimal] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return self.queued

    @property
    def final_failed(self) -> int:
        return sum(self.final_failures.values())


#: The actions shown as the page's main button: sending, and sending again.
PRIMARY_ACTIONS = frozenset({"send", "resume"})


def plain(value: Decimal) -> str:
    """A decimal without trailing zeros: 2, 1.5."""
    return f"{value.normalize():f}"


def number(value: int) -> str:
    return f"{value:,}"


def _encodings_text(encodings: dict[str, int]) -> str:
    """ "GSM-7", or for a text personalized into both "GSM-7 for 47, UCS-2 for 3 of
    50 sampled": the audience row never contradicts the sample shown below it."""
    if not encodings:
        return "Unknown"
    if len(encodings) == 1:
        return Message.Encoding(next(iter(encodings))).label
    parts = [
        f"{Message.Encoding(code).label} for {number(count)}"
        for code, count in encodings.items()
    ]
    return f"{', '.join(parts)} of {number(sum(encodings.values()))} sampled"


def can_see_contacts(request: HttpRequest) -> bool:
    return can_view_contact_data(request.user)


def campaign_sample(
    campaign: Campaign, *, with_contact_data: bool = True
) -> tuple[Sample | None, str]:
    """(sample, problem): the text a test send would send (see
    campaigns.writes.campaign_send_test), or why it cannot be rendered."""
    try:
        text = campaign_test_text(campaign, with_contact_data=with_contact_data)
    except BodyError as error:
        return None, " ".join(error.problems)
    return (
        Sample(text=text, info=analyze(text), uses_contact_data=with_contact_data),
        "",
    )


def confirmation_fingerprint(
    campaign: Campaign, list_ids: list[int], *shown: object
) -> str:
    """A digest of what a confirmation page showed: the campaign's state and content,
    and the figures it restated (``shown``). The page posts it back with the click;
    another digest then means the campaign (or its audience) changed in between."""
    parts = [
        campaign.updated_at.isoformat() if campaign.updated_at else "",
        campaign.status,
        campaign.scheduled_at.isoformat() if campaign.scheduled_at else "",
        campaign.started_at.isoformat() if campaign.started_at else "",
        hashlib.sha256(campaign.template_source.encode()).hexdigest(),
        campaign.provider,
        campaign.sender,
        campaign.send_window,
        sorted(list_ids),
        sorted(campaign.segments.values_list("pk", flat=True)),
        campaign.frequency_cap,
        [str(figure) for figure in shown],
    ]
    digest = hashlib.sha256(json.dumps(parts, default=str).encode())
    return digest.hexdigest()[:32]


def launched_progress(campaign: Campaign) -> Progress:
    """Counts by status and cost so far, answered from the (campaign, status) index
    and the campaign's own rows, never by loading messages."""
    progress = Progress()
    messages_ = Message.objects.filter(campaign=campaign).order_by()
    # Handed to the provider and accepted: a submission time, or a status that
    # only a provider's answer gives.
    submitted = Q(submitted_at__isnull=False) | Q(status__in=Message.ACCEPTED)
    rows = messages_.values("status").annotate(
        n=Count("pk"),
        opted_out=Count("pk", filter=Q(error_code=Message.SkipReason.OPTED_OUT)),
        cancelled=Count("pk", filter=Q(error_code=Message.SkipReason.CANCELLED)),
        capped=Count("pk", filter=Q(error_code=Message.SkipReason.FREQUENCY_CAP)),
        handed=Count("pk", filter=submitted),
        handed_segments=Sum("segments", filter=submitted),
    )
    for row in rows:
        status, n = row["status"], row["n"]
        progress.total += n
        progress.handed += row["handed"]
        progress.handed_segments += row["handed_segments"] or 0
        if status in Message.IN_FLIGHT:
            progress.queued += n
            if status == Message.Status.SENDING:
                progress.in_flight = n
        elif status in (Message.Status.SUBMITTED, Message.Status.SENT):
            progress.sent += n
        elif status == Message.Status.DELIVERED:
            progress.delivered = n
        elif status == Message.Status.UNKNOWN:
            progress.unknown = n
        elif status in Message.FAILURES:
            progress.opted_out += row["opted_out"]
            progress.cancelled += row["cancelled"]
            progress.frequency_capped += row["capped"]
            failed = n - row["opted_out"] - row["cancelled"] - row["capped"]
            progress.failed += failed
            if status == Message.Status.FAILED:
                progress.retryable = failed
            else:
                progress.final_failures[status] = failed
    progress.cost_by_currency = {
        row["currency"]: row["total"]
        for row in messages_.filter(price__isnull=False)
        .values("currency")
        .annotate(total=Sum("price"))
        .order_by("-total")
    }
    return progress


def _window_description(send_window: Any) -> str:
    if not send_window:
        return ""
    try:
        return SendWindow.from_dict(send_window).describe()
    except WindowError:
        return ""


#: What a page builder returns: the template context of a confirmation page, with
#: "fingerprint" (what it shows, see confirmation_fingerprint), and "refusal" (why it
#: cannot be confirmed; empty when it can) and "form" (bound on POST) when it has them.
Page = dict[str, Any]
Builder = Callable[[HttpRequest, Campaign, Mapping | None], Page]
Performer = Callable[[HttpRequest, Campaign, Page], HttpResponse]


class CampaignActionsMixin(admin.ModelAdmin):
    # --- The campaign page's buttons ------------------------------------------------

    def get_urls(self) -> list:
        views: dict[str, Callable[..., HttpResponse]] = {
            "test": self.test_view,
            "send": self.send_view,
            "schedule": self.schedule_view,
            "pause": self.pause_view,
            "resume": self.resume_view,
            "cancel": self.cancel_view,
            "retry": self.retry_view,
            "duplicate": self.duplicate_view,
        }
        my_urls = [
            path(
                f"<int:object_id>/{name}/",
                self.admin_site.admin_view(view),
                name=f"campaigns_campaign_{name}",
            )
            for name, view in views.items()
        ]
        return my_urls + super().get_urls()

    def render_change_form(
        self, request, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None:
            context["campaign_actions"] = self.page_actions(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def page_actions(self, request: HttpRequest, campaign: Campaign) -> list[dict]:
        """The buttons the campaign's state and the user's permissions allow (the
        progress refresh sends them again, see campaigns.admin.dashboard)."""
        return [
            {
                "id": f"action-{action.name}",
                "label": action.label,
                "url": reverse(
                    f"admin:campaigns_campaign_{action.name}", args=[campaign.pk]
                ),
                # What the marketer came to do stands out from the rest.
                "primary": action.name in PRIMARY_ACTIONS,
            }
            for action in ACTIONS.values()
            if action.allows(campaign) and self._may(request, action, campaign)
        ]

    # --- The confirmation pages -----------------------------------------------------

    def test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._confirm(
            request, object_id, ACTIONS["test"], self._test_page, self._send_test
        )

    def send_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._confirm(
            request, object_id, ACTIONS["send"], self._send_page, self._send_now
        )

    def schedule_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._confirm(
            request, object_id, ACTIONS["schedule"], self._schedule_page, self._schedule
        )

    def pause_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        def perform(
            request: HttpRequest, campaign: Campaign, page: Page
        ) -> HttpResponse:
            campaign_pause(campaign=campaign)
            return self._done(
                request,
                campaign,
                f"“{campaign}” is paused. Messages already handed to the provider "
                "still go out; the rest wait until you resume.",
            )

        return self._confirm(
            request, object_id, ACTIONS["pause"], self._state_page, perform
        )

    def resume_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        def perform(
            request: HttpRequest, campaign: Campaign, page: Page
        ) -> HttpResponse:
            campaign_resume(campaign=campaign)
            if campaign.status == Status.SENDING:
                text = f"“{campaign}” is sending again. {_worker_note(now=True)}"
            else:
                text = (
                    f"“{campaign}” is scheduled again for "
                    f"{campaign.scheduled_at_display}. {_worker_note(now=False)}"
                )
            return self._done(request, campaign, text)

        return self._confirm(
            request, object_id, ACTIONS["resume"], self._state_page, perform
        )

    def cancel_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        def perform(
            request: HttpRequest, campaign: Campaign, page: Page
        ) -> HttpResponse:
            campaign_cancel(campaign=campaign)
            return self._done(
                request,
                campaign,
                f"“{campaign}” is cancelled. Messages not yet sent will not be sent.",
            )

        return self._confirm(
            request, object_id, ACTIONS["cancel"], self._state_page, perform
        )

    def retry_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._confirm(
            request, object_id, ACTIONS["retry"], self._retry_page, self._retry
        )

    def duplicate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._confirm(
            request,
            object_id,
            ACTIONS["duplicate"],
            self._duplicate_page,
            self._duplicate,
        )

    # --- Pages: what each confirmation page shows ------------------------------------

    def _test_page(
        self, request: HttpRequest, campaign: Campaign, data: Mapping | None
    ) -> Page:
        sample, problem = campaign_sample(
            campaign, with_contact_data=can_see_contacts(request)
        )
        # A test goes through the main provider only.
        provider_problem = campaign_providers_problem(campaign, fallback=False)
        return {
            "form": TestSendForm(data),
            "sample": sample,
            "problems": [problem] if problem else [],
            "provider_problem": provider_problem,
            "refusal": provider_problem or problem,
            "fingerprint": confirmation_fingerprint(campaign, self._list_ids(campaign)),
        }

    def _launch_page(
        self, request: HttpRequest, campaign: Campaign, data: Mapping | None
    ) -> Page:
        """Send now and schedule: the audience, the cost and the text, refused when
        nobody would get it or the text cannot go out."""
        list_ids = self._list_ids(campaign)
        segment_ids = self._segment_ids(campaign)
        estimate = self._estimate(campaign, list_ids)
        sample, problem = campaign_sample(
            campaign, with_contact_data=can_see_contacts(request)
        )
        problems = estimate.problems or ([problem] if problem else [])
        provider_problem = campaign_providers_problem(campaign)
        # The services' own rule (campaigns.actions), on the figures shown.
        # Those at the frequency cap now may not be when their turn comes.
        empty = audience_problem(
            campaign,
            list_ids=list_ids,
            segment_ids=segment_ids,
            recipients=estimate.recipients + estimate.frequency_capped,
        )
        if provider_problem:
            refusal = provider_problem
        elif empty:
            refusal = empty
        elif problems:
            refusal = " ".join(problems)
        else:
            refusal = ""
        page: Page = {
            "figures": self._estimate_rows(campaign, estimate),
            "sample": sample,
            "problems": problems,
            "provider_problem": provider_problem,
            "no_lists": not list_ids and not segment_ids,
            "empty_audience": bool(list_ids or segment_ids)
            and estimate.recipients + estimate.frequency_capped == 0,
            "refusal": refusal,
            "fingerprint": confirmation_fingerprint(
                campaign, list_ids, estimate.recipients
            ),
        }
        return page

    def _send_page(
        self, request: HttpRequest, campaign: Campaign, data: Mapping | None
    ) -> Page:
        return {
            **self._launch_page(request, campaign, data),
            "worker_note": _worker_note(now=True),
        }

    def _schedule_page(
        self, request: HttpRequest, campaign: Campaign, data: Mapping | None
    ) -> Page:
        return {
            **self._launch_page(request, campaign, data),
            "form": self._schedule_form(campaign, data),
            "worker_note": _worker_note(now=False),
        }

    def _schedule_form(self, campaign: Campaign, data: Mapping | None) -> ScheduleForm:
        if data is not None:
            return ScheduleForm(data)
        scheduled = campaign.status == Status.SCHEDULED
        form = ScheduleForm(
            initial=ScheduleForm.initial_for(
                scheduled_at=campaign.scheduled_at if scheduled else None,
                send_window=campaign.send_window,
                time_zone=campaign.schedule_time_zone,
            )
        )
        if not scheduled:
            # Nothing to keep: the page's script may offer the browser's zone.
            form.fields["time_zone"].widget.attrs["data-browser-default"] = "true"
        return form

    def _state_page(
        self, request: HttpRequest, campaign: Campaign, data: Mapping | None
    ) -> Page:
        """Pause, resume and cancel: the estimate before launch, progress after."""
        list_ids = self._list_ids(campaign)
        if campaign.started_at is None:
            estimate = self._estimate(campaign, list_ids)
            figures = self._estimate_rows(campaign, estimate)
            remaining = recipients = estimate.recipients
        else:
            progress = launched_progress(campaign)
            segments, price, currency = self._unit_cost(request, campaign, progress)
            figures = [
                FigureRow(
                    "Recipients",
                    number(progress.total),
                    html_id="confirm-recipients",
                ),
                FigureRow(
                    "Estimated remaining cost",
                    money(progress.remaining * segments * price, currency),
                    f"{number(progress.remaining)} queued {_TIMES} {plain(segments)} "
                    f"segment{'s' if segments != 1 else ''} {_TIMES} "
                    f"{money(price, currency, unit_price=True)}",
                    html_id="confirm-cost",
                ),
                *self._progress_rows(campaign, progress, segments, currency),
            ]
            remaining, recipients = progress.remaining, progress.total
        return {
            "figures": figures,
            "started": campaign.started_at is not None,
            "remaining": number(remaining),
            "worker_note": _worker_note(now=True),
            # Not the remaining count: it moves with every batch sent.
            "fingerprint": confirmation_fingerprint(campaign, list_ids, recipients),
        }

    def _retry_page(
        self, request: HttpRequest, campaign: Campaign, data: Mapping | None
    ) -> Page:
        progress = launched_progress(campaign)
        segments, price, currency = self._unit_cost(request, campaign, progress)
        final = progress.final_failures
        final_note = ", ".join(
            f"{number(final.get(status, 0))} {Message.Status(status).label.lower()}"
            for status in _FINAL_FAILURES
        )
        rows = [
            FigureRow(
                "Failed messages to retry",
                number(progress.retryable),
                "Status “failed”: the provider refused them or reported them failed.",
                html_id="confirm-recipients",
            ),
            FigureRow(
                "Estimated cost of the retry",
                money(progress.retryable * segments * price, currency),
                f"{number(progress.retryable)} {_TIMES} {plain(segments)} segment"
                f"{'s' if segments != 1 else ''} {_TIMES} "
                f"{money(price, currency, unit_price=True)}",
                html_id="confirm-cost",
            ),
            FigureRow(
                "Unknown",
                number(progress.unknown),
                "Retried only if you tick the box below; estimated cost "
                + money(progress.unknown * segments * price, currency)
                + ".",
            ),
            FigureRow(
                "Not retried: final answers from the carrier",
                number(progress.final_failed),
                final_note,
                html_id="retry-final",
            ),
            *self._progress_rows(
                campaign, progress, segments, currency, with_unknown=False
            ),
        ]
        retryable = progress.retryable or progress.unknown
        return {
            "form": RetryForm(data),
            "figures": rows,
            "progress": progress,
            "final_note": final_note,
            "nothing_to_retry": not retryable,
            # Allowed though nothing is left: the service then says so.
            "refusal": "",
            "can_confirm": bool(retryable),
            "fingerprint": confirmation_fingerprint(
                campaign,
                self._list_ids(campaign),
                progress.retryable,
                progress.unknown,
            ),
        }

    def _duplicate_page(
        self, request: HttpRequest, campaign: Campaign, data: Mapping | None
    ) -> Page:
        return {
            "copy_name": _copy_name(campaign.name),
            "fingerprint": confirmation_fingerprint(campaign, self._list_ids(campaign)),
        }

    # --- Performers: what each confirmation does ------------------------------------

    def _send_test(
        self, request: HttpRequest, campaign: Campaign, page: Page
    ) -> HttpResponse:
        form = page["form"]
        try:
            sent = campaign_send_test(
                campaign=campaign,
                numbers=form.cleaned_data["numbers"],
                with_contact_data=can_see_contacts(request),
            )
        except RecipientsOptedOut as error:
            # The numbers the user typed in this form: shown to them as typed.
            numbers = ", ".join(error.numbers)
            form.add_error(
                "numbers",
                f"{numbers} opted out or {'is' if len(error.numbers) == 1 else 'are'} "
                "on the suppression list: test sends respect opt-outs too. "
                "Remove them and try again.",
            )
        except BodyError as error:
            form.add_error(None, " ".join(error.problems))
        else:
            self._report_test(request, sent)
            return self._back(campaign)
        return self._render(request, campaign, ACTIONS["test"], page)

    def _send_now(
        self, request: HttpRequest, campaign: Campaign, page: Page
    ) -> HttpResponse:
        campaign_send_now(campaign=campaign)
        return self._done(
            request,
            campaign,
            f"“{campaign}” is queued to send now. {_worker_note(now=True)}",
        )

    def _schedule(
        self, request: HttpRequest, campaign: Campaign, page: Page
    ) -> HttpResponse:
        data = page["form"].cleaned_data
        campaign_schedule(
            campaign=campaign,
            at=data["at"],
            time_zone=data["time_zone"],
            # Empty sending hours on the form clear the campaign's.
            send_window=data["send_window"] or {},
        )
        window = data.get("send_window_description")
        return self._done(
            request,
            campaign,
            f"“{campaign}” is scheduled for {campaign.scheduled_at_display}"
            + (f", sending only {window}" if window else "")
            + f". {_worker_note(now=False)}",
        )

    def _retry(
        self, request: HttpRequest, campaign: Campaign, page: Page
    ) -> HttpResponse:
        count = campaign_retry_failed(
            campaign=campaign,
            include_unknown=page["form"].cleaned_data["include_unknown"],
        )
        if not count:
            self.message_user(request, "There were no failed messages to retry.")
            return self._back(campaign)
        later = (
            " They go out when you resume the campaign."
            if campaign.status == Status.PAUSED
            else f" {_worker_note(now=True)}"
        )
        return self._done(
            request,
            campaign,
            f"{number(count)} message{'s' if count != 1 else ''} queued again." + later,
        )

    def _duplicate(
        self, request: HttpRequest, campaign: Campaign, page: Page
    ) -> HttpResponse:
        try:
            copy = campaign_create(
                lists=campaign.lists.all(),
                segments=campaign.segments.all(),
                frequency_cap=campaign.frequency_cap,
                created_by=request.user,
                name=page["copy_name"],
                body=campaign.body,
                opt_out_footer=campaign.opt_out_footer,
                provider=campaign.provider,
                fallback_provider=campaign.fallback_provider,
                sender=campaign.sender,
            )
        except BodyError as error:
            return self._fail(
                request, campaign, "Not copied: " + " ".join(error.problems)
            )
        self.message_user(
            request,
            f"“{copy}” is a draft copy of “{campaign}”: same text, lists, "
            "segments and provider, no schedule and no sending hours. Change it, then send it "
            "when ready.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:campaigns_campaign_change", args=[copy.pk])
        )

    # --- Shared steps -----------------------------------------------------------------

    def _confirm(
        self,
        request: HttpRequest,
        object_id: int,
        action: Action,
        build: Builder,
        perform: Performer,
    ) -> HttpResponse:
        """GET shows the page ``build`` describes. POST rebuilds it from the current
        state, holding the campaign's row so nobody edits it meanwhile, and calls
        ``perform`` only if it is the page that was shown (same fingerprint), it
        may be confirmed and its form is valid."""
        campaign = self._campaign(request, object_id, action)
        if refused := self._refuse(request, campaign, action):
            return refused
        if request.method != "POST":
            return self._render(
                request, campaign, action, build(request, campaign, None)
            )
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
            if refused := self._refuse(request, campaign, action):
                return refused
            page = build(request, campaign, request.POST)
            if request.POST.get("fingerprint") != page["fingerprint"]:
                page["changed"] = True
                page["form"] = _unbound_copy(page.get("form"))
                return self._render(request, campaign, action, page)
            if page.get("refusal"):
                return self._fail(
                    request,
                    campaign,
                    f"“{campaign}” was not {action.verb}: {page['refusal']}",
                )
            form = page.get("form")
            if form is not None and not form.is_valid():
                return self._render(request, campaign, action, page)
            try:
                return perform(request, campaign, page)
            except CampaignError as error:
                return self._fail(request, campaign, str(error))

    def _may(self, request: HttpRequest, action: Action, campaign: Campaign) -> bool:
        if action.permission == "add":
            return self.has_add_permission(
                request
            ) and self.has_view_or_change_permission(request, campaign)
        return self.has_change_permission(request, campaign)

    def _campaign(
        self, request: HttpRequest, object_id: int, action: Action
    ) -> Campaign:
        # The model permission first, so a user without it learns nothing of ids.
        model_level = (
            self.has_add_permission(request)
            if action.permission == "add"
            else self.has_change_permission(request)
        )
        if not model_level:
            raise PermissionDenied
        campaign = Campaign.objects.filter(pk=object_id).first()
        if campaign is None:
            raise Http404("No campaign with that id.")
        if not self._may(request, action, campaign):
            raise PermissionDenied
        return campaign

    def _refuse(
        self, request: HttpRequest, campaign: Campaign, action: Action
    ) -> HttpResponse | None:
        """A redirect with an error message when the campaign's state does not
        allow ``action``; None when it does."""
        if action.allows(campaign):
            return None
        return self._fail(
            request,
            campaign,
            f"“{campaign}” is {lifecycle.status_display(campaign).lower()}: "
            f"it cannot be {action.verb}.",
        )

    def _fail(
        self, request: HttpRequest, campaign: Campaign, text: str
    ) -> HttpResponse:
        self.message_user(request, text, messages.ERROR)
        return self._back(campaign)

    def _done(
        self, request: HttpRequest, campaign: Campaign, text: str
    ) -> HttpResponse:
        self.message_user(request, text, messages.SUCCESS)
        return self._back(campaign)

    def _back(self, campaign: Campaign) -> HttpResponse:
        return HttpResponseRedirect(
            reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        )

    def _list_ids(self, campaign: Campaign) -> list[int]:
        return list(campaign.lists.order_by("pk").values_list("pk", flat=True))

    def _segment_ids(self, campaign: Campaign) -> list[int]:
        return list(campaign.segments.order_by("pk").values_list("pk", flat=True))

    def _estimate(self, campaign: Campaign, list_ids: list[int]) -> Estimate:
        return campaign_estimate(
            body=campaign.body,
            lists=list_ids,
            segments=self._segment_ids(campaign),
            frequency_cap=campaign.frequency_cap,
            provider=campaign.provider,
            opt_out_footer=campaign.opt_out_footer,
            track_links=campaign.track_links,
            variants=list(
                campaign.variants.order_by("position").values_list("body", "share")
            ),
        )

    def _estimate_rows(self, campaign: Campaign, estimate: Estimate) -> list[FigureRow]:
        per_message = estimate.segments_per_message
        encoding = _encodings_text(estimate.encodings)
        return [
            FigureRow(
                "Recipients",
                number(estimate.recipients),
                f"{number(estimate.contacts)} contacts in the campaign's lists"
                + (" and segments" if estimate.in_segments else ""),
                html_id="confirm-recipients",
            ),
            FigureRow(
                "Left out",
                number(estimate.excluded),
                self._left_out_note(campaign, estimate),
            ),
            FigureRow(
                "Frequency cap",
                cap_description(campaign.frequency_cap),
                "People who got that many marketing messages in that time are "
                "skipped when their message's turn comes",
                html_id="confirm-frequency-cap",
            ),
            FigureRow(
                "Segments per message",
                f"{per_message:.2f}".rstrip("0").rstrip(".") or "0",
                "" if estimate.exact else "Average over a sample of the audience",
            ),
            FigureRow(
                "Encoding",
                encoding,
                ""
                if len(estimate.encodings) < 2
                else "Depends on each contact's data: the message below is one of them",
            ),
            FigureRow(
                "Estimated cost",
                money(estimate.cost, estimate.currency),
                f"{number(estimate.segments)} segments {_TIMES} "
                f"{money(estimate.price_per_segment, estimate.currency, unit_price=True)}",
                html_id="confirm-cost",
            ),
            FigureRow("Provider", campaign.provider),
            FigureRow(
                "Sending hours",
                _window_description(campaign.send_window) or "Any time",
                "Messages go out only between these times, in each recipient's "
                "local time"
                if campaign.send_window
                else "",
            ),
        ]

    def _left_out_note(self, campaign: Campaign, estimate: Estimate) -> str:
        capped = (
            f", {number(estimate.frequency_capped)} at the frequency cap"
            if effective_cap(campaign.frequency_cap)
            else ""
        )
        across = "lists and segments" if estimate.in_segments else "lists"
        return (
            f"{number(estimate.opted_out)} opted out, "
            f"{number(estimate.suppressed)} on the suppression list{capped}; "
            f"{number(estimate.duplicates)} duplicates across {across} get one "
            "message each"
        )

    def _unit_cost(
        self, request: HttpRequest, campaign: Campaign, progress: Progress
    ) -> tuple[Decimal, Decimal, str]:
        """(segments per message, price per segment, currency) for what is left:
        the average of what was handed to the provider, or the sample text's count
        before that."""
        price, currency = price_for(campaign.provider)
        if progress.handed:
            segments = (Decimal(progress.handed_segments) / progress.handed).quantize(
                Decimal("0.01")
            )
        else:
            sample, _problem = campaign_sample(
                campaign, with_contact_data=can_see_contacts(request)
            )
            segments = Decimal(sample.info.segments if sample else 1)
        return segments, price, currency

    def _progress_rows(
        self,
        campaign: Campaign,
        progress: Progress,
        segments: Decimal,
        currency: str,
        *,
        with_unknown: bool = True,
    ) -> list[FigureRow]:
        """The counts in the words of the campaign page's progress panel."""
        cost_so_far = " + ".join(
            money(total, code) for code, total in progress.cost_by_currency.items()
        ) or money(0, currency)
        failed_note = "sent but not delivered"
        if progress.final_failed and progress.retryable:
            failed_note += (
                f": {number(progress.retryable)} with status “failed”, "
                f"{number(progress.final_failed)} final answers from the carrier"
            )
        rows = [
            FigureRow(
                "Queued",
                number(progress.queued),
                "waiting to be sent"
                + (
                    f", {number(progress.in_flight)} being handed to the provider now"
                    if progress.in_flight
                    else ""
                ),
            ),
            FigureRow("Sent", number(progress.sent), "waiting for a delivery receipt"),
            FigureRow("Delivered", number(progress.delivered)),
            FigureRow("Failed", number(progress.failed), failed_note),
            FigureRow(
                "Opted out",
                number(progress.opted_out),
                "not sent: had opted out (the campaign page also counts people who "
                "replied STOP after their message)",
            ),
        ]
        if progress.cancelled:
            rows.append(
                FigureRow(
                    "Cancelled",
                    number(progress.cancelled),
                    "not sent: the campaign was cancelled",
                )
            )
        if progress.frequency_capped:
            rows.append(
                FigureRow(
                    "Frequency cap",
                    number(progress.frequency_capped),
                    "not sent: had had as many marketing messages as the cap allows",
                    html_id="confirm-frequency-capped",
                )
            )
        if with_unknown:
            rows.append(
                FigureRow(
                    "Unknown",
                    number(progress.unknown),
                    "in flight when a worker stopped; a receipt may still settle them",
                )
            )
        return [
            *rows,
            FigureRow(
                "Handed to the provider",
                number(progress.handed),
                "accepted by the provider so far, whatever happened next",
            ),
            FigureRow("Cost so far", cost_so_far),
            FigureRow("Segments per message", plain(segments)),
            FigureRow("Provider", campaign.provider),
        ]

    def _report_test(self, request: HttpRequest, sent: list[Message]) -> None:
        # Sent on commit (inline without a broker): read back how it went.
        outcome = {
            message.pk: message
            for message in Message.objects.filter(pk__in=[m.pk for m in sent]).only(
                "pk", "to", "status", "error_reason"
            )
        }
        failed = [
            m
            for m in outcome.values()
            if m.status in (Message.Status.FAILED, Message.Status.REJECTED)
        ]
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (
                    reverse("admin:campaigns_message_change", args=[m.pk]),
                    # Numbers the user just typed: masking them hid which of their
                    # own phones to look at.
                    m.to,
                )
                for m in sent
            ),
        )
        if failed:
            reasons = "; ".join(
                f"{m.to}: {m.error_reason or 'no reason given'}" for m in failed
            )
            self.message_user(
                request,
                format_html("The test to {} failed ({}).", links, reasons),
                messages.ERROR,
            )
            return
        queued = any(m.status == Message.Status.QUEUED for m in outcome.values())
        self.message_user(
            request,
            format_html("Test {} to {}.", "queued" if queued else "sent", links),
            messages.SUCCESS,
        )

    def _render(
        self, request: HttpRequest, campaign: Campaign, action: Action, page: Page
    ) -> TemplateResponse:
        change_url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        context = dict(page)
        context.setdefault("can_confirm", not page.get("refusal"))
        form = context.get("form")
        if form is not None:
            context["adminform"] = helpers.AdminForm(form, form.fieldsets, {})
        return TemplateResponse(
            request,
            f"admin/campaigns/campaign/action_{action.name}.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"{action.label}: {campaign}",
                "action": action,
                "campaign": campaign,
                "change_url": change_url,
                "changed_message": CHANGED_MESSAGE,
                **context,
            },
        )


def _copy_name(name: str) -> str:
    limit = Campaign._meta.get_field("name").max_length - len(COPY_SUFFIX)
    return name[:limit] + COPY_SUFFIX


def _unbound_copy(form: Any) -> Any:
    """A form showing the values posted without their errors: the page is shown
    again to be checked, not corrected."""
    if form is None:
        return None
    return type(form)(initial={name: form[name].value() for name in form.fields})


def _worker_note(*, now: bool) -> str:
    # Marketers read this: no command to run (the campaign page says so if no
    # worker picks the campaign up).
    return (
        "A worker starts sending within seconds."
        if now
        else "A worker starts sending at that time."
    )
