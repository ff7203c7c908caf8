"""The admin site marketers land on: their work first, plumbing last."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import IS_POPUP_VAR
from django.http import HttpRequest
from django.utils.text import capfirst

#: Apps in the order a marketer works through them; anything else follows.
APP_ORDER = ("campaigns", "contacts", "webhooks", "smscampaigns", "auth")
#: Models within an app, most used first; unnamed models follow alphabetically.
MODEL_ORDER = {
    "campaigns": ("Campaign", "Message", "DeliveryEvent"),
    "contacts": (
        "Contact",
        "ContactList",
        "ImportJob",
        "ConsentEvent",
        "Suppression",
        "PendingSignup",
    ),
    "webhooks": ("InboundMessage", "RejectedCallback"),
}
#: Names in the menu that read better than the model's plural.
MODEL_LABELS = {"InboundMessage": "Inbox"}


def _position(order: tuple[str, ...], name: str) -> tuple[int, str]:
    return (order.index(name) if name in order else len(order), name)


class SmsAdminSite(admin.AdminSite):
    site_header = "smscampaigns"
    site_title = "smscampaigns"
    index_title = "SMS campaigns"
    index_template = "admin/smscampaigns_index.html"

    def index(self, request, extra_context=None):
        # Imported here: the site is created before the apps' models are ready.
        from contacts.permissions import can_view_contact_data
        from webhooks.conversations import unread_count

        extra_context = dict(extra_context or {})
        if can_view_contact_data(request.user) and request.user.has_perm(
            "webhooks.view_inboundmessage"
        ):
            extra_context["unread_replies"] = unread_count()
        return super().index(request, extra_context)

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        apps.sort(key=lambda app: _position(APP_ORDER, app["app_label"]))
        for app in apps:
            order = MODEL_ORDER.get(app["app_label"], ())
            app["models"].sort(key=lambda model: _position(order, model["object_name"]))
            for model in app["models"]:
                model["name"] = MODEL_LABELS.get(model["object_name"], model["name"])
        return apps


class ListTitleMixin(admin.ModelAdmin):
    """A list page titled by what it lists ("Campaigns"), not Django's "Select
    campaign to change"; pick-one popups keep theirs."""

    def changelist_view(self, request, extra_context=None):
        if IS_POPUP_VAR not in request.GET:
            title = capfirst(self.model._meta.verbose_name_plural)
            extra_context = {"title": title, **(extra_context or {})}
        return super().changelist_view(request, extra_context)


def shows_commands(request: HttpRequest) -> bool:
    """Whether a page may name ``manage.py`` commands: to superusers (who run the
    server) and in development. Marketers are told to ask their administrator."""
    return settings.DEBUG or request.user.is_superuser
