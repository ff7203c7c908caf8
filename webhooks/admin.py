from functools import partial

from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from contacts.permissions import ContactDataAdminMixin
from smscampaigns.admin_site import ListTitleMixin

from . import simulate
from .models import InboundMessage, RejectedCallback

_KEYWORD_BADGES = {
    InboundMessage.Keyword.OPT_OUT: ("STOP", "sms-badge--stop"),
    InboundMessage.Keyword.OPT_IN: ("START", "sms-badge--ok"),
    InboundMessage.Keyword.HELP: ("HELP", "sms-badge--info"),
}


@admin.register(InboundMessage)
class InboundMessageAdmin(ListTitleMixin, ContactDataAdminMixin, admin.ModelAdmin):
    """The inbox: what people texted back, newest first."""

    list_display = ["received_at", "sender", "message", "keyword_badge", "provider"]
    list_display_links = ["received_at"]
    list_filter = ["keyword", ("received_at", admin.DateFieldListFilter), "provider"]
    search_fields = ["from_number", "text", "contact__first_name", "contact__last_name"]
    list_select_related = ["contact"]
    raw_id_fields = ["contact"]
    show_full_result_count = False
    ordering = ["-received_at", "-id"]

    class Media:
        css = {"all": ["contacts/admin.css"]}

    # What people sent us: for reading, not editing.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "title": "Inbox: inbound replies",
            "may_simulate": simulate.may_simulate(self, request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path(
                "simulate/",
                self.admin_site.admin_view(
                    partial(simulate.simulate_inbound_view, self)
                ),
                name="webhooks_inboundmessage_simulate",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="From", ordering="from_number")
    def sender(self, message: InboundMessage) -> str:
        if message.contact is None:
            return message.from_number
        url = reverse("admin:contacts_contact_change", args=[message.contact_id])
        return format_html('<a href="{}">{}</a>', url, message.contact)

    @admin.display(description="Message")
    def message(self, message: InboundMessage) -> str:
        return Truncator(message.text).chars(160)

    @admin.display(description="Keyword", ordering="keyword")
    def keyword_badge(self, message: InboundMessage) -> str:
        badge = _KEYWORD_BADGES.get(message.keyword)
        if badge is None:
            return ""
        label, css_class = badge
        return format_html(
            '<span class="sms-badge {}" title="{}">{}</span>',
            css_class,
            message.get_keyword_display(),
            label,
        )


@admin.register(RejectedCallback)
class RejectedCallbackAdmin(ListTitleMixin, ContactDataAdminMixin, admin.ModelAdmin):
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
