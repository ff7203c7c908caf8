"""Text variants in the campaign's admin page: an inline of B, C and D.

The campaign's own message is variant A. Rows are saved through
campaigns.writes.campaign_update (the same rules as the API), and follow the
campaign's permissions and content lock rather than permissions of their own.
"""

from django import forms
from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from ..models import Campaign, CampaignVariant
from ..writes import MAX_OTHER_VARIANTS, campaign_update, content_locked


class VariantFormSet(BaseInlineFormSet):
    def __init__(self, data=None, *args, prefix=None, **kwargs) -> None:
        name = f"{prefix or self.get_default_prefix()}-TOTAL_FORMS"
        if data is not None and name not in data:
            # Posted without the inline (a page or a script from before variants):
            # no rows, so the campaign's variants stay as they are.
            data = data.copy()
            data[name] = "0"
            data[name.replace("TOTAL", "INITIAL")] = "0"
        super().__init__(data, *args, prefix=prefix, **kwargs)

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        shares = [row["share"] for row in variant_rows(self)]
        if sum(shares) > 99:
            raise forms.ValidationError(
                f"The variants' shares add up to {sum(shares)} %: the main message "
                "(variant A) needs at least 1 % of the recipients."
            )


def variant_rows(formset) -> list[dict]:
    """The formset's rows kept (not deleted, not left empty), in page order."""
    rows = []
    for form in formset.forms:
        data = getattr(form, "cleaned_data", None) or {}
        if not data or data.get("DELETE") or not data.get("body"):
            continue
        rows.append({"body": data["body"], "share": data["share"]})
    return rows


class CampaignVariantInline(admin.TabularInline):
    model = CampaignVariant
    formset = VariantFormSet
    fields = ["body", "share"]
    extra = 0
    max_num = MAX_OTHER_VARIANTS
    verbose_name = "text variant"
    verbose_name_plural = (
        "Text variants (A/B test): the message above is variant A and goes to the "
        "share of recipients the variants leave; each recipient gets one text, "
        "picked at random"
    )
    formfield_overrides = {
        CampaignVariant._meta.get_field("body"): {
            "widget": forms.Textarea(
                attrs={"rows": 3, "class": "vLargeTextField composer-variant-body"}
            )
        },
    }

    # The campaign's permissions and content lock decide, as for its text.
    def _may_change(self, request: HttpRequest, obj: Campaign | None) -> bool:
        if obj is not None and content_locked(obj):
            return False
        perm = "change" if obj is not None else "add"
        return request.user.has_perm(f"campaigns.{perm}_campaign")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._may_change(request, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._may_change(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._may_change(request, obj)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("campaigns.view_campaign") or self._may_change(
            request, obj
        )


def variants_save(formset, campaign: Campaign) -> None:
    """Store the inline's rows through the campaign service (raises its errors)."""
    campaign_update(campaign=campaign, variants=variant_rows(formset))
