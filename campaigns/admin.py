from django.contrib import admin

from .admin_actions import CampaignActionsMixin
from .admin_composer import ComposerMixin
from .admin_dashboard import (
    CampaignListFilter,
    CappedCountPaginator,
    DashboardMixin,
    ProviderListFilter,
    filtered_campaign,
    message_search,
)
from .models import Campaign, DeliveryEvent, Message


# Each mixin owns one part of the campaign page: composing (form, live counter),
# acting (test, send, schedule, pause, resume, cancel, retry with confirmation
# pages) and watching (progress, chart, failures). They add their own URLs through
# get_urls() and their own context through render_change_form().
@admin.register(Campaign)
class CampaignAdmin(
    ComposerMixin, CampaignActionsMixin, DashboardMixin, admin.ModelAdmin
):
    change_form_template = "admin/campaigns/campaign/change_form.html"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Every message sent: a million rows and more, so nothing here counts or sorts the
    whole table. Filters come from the URL too (the campaign page links here with
    ``?campaign__id__exact=5&status__exact=failed``, ``status__in=…``, ``error_code=…``)."""

    list_display = [
        "id",
        "campaign",
        "to",
        "status",
        "provider",
        "segments",
        "error_code",
        "status_changed_at",
    ]
    list_filter = [
        ("campaign", CampaignListFilter),
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
    list_select_related = ["campaign"]
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

    def has_add_permission(self, request) -> bool:
        return False

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
class DeliveryEventAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "provider",
        "provider_message_id",
        "raw_status",
        "status",
        "error_code",
        "message",
    ]
    list_filter = ["provider", "status"]
    search_fields = ["provider_message_id", "recipient", "client_reference"]
    raw_id_fields = ["message"]
    show_full_result_count = False

    # Receipts are kept exactly as the provider sent them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
