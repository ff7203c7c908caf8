from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.html import format_html
from django.utils.text import Truncator

from contacts.permissions import can_view_contact_data
from providers.messages import mask_phone
from smscampaigns.admin_site import ListTitleMixin

from ..models import Campaign, CampaignSnapshot, DeliveryEvent, Message
from ..sending.launch import CampaignError
from ..writes import EDITABLE, campaign_delete
from .actions import CampaignActionsMixin
from .composer import ComposerMixin
from .dashboard import (
    CampaignListFilter,
    CappedCountPaginator,
    DashboardMixin,
    OutcomeListFilter,
    ProviderListFilter,
    filtered_campaign,
    message_search,
)
from .exports import ExportMixin
from .segments import SegmentAdmin as SegmentAdmin  # registers the builder


def can_see_contacts(request: HttpRequest) -> bool:
    """Numbers and texts are contact data: only for staff who may view contacts."""
    return can_view_contact_data(request.user)


def deletable(campaign: Campaign) -> bool:
    """The rule of campaigns.writes.campaign_delete: only drafts and scheduled
    campaigns, which have sent nothing."""
    return campaign.status in EDITABLE


# Each mixin owns one part of the campaign page: composing (form, live counter),
# acting (test, send, schedule, pause, resume, cancel, retry with confirmation
# pages), watching (progress, chart, failures) and exporting the results. They add their own URLs through
# get_urls() and their own context through render_change_form().
@admin.register(Campaign)
class CampaignAdmin(
    ListTitleMixin,
    ComposerMixin,
    CampaignActionsMixin,
    DashboardMixin,
    ExportMixin,
    admin.ModelAdmin,
):
    change_form_template = "admin/campaigns/campaign/change_form.html"
    delete_selected_confirmation_template = (
        "admin/campaigns/campaign/delete_selected_confirmation.html"
    )

    # --- Deleting: only what campaign_delete allows, and never a list of messages --

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and not deletable(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_view(self, request, object_id, extra_context=None) -> HttpResponse:
        campaign = self.get_object(request, unquote(object_id))
        refused = campaign is not None and not deletable(campaign)
        if refused and super().has_delete_permission(request, campaign):
            return self._refuse_delete(request, campaign)
        try:
            return super().delete_view(request, object_id, extra_context)
        except CampaignError as error:
            # It started sending between the confirmation page and the click; the
            # deletion's log entry was rolled back with it.
            return self._refuse_delete(request, campaign, str(error))

    def _refuse_delete(
        self, request, campaign: Campaign, reason: str = ""
    ) -> HttpResponse:
        self.message_user(
            request,
            reason
            or f"“{campaign.name}” is {campaign.get_status_display().lower()}: only "
            "drafts and scheduled campaigns can be deleted. Cancel it instead.",
            messages.ERROR,
        )
        return HttpResponseRedirect(
            reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        )

    def delete_model(self, request, obj: Campaign) -> None:
        campaign_delete(campaign=obj)

    def delete_queryset(self, request, queryset: QuerySet) -> None:
        refused = []
        for campaign in queryset:
            try:
                campaign_delete(campaign=campaign)
            except CampaignError:
                refused.append(campaign.name)
        if refused:
            self.message_user(
                request,
                "Not deleted (they started sending meanwhile; cancel them instead): "
                + ", ".join(refused),
                messages.ERROR,
            )

    def get_deleted_objects(self, objs, request):
        """What the confirmation page lists: the campaigns and how many rows of
        their own go with them, never each message (a campaign can have a
        million). Campaigns that already sent are listed as not deletable."""
        campaigns = list(objs)
        allowed = [c for c in campaigns if deletable(c)]
        to_delete = [
            format_html(
                'Campaign: <a href="{}">{}</a>',
                reverse("admin:campaigns_campaign_change", args=[c.pk]),
                c.name,
            )
            for c in allowed
        ]
        model_count = {Campaign._meta.verbose_name_plural: len(allowed)}
        ids = [c.pk for c in allowed]
        for model in (Message, CampaignSnapshot):
            # Drafts and scheduled campaigns have no messages; counted to be sure.
            related = (
                model.objects.filter(campaign_id__in=ids)
                .order_by()
                .aggregate(n=Count("pk"))["n"]
            )
            if related:
                model_count[model._meta.verbose_name_plural] = related
        protected = [
            f"{c.name} ({c.get_status_display().lower()}): it has sent messages, "
            "cancel it instead"
            for c in campaigns
            if not deletable(c)
        ]
        # The snapshots and messages go with their campaign: deleting a campaign
        # needs no permission on them.
        return to_delete, model_count, set(), protected


#: Characters of a message's text shown in the list before it is cut.
MESSAGE_TEXT_CHARS = 60


@admin.register(Message)
class MessageAdmin(ListTitleMixin, admin.ModelAdmin):
    """Every message sent: a million rows and more, so nothing here counts or sorts the
    whole table. Filters come from the URL too (the campaign page links here with
    ``?campaign__id__exact=5&outcome=failed``, ``error_code=…``; see OUTCOMES).

    A record of what was sent: nobody adds, edits or deletes messages here. Staff who
    may not view contacts see masked numbers and no texts (searching by a number
    still finds its messages)."""

    # Who got what, fitting a 1,400 px screen beside the filters: provider and
    # segments are filters and on each message's page.
    list_display = [
        "id",
        "campaign_name",
        "recipient",
        "text",
        "status",
        "error_code",
        "changed",
        "clicked",
    ]
    list_filter = [
        ("campaign", CampaignListFilter),
        OutcomeListFilter,
        "status",
        ProviderListFilter,
        "encoding",
    ]
    # Searched by message_search (exact, indexed); listed so the search box shows.
    search_fields = ["=provider_message_id"]
    search_help_text = (
        "Exact matches: a phone number (any format), the provider's message ID, "
        "the client reference or the message number."
    )
    list_select_related = ["campaign", "contact"]
    raw_id_fields = ["campaign", "contact"]
    # Counting: at most 10,001 rows per view (see CappedCountPaginator), never the
    # unfiltered table, and no per-choice counts in the filters.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    # Newest first along the primary key (or the (campaign, status, id) index when
    # filtered); sorting a million rows by another column would take seconds.
    sortable_by = ["id"]
    # A bulk action over "all N selected" would run over millions of rows.
    actions = None
    readonly_fields = [f.name for f in Message._meta.fields]

    # Fields holding contact data, and what replaces them for staff who may not
    # view contacts.
    _MASKED = {
        "to": "masked_to",
        "body": "hidden_body",
        "contact": "contact_ref",
        "recipient": "masked_to",
        "text": "hidden_text",
    }

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_list_display(self, request) -> list[str]:
        if can_see_contacts(request):
            return self.list_display
        return [self._MASKED.get(name, name) for name in self.list_display]

    def get_fields(self, request, obj=None) -> list[str]:
        fields = [f.name for f in Message._meta.fields]
        if can_see_contacts(request):
            return fields
        return [self._MASKED.get(name, name) for name in fields]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return self.get_fields(request, obj)

    def lookup_allowed(self, lookup, value, request) -> bool:
        # ?to__startswith=+1415… would reveal numbers digit by digit.
        if not can_see_contacts(request) and lookup.split("__")[0] in self._MASKED:
            return False
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description="to")
    def masked_to(self, message: Message) -> str:
        return mask_phone(message.to)

    @admin.display(description="Campaign", ordering="campaign")
    def campaign_name(self, message: Message) -> str:
        if message.campaign is None:
            return "—"
        name = message.campaign.name
        return format_html(
            '<span title="{}">{}</span>', name, Truncator(name).chars(30)
        )

    @admin.display(description="To")
    def recipient(self, message: Message) -> str:
        """The contact's name over the number (the number alone without a contact)."""
        name = ""
        if message.contact is not None:
            name = f"{message.contact.first_name} {message.contact.last_name}".strip()
        if not name:
            return message.to
        return format_html('{}<br><span class="quiet">{}</span>', name, message.to)

    @admin.display(description="Text")
    def text(self, message: Message) -> str:
        return format_html(
            '<span title="{}">{}</span>',
            message.body,
            Truncator(message.body).chars(MESSAGE_TEXT_CHARS),
        )

    @admin.display(description="Text")
    def hidden_text(self, message: Message) -> str:
        return "—"

    @admin.display(description="Status changed", ordering="status_changed_at")
    def changed(self, message: Message) -> str:
        return format_date(timezone.localtime(message.status_changed_at), "M j, H:i")

    @admin.display(description="First click", ordering="first_clicked_at")
    def clicked(self, message: Message) -> str:
        if message.first_clicked_at is None:
            return "—"
        return format_date(timezone.localtime(message.first_clicked_at), "M j, H:i")

    @admin.display(description="body")
    def hidden_body(self, message: Message) -> str:
        return "Hidden: texts are shown to staff who may view contacts."

    @admin.display(description="contact")
    def contact_ref(self, message: Message) -> str:
        return f"#{message.contact_id}" if message.contact_id else "—"

    def message_label(self, request: HttpRequest, message: Message) -> str:
        """The message as the page's title and breadcrumbs name it (its __str__
        holds the full number)."""
        to = message.to if can_see_contacts(request) else mask_phone(message.to)
        return f"Message {message.pk} to {to}"

    def render_change_form(
        self, request, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None:
            context["subtitle"] = context["message_label"] = self.message_label(
                request, obj
            )
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def history_view(self, request, object_id, extra_context=None):
        message = self.get_object(request, unquote(object_id))
        if message is not None:
            label = self.message_label(request, message)
            extra_context = {
                "title": f"Change history: {label}",
                "message_label": label,
                **(extra_context or {}),
            }
        return super().history_view(request, object_id, extra_context)

    def get_search_results(self, request, queryset, search_term):
        return message_search(queryset, search_term), False

    def changelist_view(self, request, extra_context=None):
        campaign = filtered_campaign(request)
        if campaign is not None:
            extra_context = {
                "title": f"Messages of campaign “{campaign.name}”",
                "filtered_campaign": campaign,
                **(extra_context or {}),
            }
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ListTitleMixin, admin.ModelAdmin):
    """Delivery receipts, kept exactly as the provider sent them: nobody adds, edits
    or deletes them here. Staff who may not view contacts see masked numbers and no
    raw payload (it holds the number too)."""

    list_display = [
        "received_at",
        "provider",
        "provider_message_id",
        "raw_status",
        "status",
        "error_code",
        "message_link",
    ]
    list_filter = ["provider", "status"]
    search_fields = ["provider_message_id", "recipient", "client_reference"]
    raw_id_fields = ["message"]
    show_full_result_count = False

    _MASKED = {"recipient": "masked_recipient", "payload": "hidden_payload"}

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None) -> list[str]:
        fields = [
            "message_link" if f.name == "message" else f.name
            for f in DeliveryEvent._meta.fields
            if f.name != "id"
        ]
        if can_see_contacts(request):
            return fields
        return [self._MASKED.get(name, name) for name in fields]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return self.get_fields(request, obj)

    def get_search_fields(self, request) -> list[str]:
        if can_see_contacts(request):
            return self.search_fields
        # Only whole numbers (the search is "contains" otherwise).
        return ["provider_message_id", "=recipient", "client_reference"]

    def lookup_allowed(self, lookup, value, request) -> bool:
        if not can_see_contacts(request) and lookup.split("__")[0] in self._MASKED:
            return False
        return super().lookup_allowed(lookup, value, request)

    # The message's own name holds its full number, and would cost a query per row.
    @admin.display(description="message")
    def message_link(self, event: DeliveryEvent) -> str:
        if not event.message_id:
            return "—"
        return format_html(
            '<a href="{}">Message {}</a>',
            reverse("admin:campaigns_message_change", args=[event.message_id]),
            event.message_id,
        )

    @admin.display(description="recipient")
    def masked_recipient(self, event: DeliveryEvent) -> str:
        return mask_phone(event.recipient) if event.recipient else ""

    @admin.display(description="payload")
    def hidden_payload(self, event: DeliveryEvent) -> str:
        return "Hidden: shown to staff who may view contacts."
