"""The segment builder in the admin: conditions added and removed in a form, all or
any of them, with a live count and a sample of the contacts they match."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import path, reverse
from django.utils.html import format_html_join

from contacts.models import ContactList
from contacts.permissions import can_view_contact_data
from smscampaigns.admin_site import ListTitleMixin

from ..models import Campaign
from ..segments import (
    DETAILS_HIDDEN,
    FIELDS,
    Segment,
    SegmentInUse,
    clean_conditions,
    conditions_q,
    describe_condition,
    reads_contact_details,
    segment_counts,
    segment_delete,
    segment_sample,
)

#: Contacts shown under the builder's count.
SAMPLE_SIZE = 10
#: Campaigns offered to "received campaign …": the newest ones.
CAMPAIGN_CHOICES = 200


class SegmentForm(forms.ModelForm):
    conditions = forms.JSONField(
        help_text="Built with the form below; as JSON for those who prefer it."
    )

    class Meta:
        model = Segment
        fields = ["name", "description", "match", "conditions"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "match": forms.RadioSelect,
        }
        labels = {"match": "Contacts matching"}

    def clean_conditions(self) -> list[dict]:
        return clean_conditions(self.cleaned_data["conditions"])


class CountForm(forms.Form):
    """What the builder asks to count: the conditions as typed."""

    match = forms.ChoiceField(choices=Segment.Match.choices, required=False)
    conditions = forms.JSONField()

    def clean_conditions(self) -> list[dict]:
        return clean_conditions(self.cleaned_data["conditions"])


def builder_options() -> dict[str, Any]:
    """The choices the builder's selects offer (the page embeds them as JSON)."""
    return {
        "lists": [
            {"id": pk, "name": name}
            for pk, name in ContactList.objects.order_by("name").values_list(
                "pk", "name"
            )
        ],
        "campaigns": [
            {"id": pk, "name": name}
            for pk, name in Campaign.objects.order_by("-created_at", "-pk").values_list(
                "pk", "name"
            )[:CAMPAIGN_CHOICES]
        ],
        "fields": list(FIELDS),
    }


def builder_answer(
    *, match: str, conditions: list[dict], with_contacts: bool
) -> dict[str, Any]:
    """The builder's live panel: counts, the conditions in words, and a sample of
    the contacts (their numbers masked unless ``with_contacts``)."""
    q = conditions_q(conditions, match=match or Segment.Match.ALL)
    answer: dict[str, Any] = {
        **segment_counts(q),
        "conditions": [describe_condition(condition) for condition in conditions],
        "sample": [],
        "contacts_hidden": not with_contacts,
    }
    if with_contacts:
        answer["sample"] = [
            {
                "id": contact.pk,
                "name": f"{contact.first_name} {contact.last_name}".strip(),
                "phone": contact.phone,
                "country": contact.country,
                "opted_out": contact.opted_out,
            }
            for contact in segment_sample(q, limit=SAMPLE_SIZE)
        ]
    return answer


@admin.register(Segment)
class SegmentAdmin(ListTitleMixin, admin.ModelAdmin):
    form = SegmentForm
    change_form_template = "admin/campaigns/segment/change_form.html"
    list_display = ["name", "match", "conditions_shown", "campaign_count"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        ("Conditions", {"fields": ["match", "conditions"]}),
    ]

    @admin.display(description="Conditions")
    def conditions_shown(self, segment: Segment) -> str:
        return format_html_join(
            "", "<div>{}</div>", ((text,) for text in segment.describe())
        )

    def get_queryset(self, request: HttpRequest):
        # One count per page of segments, not one query per row.
        return super().get_queryset(request).annotate(campaign_total=Count("campaigns"))

    @admin.display(description="Campaigns", ordering="campaign_total")
    def campaign_count(self, segment: Segment) -> int:
        return segment.campaign_total

    def get_urls(self) -> list:
        return [
            path(
                "count/",
                self.admin_site.admin_view(self.count_view),
                name="campaigns_segment_count",
            ),
            *super().get_urls(),
        ]

    def count_view(self, request: HttpRequest) -> HttpResponse:
        """The builder's count and sample for the conditions as typed (JSON)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_or_change_permission(request) and not (
            self.has_add_permission(request)
        ):
            raise PermissionDenied
        form = CountForm(request.POST)
        if not form.is_valid():
            problems = [error for errors in form.errors.values() for error in errors]
            return JsonResponse({"problems": problems}, status=400)
        with_contacts = can_view_contact_data(request.user)
        conditions = form.cleaned_data["conditions"]
        if not with_contacts and reads_contact_details(conditions):
            return JsonResponse({"problems": [DETAILS_HIDDEN]}, status=403)
        return JsonResponse(
            builder_answer(
                match=form.cleaned_data["match"],
                conditions=conditions,
                with_contacts=with_contacts,
            )
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Segment | None = None,
    ) -> HttpResponse:
        context["builder_options"] = builder_options()
        context["builder_count_url"] = reverse(
            "admin:campaigns_segment_count", current_app=self.admin_site.name
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Deleting: not while an unfinished campaign uses it ----------------------

    def delete_view(self, request, object_id, extra_context=None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except SegmentInUse as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:campaigns_segment_change", args=[object_id])
            )

    def delete_model(self, request, obj: Segment) -> None:
        segment_delete(segment=obj)

    def delete_queryset(self, request, queryset) -> None:
        refused = []
        for segment in queryset:
            try:
                segment_delete(segment=segment)
            except SegmentInUse:
                refused.append(segment.name)
        if refused:
            self.message_user(
                request,
                "Not deleted (campaigns not finished yet use them): "
                + ", ".join(refused),
                messages.ERROR,
            )
