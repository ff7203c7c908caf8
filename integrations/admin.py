"""Endpoints (create, switch off, roll the secret) and the delivery log (re-send)."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from contacts.permissions import ContactDataAdminMixin
from smscampaigns.admin_paginator import CappedCountChangeList, CappedCountPaginator

from . import services
from .events import EventType
from .models import Delivery, WebhookEndpoint


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="Each event is POSTed as JSON, signed with the endpoint's secret.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "events", "is_active"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        services.validate_endpoint_url(url)
        return url

    def clean_events(self) -> list[str]:
        try:
            return services.validate_event_types(self.cleaned_data["events"])
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from exc


def _secret_shown_once(request: HttpRequest, endpoint: WebhookEndpoint, secret: str):
    messages.warning(
        request,
        f"Signing secret of {endpoint.url}: {secret} — copy it now, it will not be "
        "shown again. Verify each delivery's Smscampaigns-Signature header with it "
        "(see the README).",
    )


# Events carry numbers and texts: the same rule as the contacts' pages.
@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ContactDataAdminMixin, admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "event_list", "is_active", "state", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "description"]
    readonly_fields = ["state", "created_by", "created_at"]
    actions = ["roll_secret", "activate", "deactivate"]

    def get_fields(self, request, obj=None) -> list[str]:
        fields = ["url", "description", "events", "is_active"]
        return fields if obj is None else [*fields, "state", "created_by", "created_at"]

    @admin.display(description="Events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events)

    @admin.display(description="State")
    def state(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.failing_since is None:
            return format_html('<span class="sms-badge sms-badge--ok">{}</span>', "OK")
        retry = (
            timezone.localtime(endpoint.retry_at).strftime("%H:%M:%S")
            if endpoint.retry_at
            else "soon"
        )
        return format_html(
            '<span class="sms-badge sms-badge--warning">Failing</span> since {} '
            "({} attempts in a row); next try at {}",
            timezone.localtime(endpoint.failing_since).strftime("%b %d %H:%M"),
            endpoint.consecutive_failures,
            retry,
        )

    def save_model(self, request, obj: WebhookEndpoint, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user
        super().save_model(request, obj, form, change)
        _secret_shown_once(request, obj, obj.secret)

    @admin.action(description="Roll the signing secret", permissions=["change"])
    def roll_secret(self, request, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            _secret_shown_once(
                request, endpoint, services.endpoint_roll_secret(endpoint=endpoint)
            )

    @admin.action(description="Activate", permissions=["change"])
    def activate(self, request, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = queryset.update(is_active=True)
        self.message_user(request, f"{count} endpoint(s) active.", messages.SUCCESS)

    @admin.action(description="Deactivate (no new events)", permissions=["change"])
    def deactivate(self, request, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} endpoint(s) inactive.", messages.SUCCESS)


@admin.register(Delivery)
class DeliveryAdmin(ContactDataAdminMixin, admin.ModelAdmin):
    """The delivery log: every event for every endpoint, newest first."""

    # Few columns: the error must fit at 1,400 px (the event id and times are on
    # each delivery's page).
    list_display = [
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "response_status",
        "error",
        "last_attempt_at",
    ]
    list_filter = ["status", "event__type", "endpoint"]
    list_select_related = ["event", "endpoint"]
    search_fields = ["=event__uid"]
    search_help_text = "An event id (evt_…)."
    # The log grows with every event: each view counts at most 10,001 rows.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    actions = ["resend"]
    fields = [
        "event_id_display",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "created_at",
        "last_attempt_at",
        "delivered_at",
        "response_status",
        "error",
        "resend_of",
        "body",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_changelist(self, request, **kwargs) -> type:
        return CappedCountChangeList

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().removeprefix("evt_")
        if not term:
            return queryset, False
        try:
            uid = uuid.UUID(term)
        except ValueError:
            return queryset.none(), False
        return queryset.filter(event__uid=uid), False

    def has_resend_permission(self, request) -> bool:
        # Re-sending posts contact data again: for who may manage endpoints.
        return request.user.has_perm("integrations.change_webhookendpoint")

    @admin.display(description="Event type", ordering="event__type")
    def event_type(self, delivery: Delivery) -> str:
        return delivery.event.type

    @admin.display(description="Event id")
    def event_id_display(self, delivery: Delivery) -> str:
        return delivery.event.public_id

    @admin.display(description="Body sent")
    def body(self, delivery: Delivery) -> str:
        return format_html("<pre>{}</pre>", delivery.event.body)

    @admin.action(description="Re-send the selected events", permissions=["resend"])
    def resend(self, request, queryset: QuerySet[Delivery]) -> None:
        count = services.deliveries_resend(deliveries=queryset)
        self.message_user(
            request,
            f"{count} event(s) queued again; each goes out after what its endpoint "
            "is already waiting for.",
            messages.SUCCESS,
        )
