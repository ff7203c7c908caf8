from django.contrib import admin

from .models import DeliveryEvent, InboundMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what providers sent us: for reading, not editing."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
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


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
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
