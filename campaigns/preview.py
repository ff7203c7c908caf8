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


#: Contacts rendered to estimate segments when the body has placeholders. Rendering
#: a whole million-contact audience is what launch and dispatch do, not a page view.
ESTIMATE_SAMPLE = 500


@dataclass
class Estimate:
    """Audience and cost of a campaign as a person deciding to send it needs them."""

    in_lists: int = 0
    """List memberships, counting a contact once per list."""
    contacts: int = 0
    """Distinct contacts across the lists."""
    opted_out: int = 0
    suppressed: int = 0
    """Not opted out, but on the suppression list."""
    recipients: int = 0
    """Who would get the message: distinct, not opted out, not suppressed."""
    segments_per_message: float = 0.0
    """Average over the rendered sample (exact when the body has no placeholders)."""
    exact: bool = True
    """False when segments were averaged over a sample of the audience."""
    encoding: str = ""
    price_per_segment: Decimal = Decimal(0)
    currency: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.in_lists - self.contacts

    @property
    def excluded(self) -> int:
        return self.contacts - self.recipients

    @property
    def segments(self) -> int:
        return round(self.segments_per_message * self.recipients)

    @property
    def cost(self) -> Decimal:
        return (self.price_per_segment * self.segments).quantize(Decimal("0.01"))


def campaign_estimate(
    *,
    body: str,
    lists,
    provider: str,
    opt_out_footer: str = "",
) -> Estimate:
    """Audience after exclusions and the cost of sending ``body`` to ``lists`` now.

    A handful of COUNT queries and at most :data:`ESTIMATE_SAMPLE` rendered
    messages, whatever the audience's size, so the composer can ask on every change.
    Works for unsaved campaigns (the admin's form): pass the fields, not a campaign.
    """
    from contacts.models import ListMembership, Suppression
    from providers.encoding import analyze

    price, currency = price_for(provider)
    estimate = Estimate(price_per_segment=price, currency=currency)
    source = Campaign(body=body, opt_out_footer=opt_out_footer).template_source
    list_ids = [item.pk if hasattr(item, "pk") else int(item) for item in lists]
    everyone = Contact.objects.filter(memberships__contact_list__in=list_ids)
    audience = everyone.distinct().reachable()
    estimate.problems = validate(
        body, known_attributes=audience_attribute_keys(audience) if list_ids else ()
    )
    if list_ids:
        estimate.in_lists = ListMembership.objects.filter(
            contact_list__in=list_ids
        ).count()
        distinct = everyone.distinct()
        estimate.contacts = distinct.count()
        estimate.opted_out = distinct.filter(opted_out_at__isnull=False).count()
        estimate.suppressed = (
            distinct.filter(opted_out_at__isnull=True)
            .filter(phone__in=Suppression.objects.values("phone"))
            .count()
        )
        estimate.recipients = (
            estimate.contacts - estimate.opted_out - estimate.suppressed
        )
    try:
        template = parse(source)
    except TemplateError:
        return estimate
    if not template.placeholders:
        info = analyze(template.literals[0])
        estimate.segments_per_message = float(info.segments)
        estimate.encoding = info.encoding
        return estimate
    rows = audience.order_by("pk").values_list(
        "phone", "first_name", "last_name", "attributes"
    )[:ESTIMATE_SAMPLE]
    encodings: Counter = Counter()
    total = rendered = 0
    for phone, first_name, last_name, attributes in rows:
        info = analyze(
            template.render(
                first_name=first_name,
                last_name=last_name,
                phone=phone,
                attributes=attributes if isinstance(attributes, dict) else {},
            )
        )
        total += info.segments
        rendered += 1
        encodings[info.encoding] += 1
    if not rendered:
        # Nobody to render for: the text with every placeholder at its default.
        info = analyze(
            template.render(first_name="", last_name="", phone="", attributes={})
        )
        estimate.segments_per_message = float(info.segments)
        estimate.encoding = info.encoding
        return estimate
    estimate.segments_per_message = total / rendered
    estimate.encoding = encodings.most_common(1)[0][0]
    estimate.exact = rendered >= estimate.recipients
    return estimate


#: Currencies written with their symbol; others by code, e.g. "12.50 CHF".
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def format_money(amount: Decimal | float | int, currency: str) -> str:
    """How every admin page writes an amount: "$1,234.50", "$0.0075", "12.50 CHF".

    Two decimals, more (up to four) only for what costs fractions of a cent, as a
    price per segment or a small test send does.
    """
    value = Decimal(str(amount)).quantize(Decimal("0.0001"))
    whole, _, fraction = f"{value:,f}".partition(".")
    text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    if currency in CURRENCY_SYMBOLS:
        sign = "-" if text.startswith("-") else ""
        return f"{sign}{CURRENCY_SYMBOLS[currency]}{text.lstrip('-')}"
    return f"{text} {currency}".strip()
