"""Forms of the campaign composer in the admin: the campaign itself, and what the
live preview is asked about while the marketer types."""

import json
from collections.abc import Sequence

from django import forms
from django.conf import settings
from django.core.validators import MaxLengthValidator

from contacts.models import Contact, ContactList
from contacts.querysets import member_count
from providers import provider_problem, usable_providers

from ..api.serializers import MAX_BODY_LENGTH, MAX_LISTS, MAX_SEGMENTS
from ..frequency import validate_frequency_cap
from ..models import Campaign, default_provider
from ..provider_checks import text_length_problems
from ..segments import Segment, audience_q
from ..writes import MAX_OTHER_VARIANTS, body_problems


def provider_choices() -> list[tuple[str, str]]:
    # A callable, so the choices follow settings.SMS_PROVIDERS when it changes.
    return [(alias, alias) for alias in settings.SMS_PROVIDERS]


def usable_provider_choices() -> list[tuple[str, str]]:
    return [(alias, alias) for alias in usable_providers()]


def usable_fallback_choices() -> list[tuple[str, str]]:
    return [("", "None"), *usable_provider_choices()]


class ProviderChoiceField(forms.ChoiceField):
    """Offers the providers that can send now; any configured alias passes this
    field, so the service refuses an unusable one with its reason (see
    ``campaigns.provider_checks``) instead of "Select a valid choice"."""

    def valid_value(self, value: str) -> bool:
        return value in settings.SMS_PROVIDERS or super().valid_value(value)


def list_label(contact_list: ContactList) -> str:
    count = getattr(contact_list, "member_count", None)
    if count is None:
        return contact_list.name
    return f"{contact_list.name} ({count:,} contact{'' if count == 1 else 's'})"


class CampaignComposerForm(forms.ModelForm):
    """The campaign as the composer edits it; the admin saves it through the services.

    Fields the content lock has made read-only are not in the form at all, so a POST
    naming them changes nothing.
    """

    provider = ProviderChoiceField(
        choices=usable_provider_choices,
        initial=default_provider,
        help_text="Who sends the messages; the price per segment depends on it.",
    )
    fallback_provider = ProviderChoiceField(
        choices=usable_fallback_choices,
        required=False,
        help_text="Takes over while the main provider is failing.",
    )

    #: (field or None, message) pairs the services refused after the form was valid;
    #: set by the admin when it shows the form again.
    refusals: Sequence[tuple[str | None, str]] = ()

    class Meta:
        model = Campaign
        fields = [
            "name",
            "lists",
            "segments",
            "body",
            "opt_out_footer",
            "track_links",
            "provider",
            "sender",
            "fallback_provider",
            "send_by",
            "frequency_cap",
        ]
        labels = {
            "opt_out_footer": "Opt-out footer",
            "lists": "Contact lists",
            "track_links": "Track link clicks",
        }
        help_texts = {
            "body": "Placeholders such as {first_name} or {first_name|there} are "
            "filled in for each contact; the preview below shows the result.",
            "opt_out_footer": "Added on a new line at the end of every message and "
            "counted in its length. Marketing messages must tell people how to opt "
            "out; clear it only for messages people asked for, such as reminders.",
            "lists": "Everyone in these lists gets the message once, except people "
            "who opted out or are suppressed.",
            "segments": "Saved audiences (Campaigns, then Segments): everyone they match "
            "gets the message too, once, with the same exclusions.",
        }
        widgets = {
            "body": forms.Textarea(
                attrs={"rows": 5, "class": "vLargeTextField composer-body"}
            ),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        lists = self.fields.get("lists")
        if lists is not None:
            # One index count per list, for the lists shown (see member_count).
            lists.queryset = ContactList.objects.annotate(member_count=member_count())
            lists.label_from_instance = list_label
        for name in ("provider", "fallback_provider"):
            self._offer_current_provider(name)
        body = self.fields.get("body")
        if body is not None:
            # The API's bound, so every campaign saved here can be read back there.
            body.validators.append(MaxLengthValidator(MAX_BODY_LENGTH))

    def _offer_current_provider(self, name: str) -> None:
        """Keep the campaign's own provider selectable when it cannot be used now,
        marked so, rather than silently showing another one."""
        field = self.fields.get(name)
        current = getattr(self.instance, name, "") if self.instance.pk else ""
        if field is None or not current:
            return
        problem = provider_problem(current)
        if problem is None:
            return
        field.choices = [*field.choices, (current, f"{current} (cannot send now)")]
        field.help_text = f"{field.help_text} {problem}."

    def clean(self) -> dict:
        cleaned = super().clean()
        provider = cleaned.get("provider", self.instance.provider)
        fallback = cleaned.get("fallback_provider")
        if fallback and fallback == provider:
            self.add_error(
                "fallback_provider",
                "The fallback must be another provider than the main one (or none).",
            )
        # Unknown placeholders are judged against the chosen lists' contacts, so
        # not when the lists themselves were invalid.
        lists_invalid = any(
            name in self.fields and name not in cleaned
            for name in ("lists", "segments")
        )
        if "body" in cleaned and not lists_invalid:
            audience = audience_q(
                list_ids=[item.pk for item in self._chosen(cleaned, "lists")],
                segments=self._chosen(cleaned, "segments"),
            )
            for problem in body_problems(
                cleaned["body"], Contact.objects.filter(audience)
            ):
                self.add_error("body", problem)
        if "body" in cleaned and provider:
            for problem in text_length_problems(
                body=cleaned["body"],
                footer=cleaned.get("opt_out_footer", self.instance.opt_out_footer),
                provider=provider,
                track_links=cleaned.get("track_links", self.instance.track_links),
            ):
                self.add_error("body", problem)
        for field, message in self.refusals:
            self.add_error(field if field in self.fields else None, message)
        return cleaned

    def _chosen(self, cleaned: dict, name: str) -> list:
        if name in self.fields:
            return list(cleaned[name])
        if self.instance.pk is None:
            return []
        return list(getattr(self.instance, name).all())


class ListIdsField(forms.ModelMultipleChoiceField):
    """Contact lists by id; ids no database column could hold are refused here
    (SQLite raises on them instead of finding nothing)."""

    def _check_values(self, value):
        for pk in value:
            try:
                number = int(str(pk))
            except ValueError:
                raise forms.ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": pk},
                ) from None
            if not 1 <= number < 2**63:
                raise forms.ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": pk},
                )
        return super()._check_values(value)


class ComposeForm(forms.Form):
    """What the live preview is computed for: the composer's fields as typed."""

    body = forms.CharField(required=False, max_length=MAX_BODY_LENGTH)
    opt_out_footer = forms.CharField(
        label="Opt-out footer", required=False, max_length=160
    )
    lists = ListIdsField(
        label="Contact lists", queryset=ContactList.objects.all(), required=False
    )
    segments = ListIdsField(
        label="Segments", queryset=Segment.objects.all(), required=False
    )
    frequency_cap = forms.CharField(
        required=False, max_length=32, validators=[validate_frequency_cap]
    )
    provider = forms.ChoiceField(choices=provider_choices, required=False)
    # Absent (an older page's script): tracked, the campaign's default.
    track_links = forms.NullBooleanField(required=False)
    # The variants inline's rows as typed: [{"body": …, "share": …}] in JSON.
    variants = forms.CharField(required=False, max_length=4 * (MAX_BODY_LENGTH + 50))
    sample = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

    def clean_segments(self) -> list[Segment]:
        segments = list(self.cleaned_data["segments"])
        if len(segments) > MAX_SEGMENTS:
            raise forms.ValidationError(f"Choose at most {MAX_SEGMENTS} segments.")
        return segments

    def clean_lists(self) -> list[ContactList]:
        lists = list(self.cleaned_data["lists"])
        if len(lists) > MAX_LISTS:
            raise forms.ValidationError(f"Choose at most {MAX_LISTS} lists.")
        return lists

    def clean_provider(self) -> str:
        return self.cleaned_data["provider"] or settings.SMS_DEFAULT_PROVIDER

    def clean_variants(self) -> list[dict]:
        raw = self.cleaned_data["variants"]
        if not raw:
            return []
        try:
            rows = json.loads(raw)
        except ValueError:
            raise forms.ValidationError("Not JSON.") from None
        if not isinstance(rows, list) or len(rows) > MAX_OTHER_VARIANTS:
            raise forms.ValidationError(
                f"A list of at most {MAX_OTHER_VARIANTS} variants."
            )
        variants = []
        for row in rows:
            body = row.get("body") if isinstance(row, dict) else None
            share = row.get("share") if isinstance(row, dict) else None
            if not isinstance(body, str) or len(body) > MAX_BODY_LENGTH:
                raise forms.ValidationError("Each variant has a text.")
            try:
                share = int(share)
            except (TypeError, ValueError):
                share = 0
            # A share being typed (empty, 0) still previews the text.
            variants.append({"body": body, "share": min(max(share, 0), 98)})
        while sum(v["share"] for v in variants) > 99:
            largest = max(variants, key=lambda v: v["share"])
            largest["share"] -= 1
        return variants

    def clean_track_links(self) -> bool:
        return self.cleaned_data["track_links"] is not False

    def error_text(self) -> str:
        """The errors in one sentence each, naming the field."""
        lines = []
        for name, errors in self.errors.items():
            label = self.fields[name].label or name.replace("_", " ").capitalize()
            lines += [f"{label}: {error}" for error in errors]
        return " ".join(lines)
