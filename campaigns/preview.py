"""What a campaign would send: audience after exclusions, encodings, segments, cost."""

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from contacts.models import Contact

from .models import Campaign
from .templating import TemplateError, audience_attribute_keys, parse, validate


@dataclass(frozen=True)
class Sample:
    to: str
    text: str


@dataclass
class Preview:
    recipients: int = 0
    excluded: int = 0
    segments: int = 0
    max_segments: int = 0
    encodings: Counter = field(default_factory=Counter)
    price_per_segment: Decimal = Decimal(0)
    currency: str = ""
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def cost(self) -> Decimal:
        return self.price_per_segment * self.segments


def campaign_audience(campaign: Campaign):
    """Contacts the campaign would text now: in its lists, reachable, each once."""
    return Contact.objects.in_lists(campaign.lists.all()).reachable()


def campaign_preview(*, campaign: Campaign, samples: int = 3) -> Preview:
    """Render every message the campaign would send, streaming the audience."""
    from providers.encoding import analyze

    price, currency = price_for(campaign.provider)
    preview = Preview(price_per_segment=price, currency=currency)
    everyone = Contact.objects.in_lists(campaign.lists.all())
    audience = campaign_audience(campaign)
    preview.problems = validate(
        campaign.body, known_attributes=audience_attribute_keys(audience)
    )
    try:
        template = parse(campaign.template_source)
    except TemplateError:
        return preview
    seen: dict[str, tuple[str, int]] = {}
    rows = audience.order_by("pk").values_list(
        "phone", "first_name", "last_name", "attributes"
    )
    for phone, first_name, last_name, attributes in rows.iterator(chunk_size=2000):
        text = template.render(
            first_name=first_name,
            last_name=last_name,
            phone=phone,
            attributes=attributes or {},
        )
        if text not in seen:
            info = analyze(text)
            if len(seen) < 10_000:
                seen[text] = (info.encoding, info.segments)
            encoding, segments = info.encoding, info.segments
        else:
            encoding, segments = seen[text]
        preview.recipients += 1
        preview.segments += segments
        preview.max_segments = max(preview.max_segments, segments)
        preview.encodings[encoding] += 1
        if len(preview.samples) < samples:
            preview.samples.append(Sample(to=phone, text=text))
    preview.excluded = everyone.count() - preview.recipients
    return preview


def price_for(alias: str) -> tuple[Decimal, str]:
    """The configured price per segment for a provider, and its currency."""
    price = settings.SMS_PRICE_PER_SEGMENT.get(alias, Decimal(0))
    return Decimal(str(price)), settings.SMS_PRICE_CURRENCY
