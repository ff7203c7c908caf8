from functools import partial

from django.contrib import admin, messages
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from contacts.permissions import ContactDataAdminMixin
from smscampaigns.admin_site import ListTitleMixin

from . import admin_views, simulate
from .conversations import unread_count
from .models import InboundMessage, RejectedCallback

_KEYWORD_BADGES = {
    InboundMessage.Keyword.OPT_OUT: ("STOP", "sms-badge--stop"),
    InboundMessage.Keyword.OPT_IN: ("START", "sms-badge--ok"),
    InboundMessage.Keyword.HELP: ("HELP", "sms-badge--info"),
}


class ReadFilter(admin.SimpleListFilter):
    title = "read"
    parameter_name = "unread"

    def lookups(self, request, model_admin):
        return [("1", "Unread"), ("0", "Read")]

    def queryset(self, request, queryset):
        if self.value() in ("0", "1"):
            return queryset.filter(read_at__isnull=self.value() == "1")
        return queryset


@admin.register(InboundMessage)
class InboundMessageAdmin(ListTitleMixin, ContactDataAdminMixin, admin.ModelAdmin):
    """The inbox: what people texted back, newest first, each row leading to its
    conversation."""

    list_display = [
        "received_at",
        "sender",
        "message",
        "keyword_badge",
        "answers",
        "conversation_link",
        "provider",
    ]
    list_display_links = ["received_at"]
    list_filter = [
        ReadFilter,
        "keyword",
        ("received_at", admin.DateFieldListFilter),
        "provider",
    ]
    search_fields = ["from_number", "text", "contact__first_name", "contact__last_name"]
    list_select_related = ["contact", "in_reply_to__campaign"]
    raw_id_fields = ["contact", "in_reply_to"]
    show_full_result_count = False
    ordering = ["-received_at", "-id"]
    actions = ["mark_read"]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "conversation/<int:contact_id>/",
                view(
                    lambda request, contact_id: admin_views.conversation(
                        self, request, contact_id
                    )
                ),
                name="webhooks_inboundmessage_conversation",
            ),
            path(
                "simulate/",
                view(partial(simulate.simulate_inbound_view, self)),
                name="webhooks_inboundmessage_simulate",
            ),
            *super().get_urls(),
        ]

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
            "unread_count": unread_count(),
            "may_simulate": simulate.may_simulate(self, request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    @admin.action(description="Mark selected replies as read", permissions=["view"])
    def mark_read(self, request, queryset) -> None:
        marked = queryset.filter(read_at__isnull=True).update(read_at=timezone.now())
        self.message_user(request, f"Marked {marked} as read.", messages.SUCCESS)

    @admin.display(description="From", ordering="from_number")
    def sender(self, message: InboundMessage) -> str:
        if message.contact is None:
            return message.from_number
        url = reverse("admin:contacts_contact_change", args=[message.contact_id])
        return format_html('<a href="{}">{}</a>', url, message.contact)

    @admin.display(description="Message")
    def message(self, message: InboundMessage) -> str:
        return Truncator(message.text).chars(160)

    @admin.display(description="Answers")
    def answers(self, message: InboundMessage) -> str:
        answered = message.in_reply_to
        if answered is None or answered.campaign is None:
            return ""
        url = reverse("admin:campaigns_campaign_change", args=[answered.campaign_id])
        return format_html(
            '<a href="{}" title="Sent {}">{}</a>',
            url,
            timezone.localtime(answered.submitted_at).strftime("%Y-%m-%d %H:%M")
            if answered.submitted_at
            else "",
            answered.campaign,
        )

    @admin.display(description="Conversation")
    def conversation_link(self, message: InboundMessage) -> str:
        if message.contact_id is None:
            # A conversation is a contact's: an unknown number has none to open.
            return format_html(
                '<span class="quiet" title="{}">not a contact</span>',
                "Add the number as a contact to answer it from a conversation.",
            )
        url = reverse(
            "admin:webhooks_inboundmessage_conversation", args=[message.contact_id]
        )
        if message.is_unread:
            return format_html(
                '<a href="{}">Open</a> <span class="sms-badge sms-badge--info">'
                "unread</span>",
                url,
            )
        return format_html('<a href="{}">Open</a>', url)

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
