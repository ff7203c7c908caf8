from django.contrib import admin

from .admin_actions import CampaignActionsMixin
from .admin_composer import ComposerMixin
from .admin_dashboard import DashboardMixin
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
    list_filter = ["status", "provider", "encoding"]
    search_fields = ["to", "provider_message_id", "=client_reference", "campaign__name"]
    list_select_related = ["campaign"]
    raw_id_fields = ["campaign", "contact"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


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
