"""What the campaigns API reads and writes. Validation only: the views call services."""

from datetime import datetime, timedelta
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone

from contacts.models import ContactList
from contacts.phones import InvalidPhoneNumber, normalize_phone

from .. import lifecycle
from ..frequency import validate_frequency_cap
from ..models import Campaign, Message, variant_label
from ..segments import Segment, clean_conditions
from ..sending.windows import SendWindow, WindowError
from ..writes import MAX_BULK_RECIPIENTS

#: Longest body the API accepts: ten concatenated GSM-7 segments and some more.
MAX_BODY_LENGTH = 1600
MAX_LISTS = 100
MAX_SEGMENTS = 20
MAX_TEST_NUMBERS = 10
# A schedule a little in the past is "now" sent from a slow clock, not a mistake.
SCHEDULE_PAST_LEEWAY = timedelta(minutes=1)
# A wall-clock time; the windows module has the last word.
CLOCK = r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$"
CLOCK_ERRORS = {"invalid": "Give a time of day as HH:MM, from 00:00 to 23:59."}


class ProviderField(serializers.ChoiceField):
    """A provider alias from ``settings.SMS_PROVIDERS``, read when the serializer is
    built (so the schema lists the configured ones and settings overrides apply)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=list(settings.SMS_PROVIDERS), **kwargs)
        self.error_messages["invalid_choice"] = (
            "{input!r} is not a configured provider (choose one of: "
            + ", ".join(settings.SMS_PROVIDERS)
            + ")."
        )

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 instant that must carry its UTC offset: a bare local time is
    ambiguous when the client and server are in different zones."""

    default_error_messages = {
        "naive": "Give the time with its UTC offset, e.g. 2026-11-25T10:15:00+00:00.",
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class SendWindowSerializer(serializers.Serializer):
    """Sending hours: when messages may go out, on each recipient's wall clock."""

    start = serializers.RegexField(
        CLOCK, help_text="HH:MM, e.g. 09:00.", error_messages=CLOCK_ERRORS
    )
    end = serializers.RegexField(
        CLOCK,
        help_text="HH:MM, exclusive; at or before start means the next day.",
        error_messages=CLOCK_ERRORS,
    )
    weekdays = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6),
        min_length=1,
        max_length=7,
        help_text="Days a window starts on: 0 = Monday … 6 = Sunday.",
    )
    time_zone = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="For recipients whose zone is unknown; default: the server's.",
    )

    def to_internal_value(self, data: Any) -> dict:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    f"Unknown send window field(s): {', '.join(map(str, unknown))}."
                )
        attrs = super().to_internal_value(data)
        try:
            # The windows module is the one judge of a window; store its normal form.
            return SendWindow.from_dict(attrs).to_dict()
        except WindowError as error:
            raise serializers.ValidationError(str(error)) from error

    def to_representation(self, instance: Any) -> dict:
        return instance


class ListIdsField(serializers.ListField):
    """Contact list ids, checked in one query; read back as ids."""

    child = serializers.IntegerField(min_value=1, max_value=2**31 - 1)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_LISTS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[ContactList]:
        ids = list(dict.fromkeys(super().to_internal_value(data)))
        found = ContactList.objects.in_bulk(ids)
        missing = [pk for pk in ids if pk not in found]
        if missing:
            raise serializers.ValidationError(
                f"No contact list with id {', '.join(map(str, missing))}."
            )
        return [found[pk] for pk in ids]

    def to_representation(self, data: Any) -> list[int]:
        return [item.pk for item in data.all()]


class SegmentIdsField(ListIdsField):
    """Segment ids, checked in one query; read back as ids."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_SEGMENTS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[Segment]:
        ids = list(dict.fromkeys(serializers.ListField.to_internal_value(self, data)))
        found = Segment.objects.in_bulk(ids)
        missing = [pk for pk in ids if pk not in found]
        if missing:
            raise serializers.ValidationError(
                f"No segment with id {', '.join(map(str, missing))}."
            )
        return [found[pk] for pk in ids]


class CampaignVariantSerializer(serializers.Serializer):
    label = serializers.CharField(
        read_only=True, help_text='"B", "C" or "D", in the order given.'
    )
    body = serializers.CharField(
        max_length=MAX_BODY_LENGTH,
        trim_whitespace=False,
        help_text="This variant's text; placeholders as in body.",
    )
    share = serializers.IntegerField(
        min_value=1,
        max_value=98,
        help_text="Percent of the recipients who get this text.",
    )


class CampaignSerializer(serializers.ModelSerializer):
    lists = ListIdsField(required=False, help_text="Ids of the contact lists to text.")
    segments = SegmentIdsField(
        required=False,
        help_text="Ids of segments to text too; a contact in several lists or "
        "segments gets one message.",
    )
    frequency_cap = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=32,
        validators=[validate_frequency_cap],
        help_text='At most so many marketing messages per person, e.g. "2 per 7 '
        'days"; "off": no cap for this campaign; empty: the server\'s '
        "SMS_FREQUENCY_CAP.",
    )
    body = serializers.CharField(
        max_length=MAX_BODY_LENGTH,
        trim_whitespace=False,
        help_text="The message; {first_name}, {first_name|there} and attribute "
        "names are filled in per contact.",
    )
    provider = ProviderField(
        required=False,
        help_text="A configured provider alias; default: the server's default.",
    )
    fallback_provider = ProviderField(
        required=False,
        allow_blank=True,
        help_text="Provider that takes over while the main one fails; empty: none.",
    )
    send_window = SendWindowSerializer(required=False, allow_null=True)
    variants = CampaignVariantSerializer(
        many=True,
        required=False,
        max_length=3,
        help_text="Other texts (B, C, D) sent to shares of the recipients picked at "
        "random, to compare them (an A/B test). body is variant A and gets the "
        "share the variants leave (at least 1 %). Replaced as a whole; [] for one "
        "text.",
    )
    status_display = serializers.SerializerMethodField(
        help_text='The status in words. "Starting" for a campaign sent now (or whose '
        "schedule has come) that a worker has not launched yet; its status is still "
        '"scheduled".'
    )
    allowed_actions = serializers.SerializerMethodField(
        help_text="What the campaign's status allows now: each is a POST to "
        "/campaigns/{id}/<action>/ (retry_failed: retry-failed/); any other is "
        "answered 409."
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "body",
            "opt_out_footer",
            "lists",
            "segments",
            "frequency_cap",
            "provider",
            "sender",
            "status",
            "status_display",
            "allowed_actions",
            "scheduled_at",
            "schedule_time_zone",
            "send_window",
            "send_by",
            "created_at",
            "waiting_reason",
            "fallback_provider",
            "track_links",
            "variants",
        ]
        read_only_fields = [
            "status",
            "scheduled_at",
            "schedule_time_zone",
            "created_at",
            "waiting_reason",
        ]

    def get_status_display(self, campaign: Campaign) -> str:
        return lifecycle.status_display(campaign)

    @extend_schema_field(
        serializers.ListField(
            child=serializers.ChoiceField(choices=lifecycle.USER_ACTIONS)
        )
    )
    def get_allowed_actions(self, campaign: Campaign) -> list[str]:
        return lifecycle.allowed_actions(campaign)

    def validate_variants(self, value: list) -> list[dict]:
        return [{"body": item["body"], "share": item["share"]} for item in value]

    def validate(self, attrs: dict) -> dict:
        instance = self.instance
        provider = attrs.get(
            "provider", instance.provider if instance else settings.SMS_DEFAULT_PROVIDER
        )
        fallback = attrs.get(
            "fallback_provider", instance.fallback_provider if instance else ""
        )
        if fallback and fallback == provider:
            raise serializers.ValidationError(
                {"fallback_provider": ["The fallback must differ from the provider."]}
            )
        return attrs


class MessageSerializer(serializers.ModelSerializer):
    encoding = serializers.ChoiceField(
        choices=Message.Encoding.choices,
        allow_blank=True,
        read_only=True,
        help_text="Empty until the message is sent.",
    )
    updated_at = serializers.DateTimeField(
        source="status_changed_at", read_only=True, help_text="Last status change."
    )
    variant = serializers.SerializerMethodField(
        help_text='The text variant it got: "A" (the campaign\'s body), "B"…; null '
        "for a campaign with one text."
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "campaign",
            "contact",
            "to",
            "provider",
            "provider_message_id",
            "client_reference",
            "status",
            "error_code",
            "error_reason",
            "segments",
            "encoding",
            "price",
            "currency",
            "submitted_at",
            "updated_at",
            "clicks",
            "first_clicked_at",
            "variant",
        ]
        read_only_fields = fields

    def get_variant(self, message: Message) -> str | None:
        return variant_label(message.variant) or None


class PhoneListField(serializers.ListField):
    """Phone numbers in any common format, normalized to E.164; a bad one is a 400
    that names it."""

    child = serializers.CharField(max_length=40)

    def to_internal_value(self, data: Any) -> list[str]:
        numbers, errors = [], []
        for raw in super().to_internal_value(data):
            try:
                numbers.append(normalize_phone(raw))
            except InvalidPhoneNumber as error:
                errors.append(f"{raw!r} is not a valid phone number ({error.reason}).")
        if errors:
            raise serializers.ValidationError(errors)
        return list(dict.fromkeys(numbers))


# --- Action bodies -----------------------------------------------------------------


class PreviewSampleSerializer(serializers.Serializer):
    to = serializers.CharField()
    text = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    recipients = serializers.IntegerField(help_text="Contacts it would text now.")
    excluded = serializers.IntegerField(
        help_text="Contacts in the lists left out: opted out or suppressed."
    )
    encodings = serializers.DictField(
        child=serializers.IntegerField(), help_text="Messages per encoding."
    )
    segments = serializers.IntegerField(help_text="Segments in all.")
    max_segments = serializers.IntegerField(help_text="Segments of the longest text.")
    estimated_cost = serializers.DecimalField(
        source="cost", max_digits=14, decimal_places=5
    )
    currency = serializers.CharField()
    samples = PreviewSampleSerializer(many=True)
    problems = serializers.ListField(child=serializers.CharField())


class TestSendInputSerializer(serializers.Serializer):
    to = PhoneListField(min_length=1, max_length=MAX_TEST_NUMBERS)


class TestSendOutputSerializer(serializers.Serializer):
    messages = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of the queued test messages."
    )


class ScheduleInputSerializer(serializers.Serializer):
    scheduled_at = AwareDateTimeField(help_text="ISO 8601 with a UTC offset.")
    send_window = SendWindowSerializer(required=False)

    def validate_scheduled_at(self, value):
        if value < timezone.now() - SCHEDULE_PAST_LEEWAY:
            raise serializers.ValidationError(
                f"{value.isoformat()} is in the past; give a future time or use send."
            )
        return value


class RetryInputSerializer(serializers.Serializer):
    include_unknown = serializers.BooleanField(
        default=False,
        help_text="Also queue messages whose fate a crash left unknown; they may "
        "reach the recipient twice.",
    )


class RetryOutputSerializer(serializers.Serializer):
    queued = serializers.IntegerField()


class ClicksPerHourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField(help_text="Start of the hour.")
    clicks = serializers.IntegerField()
    recipients = serializers.IntegerField(help_text="Recipients who clicked in it.")


class VariantStatsSerializer(serializers.Serializer):
    variant = serializers.CharField(help_text='"A" (the campaign\'s body), "B"…')
    share = serializers.IntegerField(
        allow_null=True, help_text="Percent of recipients set for it."
    )
    messages = serializers.IntegerField()
    delivered = serializers.IntegerField()
    unique_clicks = serializers.IntegerField()
    clicks = serializers.IntegerField()
    click_rate = serializers.FloatField(
        allow_null=True, help_text="unique_clicks / delivered."
    )
    opt_outs = serializers.IntegerField(
        help_text="Its recipients who opted out within 7 days of their message."
    )


class StatsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Campaign.Status.choices,
        help_text="The campaign's status, so polling needs one call.",
    )
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="Messages per status, all present."
    )
    delivery_rate = serializers.FloatField(
        allow_null=True,
        help_text="delivered / (delivered + undelivered + failed + rejected + "
        "expired + unconfirmed), leaving out messages skipped for an opt-out or a cancel; null "
        "before any outcome.",
    )
    opt_outs = serializers.IntegerField(
        help_text="Recipients who opted out within 7 days of their message."
    )
    replied_stop = serializers.IntegerField(
        help_text="Those of opt_outs who replied STOP (the others opted out through "
        "a provider's signal, the admin or the API)."
    )
    cost = serializers.DecimalField(max_digits=14, decimal_places=5)
    currency = serializers.CharField()
    cost_by_currency = serializers.DictField(
        child=serializers.DecimalField(max_digits=14, decimal_places=5)
    )
    skipped_opted_out = serializers.IntegerField(
        help_text='Messages not sent because the recipient had opted out (error_code "opted_out").'
    )
    skipped_frequency_cap = serializers.IntegerField(
        help_text="Messages not sent because the recipient had reached the frequency "
        'cap (error_code "frequency_cap").'
    )
    unique_clicks = serializers.IntegerField(
        help_text="Recipients who clicked a tracked link (link previews and HEAD "
        "requests are not clicks)."
    )
    clicks = serializers.IntegerField(
        help_text="Clicks on tracked links, a recipient's repeated clicks included."
    )
    click_rate = serializers.FloatField(
        allow_null=True,
        help_text="Click-through rate: unique_clicks / delivered; null before any "
        "delivery.",
    )
    variants = VariantStatsSerializer(
        many=True,
        help_text="Figures per text variant, A first; [] for a campaign with one text.",
    )
    clicks_over_time = ClicksPerHourSerializer(
        many=True,
        help_text="Clicks per hour (UTC), oldest first; hours without "
        "clicks are left out.",
    )


class BulkInputSerializer(serializers.Serializer):
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=40),
        min_length=1,
        max_length=MAX_BULK_RECIPIENTS,
        help_text="Phone numbers; invalid ones are reported, not fatal.",
    )
    message = serializers.CharField(max_length=MAX_BODY_LENGTH, trim_whitespace=False)
    provider = ProviderField(
        required=False,
        help_text="A configured provider alias; default: the server's default.",
    )


class BulkOutputSerializer(serializers.Serializer):
    campaign = serializers.IntegerField(source="campaign.pk")
    accepted = serializers.IntegerField(help_text="Messages queued.")
    invalid = serializers.ListField(
        child=serializers.CharField(), help_text="Numbers as given that are not valid."
    )
    skipped = serializers.ListField(
        child=serializers.CharField(),
        help_text="Valid numbers left out: opted out or suppressed.",
    )


# --- Segments ------------------------------------------------------------------------


class SegmentSerializer(serializers.ModelSerializer):
    conditions = serializers.JSONField(
        help_text="A list of conditions, each an object with a type: list, country, "
        "field, attribute, opted_in, received, clicked or quiet (see the README's marketer's "
        'guide); "negate": true turns one around.'
    )

    class Meta:
        model = Segment
        fields = [
            "id",
            "name",
            "description",
            "match",
            "conditions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_conditions(self, value: Any) -> list[dict]:
        try:
            return clean_conditions(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error

    def validate_name(self, value: str) -> str:
        others = Segment.objects.filter(name=value)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError(f"A segment named {value!r} exists.")
        return value


class SegmentCountSerializer(serializers.Serializer):
    contacts = serializers.IntegerField(help_text="Contacts matching now.")
    reachable = serializers.IntegerField(
        help_text="Of those, who may get marketing: not opted out, not suppressed."
    )


class SegmentContactSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    country = serializers.CharField()
    opted_out = serializers.BooleanField()


class SegmentPreviewSerializer(SegmentCountSerializer):
    sample = SegmentContactSerializer(
        many=True, help_text="The first matching contacts, by id."
    )
