"""The campaign page's "Export results (CSV)" download."""

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBase
from django.urls import path, reverse

from contacts.permissions import can_view_contact_data
from smscampaigns.csv_export import csv_response

from ..exports import RESULT_COLUMNS, campaign_results_filename, campaign_results_rows
from ..models import Campaign


class ExportMixin(admin.ModelAdmin):
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name="{}_{}_export".format(*info),
            ),
            *super().get_urls(),
        ]

    def may_export(self, request: HttpRequest, campaign: Campaign) -> bool:
        """Results hold every recipient's number and name: for staff who may see the
        campaign, its messages and contact data."""
        return (
            self.has_view_or_change_permission(request, campaign)
            and request.user.has_perm("campaigns.view_message")
            and can_view_contact_data(request.user)
        )

    def render_change_form(
        self, request, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None and not add and self.may_export(request, obj):
            context["export_url"] = reverse(
                "admin:campaigns_campaign_export", args=[obj.pk]
            )
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def export_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404("No such campaign")
        if not self.may_export(request, campaign):
            raise PermissionDenied
        # With a byte order mark: Excel, where marketers open it, then reads UTF-8.
        return csv_response(
            campaign_results_filename(campaign),
            RESULT_COLUMNS,
            campaign_results_rows(campaign),
            bom=True,
        )
