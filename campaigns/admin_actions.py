"""Campaign actions in the admin, each behind a confirmation page.

Send a test, send now, schedule, pause, resume, cancel and retry failed messages.
Each page restates who the campaign reaches and what it costs; its POST calls the
service in campaigns/actions.py or campaigns/adhoc.py and goes back to the campaign
page with a message. A state that does not allow the action becomes an error
message, never a 500.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import dateformat
from django.utils.html import format_html, format_html_join

from contacts.phones import mask_phone
from providers.encoding import TextInfo, analyze

from .action_forms import RetryForm, ScheduleForm, TestSendForm
from .actions import (
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_retry_failed,
    campaign_send_now,
)
from .adhoc import (
    BodyError,
    RecipientsOptedOut,
    body_problems,
    campaign_schedule_with_window,
    campaign_send_test,
    campaign_test_text,
)
from .claims import OPTED_OUT_CODE
from .dispatch import CANCELLED_CODE
from .launch import CampaignError
from .models import Campaign, Message
from .preview import (
    Estimate,
    campaign_audience,
    campaign_estimate,
    format_money as money,
    price_for,
)
from .scheduling import broker_configured

Status = Campaign.Status
# The multiplication sign between the factors of a cost, as an escape because ruff
# flags the literal.
_TIMES = "\u00d7"


_ACCEPTED = [
    Message.Status.SUBMITTED,
    Message.Status.SENT,
    Message.Status.DELIVERED,
    Message.Status.UNDELIVERED,
    Message.Status.EXPIRED,
]


@dataclass(frozen=True)
class Action:
    name: str
    """URL segment, URL name suffix, template suffix and button id suffix."""
    label: str
    verb: str
    """Past participle for refusals: "it cannot be paused"."""
    allowed: frozenset[str] | None
    """Statuses the action applies to; None for any."""

    def allows(self, campaign: Campaign) -> bool:
        return self.allowed is None or campaign.status in self.allowed


# Same states as the services in campaigns/actions.py accept. Retry is refused for
# drafts (nothing sent), scheduled (nothing sent yet) and cancelled campaigns, whose
# requeued messages would never go out.
ACTIONS = {
    action.name: action
    for action in [
        Action("test", "Send a test", "tested", None),
        Action("send", "Send now", "sent", frozenset({Status.DRAFT, Status.SCHEDULED})),
        Action(
            "schedule",
            "Schedule",
            "scheduled",
            frozenset({Status.DRAFT, Status.SCHEDULED}),
        ),
        Action(
            "pause", "Pause", "paused", frozenset({Status.SENDING, Status.SCHEDULED})
        ),
        Action("resume", "Resume", "resumed", frozenset({Status.PAUSED})),
        Action(
            "cancel",
            "Cancel campaign",
            "cancelled",
            frozenset({Status.DRAFT, Status.SCHEDULED, Status.SENDING, Status.PAUSED}),
        ),
        Action(
            "retry",
            "Retry failed",
            "retried",
            frozenset({Status.SENDING, Status.PAUSED, Status.COMPLETED, Status.FAILED}),
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
    """The text as it goes out, rendered for the first contact of the audience."""

    text: str
    info: TextInfo

    @property
    def encoding_label(self) -> str:
        return Message.Encoding(self.info.encoding).label


@dataclass
class Progress:
    """A launched campaign's messages, from two GROUP BY queries on its messages."""

    total: int = 0
    queued: int = 0
    in_flight: int = 0
    sent: int = 0
    """Accepted by the provider."""
    delivered: int = 0
    failed: int = 0
    """Failed and retryable: not skipped for an opt-out or a cancel."""
    skipped: int = 0
    unknown: int = 0
    submitted_segments: int = 0
    cost_by_currency: dict[str, Decimal] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return self.queued + self.in_flight


def plain(value: Decimal) -> str:
    """A decimal without trailing zeros: 2, 1.5."""
    return f"{value.normalize():f}"


def number(value: int) -> str:
    return f"{value:,}"


def campaign_sample(campaign: Campaign) -> tuple[Sample | None, str]:
    """(sample, problem): the text a test send would send (see
    campaigns.adhoc.campaign_send_test), or why it cannot be rendered."""
    try:
        text = campaign_test_text(campaign)
    except BodyError as error:
        return None, " ".join(error.problems)
    return Sample(text=text, info=analyze(text)), ""


def launched_progress(campaign: Campaign) -> Progress:
    """Counts by status and cost so far, answered from the (campaign, status) index
    and the campaign's own rows, never by loading messages."""
    progress = Progress()
    messages_ = Message.objects.filter(campaign=campaign).order_by()
    skipped = Q(error_code__in=[OPTED_OUT_CODE, CANCELLED_CODE])
    # Handed to the provider and accepted: a submission time, or a status that
    # only a provider's answer gives.
    submitted = Q(submitted_at__isnull=False) | Q(status__in=_ACCEPTED)
    rows = messages_.values("status").annotate(
        n=Count("pk"),
        skipped=Count("pk", filter=skipped),
        submitted=Count("pk", filter=submitted),
        submitted_segments=Sum("segments", filter=submitted),
    )
    for row in rows:
        status, n = row["status"], row["n"]
        progress.total += n
        progress.sent += row["submitted"]
        progress.submitted_segments += row["submitted_segments"] or 0
        progress.skipped += row["skipped"]
        if status == Message.Status.QUEUED:
            progress.queued = n
        elif status == Message.Status.SENDING:
            progress.in_flight = n
        elif status == Message.Status.DELIVERED:
            progress.delivered = n
        elif status == Message.Status.FAILED:
            progress.failed = n - row["skipped"]
        elif status == Message.Status.UNKNOWN:
            progress.unknown = n - row["skipped"]
    progress.cost_by_currency = {
        row["currency"]: row["total"]
        for row in messages_.filter(price__isnull=False)
        .values("currency")
        .annotate(total=Sum("price"))
        .order_by("-total")
    }
    return progress


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
        if obj is not None and self.has_change_permission(request, obj):
            context["campaign_actions"] = [
                {
                    "id": f"action-{action.name}",
                    "label": action.label,
                    "url": reverse(
                        f"admin:campaigns_campaign_{action.name}", args=[obj.pk]
                    ),
                }
                for action in ACTIONS.values()
                if action.allows(obj)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- The confirmation pages -----------------------------------------------------

    def test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        form = TestSendForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                sent = campaign_send_test(
                    campaign=campaign, numbers=form.cleaned_data["numbers"]
                )
            except RecipientsOptedOut as error:
                masked = ", ".join(mask_phone(n) for n in error.numbers)
                form.add_error(
                    "numbers",
                    f"{masked} opted out or {'is' if len(error.numbers) == 1 else 'are'} "
                    "on the suppression list: test sends respect opt-outs too. "
                    "Remove them and try again.",
                )
            except BodyError as error:
                form.add_error(None, " ".join(error.problems))
            else:
                self._report_test(request, sent)
                return self._back(campaign)
        sample, problem = campaign_sample(campaign)
        return self._render(
            request,
            campaign,
            ACTIONS["test"],
            form=form,
            sample=sample,
            problems=[problem] if problem else [],
            can_confirm=sample is not None,
        )

    def send_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        action = ACTIONS["send"]
        if refused := self._refuse(request, campaign, action):
            return refused
        if request.method == "POST":
            if problems := body_problems(campaign.body, campaign_audience(campaign)):
                return self._fail(request, campaign, "Not sent: " + " ".join(problems))
            try:
                campaign_send_now(campaign=campaign)
            except CampaignError as error:
                return self._fail(request, campaign, str(error))
            self.message_user(
                request,
                f"“{campaign}” is queued to send now. {_worker_note(now=True)}",
                messages.SUCCESS,
            )
            return self._back(campaign)
        estimate = self._estimate(campaign)
        sample, problem = campaign_sample(campaign)
        problems = estimate.problems or ([problem] if problem else [])
        return self._render(
            request,
            campaign,
            action,
            figures=self._estimate_rows(campaign, estimate),
            sample=sample,
            problems=problems,
            empty_audience=estimate.recipients == 0,
            can_confirm=not problems,
            worker_note=_worker_note(now=True),
        )

    def schedule_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        action = ACTIONS["schedule"]
        if refused := self._refuse(request, campaign, action):
            return refused
        if request.method == "POST":
            form = ScheduleForm(request.POST)
            if form.is_valid():
                return self._schedule(request, campaign, form)
        else:
            form = ScheduleForm(
                initial=ScheduleForm.initial_for(
                    scheduled_at=campaign.scheduled_at
                    if campaign.status == Status.SCHEDULED
                    else None,
                    send_window=campaign.send_window,
                )
            )
            if campaign.status != Status.SCHEDULED:
                # Nothing to keep: the page's script may offer the browser's zone.
                form.fields["time_zone"].widget.attrs["data-browser-default"] = "true"
        estimate = self._estimate(campaign)
        sample, problem = campaign_sample(campaign)
        problems = estimate.problems or ([problem] if problem else [])
        return self._render(
            request,
            campaign,
            action,
            form=form,
            figures=self._estimate_rows(campaign, estimate),
            sample=sample,
            problems=problems,
            empty_audience=estimate.recipients == 0,
            can_confirm=not problems,
            worker_note=_worker_note(now=False),
        )

    def _schedule(
        self, request: HttpRequest, campaign: Campaign, form: ScheduleForm
    ) -> HttpResponse:
        if problems := body_problems(campaign.body, campaign_audience(campaign)):
            return self._fail(request, campaign, "Not scheduled: " + " ".join(problems))
        data = form.cleaned_data
        send_window = data["send_window"]
        if send_window is None and campaign.send_window:
            send_window = {}  # the form's empty quiet hours clear the old ones
        try:
            campaign_schedule_with_window(
                campaign=campaign, at=data["at"], send_window=send_window
            )
        except CampaignError as error:
            return self._fail(request, campaign, str(error))
        local = data["at"].astimezone(ZoneInfo(data["time_zone"]))
        when = dateformat.format(local, "D j M Y, H:i T")
        window = data.get("send_window_description")
        self.message_user(
            request,
            f"“{campaign}” is scheduled for {when} ({data['time_zone']})"
            + (f", sending only {window}" if window else "")
            + f". {_worker_note(now=False)}",
            messages.SUCCESS,
        )
        return self._back(campaign)

    def pause_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._simple(
            request,
            object_id,
            ACTIONS["pause"],
            perform=lambda campaign: campaign_pause(campaign=campaign),
            success="“{campaign}” is paused. Messages already handed to the provider "
            "still go out; the rest wait until you resume.",
        )

    def resume_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        def success(campaign: Campaign) -> str:
            if campaign.status == Status.SENDING:
                return f"“{campaign}” is sending again. {_worker_note(now=True)}"
            return f"“{campaign}” is scheduled again. {_worker_note(now=False)}"

        return self._simple(
            request,
            object_id,
            ACTIONS["resume"],
            perform=lambda campaign: campaign_resume(campaign=campaign),
            success=success,
        )

    def cancel_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._simple(
            request,
            object_id,
            ACTIONS["cancel"],
            perform=lambda campaign: campaign_cancel(campaign=campaign),
            success="“{campaign}” is cancelled. Messages not yet sent will not be sent.",
        )

    def retry_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        action = ACTIONS["retry"]
        if refused := self._refuse(request, campaign, action):
            return refused
        form = RetryForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                count = campaign_retry_failed(
                    campaign=campaign,
                    include_unknown=form.cleaned_data["include_unknown"],
                )
            except CampaignError as error:
                return self._fail(request, campaign, str(error))
            if not count:
                self.message_user(request, "There were no failed messages to retry.")
            else:
                later = (
                    " They go out when you resume the campaign."
                    if campaign.status == Status.PAUSED
                    else f" {_worker_note(now=True)}"
                )
                self.message_user(
                    request,
                    f"{number(count)} message{'s' if count != 1 else ''} queued again."
                    + later,
                    messages.SUCCESS,
                )
            return self._back(campaign)
        progress = launched_progress(campaign)
        segments, price, currency = self._unit_cost(campaign, progress)
        rows = [
            FigureRow(
                "Failed messages to retry",
                number(progress.failed),
                "Messages skipped because the recipient opted out, and those of a "
                "cancel, are not retried.",
                html_id="confirm-recipients",
            ),
            FigureRow(
                "Estimated cost of the retry",
                money(progress.failed * segments * price, currency),
                f"{number(progress.failed)} {_TIMES} {plain(segments)} segment"
                f"{'s' if segments != 1 else ''} {_TIMES} {money(price, currency)}",
                html_id="confirm-cost",
            ),
            FigureRow(
                "Fate unknown",
                number(progress.unknown),
                "Retried only if you tick the box below; estimated cost "
                + money(progress.unknown * segments * price, currency)
                + ".",
            ),
            *self._progress_rows(
                campaign, progress, segments, currency, failed_row=False
            ),
        ]
        return self._render(
            request,
            campaign,
            action,
            form=form,
            figures=rows,
            can_confirm=bool(progress.failed or progress.unknown),
            nothing_to_retry=not (progress.failed or progress.unknown),
        )

    # --- Shared steps -----------------------------------------------------------------

    def _campaign(self, request: HttpRequest, object_id: int) -> Campaign:
        # The model permission first, so a user without it learns nothing of ids.
        if not self.has_change_permission(request):
            raise PermissionDenied
        campaign = Campaign.objects.filter(pk=object_id).first()
        if campaign is None:
            raise Http404("No campaign with that id.")
        if not self.has_change_permission(request, campaign):
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
            f"“{campaign}” is {campaign.get_status_display().lower()}: "
            f"it cannot be {action.verb}.",
        )

    def _fail(
        self, request: HttpRequest, campaign: Campaign, text: str
    ) -> HttpResponse:
        self.message_user(request, text, messages.ERROR)
        return self._back(campaign)

    def _back(self, campaign: Campaign) -> HttpResponse:
        return HttpResponseRedirect(
            reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        )

    def _simple(
        self,
        request: HttpRequest,
        object_id: int,
        action: Action,
        *,
        perform: Callable[[Campaign], object],
        success: str | Callable[[Campaign], str],
    ) -> HttpResponse:
        """Pause, resume and cancel: a page that restates the figures, and a POST."""
        campaign = self._campaign(request, object_id)
        if refused := self._refuse(request, campaign, action):
            return refused
        if request.method == "POST":
            try:
                perform(campaign)
            except CampaignError as error:
                return self._fail(request, campaign, str(error))
            text = (
                success(campaign)
                if callable(success)
                else success.format(campaign=campaign)
            )
            self.message_user(request, text, messages.SUCCESS)
            return self._back(campaign)
        if campaign.started_at is None:
            estimate = self._estimate(campaign)
            figures = self._estimate_rows(campaign, estimate)
            remaining = estimate.recipients
        else:
            progress = launched_progress(campaign)
            segments, price, currency = self._unit_cost(campaign, progress)
            figures = [
                FigureRow(
                    "Recipients",
                    number(progress.total),
                    html_id="confirm-recipients",
                ),
                FigureRow(
                    "Estimated remaining cost",
                    money(progress.remaining * segments * price, currency),
                    f"{number(progress.remaining)} messages {_TIMES} {plain(segments)} segment"
                    f"{'s' if segments != 1 else ''} {_TIMES} {money(price, currency)}",
                    html_id="confirm-cost",
                ),
                *self._progress_rows(campaign, progress, segments, currency),
            ]
            remaining = progress.remaining
        return self._render(
            request,
            campaign,
            action,
            figures=figures,
            started=campaign.started_at is not None,
            remaining=number(remaining),
            can_confirm=True,
            worker_note=_worker_note(now=True),
        )

    def _estimate(self, campaign: Campaign) -> Estimate:
        return campaign_estimate(
            body=campaign.body,
            lists=campaign.lists.all(),
            provider=campaign.provider,
            opt_out_footer=campaign.opt_out_footer,
        )

    def _estimate_rows(self, campaign: Campaign, estimate: Estimate) -> list[FigureRow]:
        per_message = estimate.segments_per_message
        encoding = (
            Message.Encoding(estimate.encoding).label
            if estimate.encoding
            else "Unknown"
        )
        return [
            FigureRow(
                "Recipients",
                number(estimate.recipients),
                f"{number(estimate.contacts)} contacts in the campaign's lists",
                html_id="confirm-recipients",
            ),
            FigureRow(
                "Left out",
                number(estimate.excluded),
                f"{number(estimate.opted_out)} opted out, "
                f"{number(estimate.suppressed)} on the suppression list; "
                f"{number(estimate.duplicates)} duplicates across lists get one "
                "message each",
            ),
            FigureRow(
                "Segments per message",
                f"{per_message:.2f}".rstrip("0").rstrip(".") or "0",
                "" if estimate.exact else "Average over a sample of the audience",
            ),
            FigureRow("Encoding", encoding),
            FigureRow(
                "Estimated cost",
                money(estimate.cost, estimate.currency),
                f"{number(estimate.segments)} segments {_TIMES} "
                f"{money(estimate.price_per_segment, estimate.currency)}",
                html_id="confirm-cost",
            ),
            FigureRow("Provider", campaign.provider),
        ]

    def _unit_cost(
        self, campaign: Campaign, progress: Progress
    ) -> tuple[Decimal, Decimal, str]:
        """(segments per message, price per segment, currency) for what is left:
        the average of what was sent, or the sample text's count before that."""
        price, currency = price_for(campaign.provider)
        if progress.sent:
            segments = (Decimal(progress.submitted_segments) / progress.sent).quantize(
                Decimal("0.01")
            )
        else:
            sample, _problem = campaign_sample(campaign)
            segments = Decimal(sample.info.segments if sample else 1)
        return segments, price, currency

    def _progress_rows(
        self,
        campaign: Campaign,
        progress: Progress,
        segments: Decimal,
        currency: str,
        *,
        failed_row: bool = True,
    ) -> list[FigureRow]:
        cost_so_far = " + ".join(
            money(total, code) for code, total in progress.cost_by_currency.items()
        ) or money(0, currency)
        failed = FigureRow(
            "Failed",
            number(progress.failed),
            f"plus {number(progress.skipped)} skipped (opted out or cancelled)"
            if progress.skipped
            else "",
        )
        return [
            FigureRow("Sent so far", number(progress.sent)),
            FigureRow("Delivered", number(progress.delivered)),
            FigureRow(
                "Waiting to be sent",
                number(progress.queued),
                f"and {number(progress.in_flight)} being handed to the provider now"
                if progress.in_flight
                else "",
            ),
            *([failed] if failed_row else []),
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
                    mask_phone(m.to),
                )
                for m in sent
            ),
        )
        if failed:
            reasons = "; ".join(
                f"{mask_phone(m.to)}: {m.error_reason or 'no reason given'}"
                for m in failed
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
        self, request: HttpRequest, campaign: Campaign, action: Action, **context
    ) -> TemplateResponse:
        change_url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
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
                **context,
            },
        )


def _worker_note(*, now: bool) -> str:
    if broker_configured():
        return (
            "A worker starts sending within seconds."
            if now
            else "A worker starts sending at that time."
        )
    return (
        "The worker (manage.py run_worker) starts sending within seconds: make sure it "
        "is running."
        if now
        else "The worker (manage.py run_worker) starts sending at that time: make sure "
        "it is running."
    )
