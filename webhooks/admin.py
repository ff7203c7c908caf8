from django.contrib import admin

from .models import InboundMessage, RejectedCallback


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "from_number",
        "to_number",
        "text",
        "keyword",
        "provider",
    ]
    list_filter = ["keyword", "provider"]
    search_fields = ["from_number", "text"]
    raw_id_fields = ["contact"]
    show_full_result_count = False

    # What people sent us: for reading, not editing.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RejectedCallback)
class RejectedCallbackAdmin(admin.ModelAdmin):
    list_display = ["received_at", "provider", "kind", "reason"]
    list_filter = ["provider", "kind"]
    readonly_fields = [
        "received_at",
        "provider",
        "kind",
        "reason",
        "content_type",
        "body",
    ]

    def has_add_permission(self, request) -> bool:
        return False
