"""What a campaign would send: audience after exclusions, encodings, segments, cost."""

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Subquery

from contacts.models import (
    ConsentEvent,
    Contact,
    ContactList,
    ListMembership,
    Suppression,
)

from .links import counted_template
from .models import Campaign
from .templating import TemplateError, audience_attribute_keys, validate


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
        template = counted_template(
            campaign.template_source, track_links=campaign.track_links
        )
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
    """The most common encoding among the rendered messages."""
    encodings: dict[str, int] = field(default_factory=dict)
    """How many rendered messages use each encoding, most common first: a
    personalized text may need UCS-2 for some contacts only (a name with "Ł")."""
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
        return round_cost(self.price_per_segment * self.segments)


def campaign_estimate(
    *,
    body: str,
    lists,
    provider: str,
    opt_out_footer: str = "",
    track_links: bool = True,
) -> Estimate:
    """Audience after exclusions and the cost of sending ``body`` to ``lists`` now.

    The audience's counts and attribute keys come from :func:`audience_facts`
    (cached: the composer and the confirmation pages share them), then at most
    :data:`ESTIMATE_SAMPLE` messages are rendered, whatever the audience's size, so
    the composer can ask on every change. Works for unsaved campaigns (the admin's
    form): pass the fields, not a campaign. Tracked links are counted as the
    short links recipients get.
    """
    source = Campaign(body=body, opt_out_footer=opt_out_footer).template_source
    list_ids = _list_ids(lists)
    facts = audience_facts(list_ids) if list_ids else None
    try:
        template = counted_template(source, track_links=track_links)
    except TemplateError:
        template = None
    # Only a personalized text differs per contact: otherwise one rendering will do.
    contacts = (
        audience_sample(list_ids).values_list(
            "first_name", "last_name", "phone", "attributes"
        )
        if template is not None and template.placeholders and list_ids
        else []
    )
    estimate = estimate_from_sample(
        template=template, contacts=list(contacts), facts=facts, provider=provider
    )
    estimate.problems = validate(
        body, known_attributes=facts.keys if facts is not None else ()
    )
    return estimate


def audience_sample(list_ids: list[int]) -> QuerySet:
    """The first :data:`ESTIMATE_SAMPLE` contacts (by id) the lists would text."""
    return (
        Contact.objects.in_lists(list_ids).reachable().order_by("pk")[:ESTIMATE_SAMPLE]
    )


def render_for(template, contact: tuple | None) -> str:
    """``template`` rendered for ``contact`` as (first_name, last_name, phone,
    attributes); None renders every placeholder's default."""
    first_name, last_name, phone, attributes = contact or ("", "", "", {})
    return template.render(
        first_name=first_name,
        last_name=last_name,
        phone=phone,
        attributes=attributes if isinstance(attributes, dict) else {},
    )


def estimate_from_sample(
    *,
    template,
    contacts: list[tuple],
    facts: "AudienceFacts | None",
    provider: str,
) -> Estimate:
    """The estimate for counted ``facts``, with segments per message averaged over
    ``contacts`` (:func:`audience_sample`'s rows, as :func:`render_for` takes them).

    Without a template (a syntax error) there is nothing to measure; without
    placeholders or contacts, one rendering with the defaults is the answer.
    """
    from providers.encoding import analyze

    price, currency = price_for(provider)
    estimate = Estimate(price_per_segment=price, currency=currency)
    if facts is not None:
        estimate.in_lists = facts.in_lists
        estimate.contacts = facts.contacts
        estimate.opted_out = facts.opted_out
        estimate.suppressed = facts.suppressed
        estimate.recipients = facts.recipients
    if template is None:
        return estimate
    if not template.placeholders or not contacts:
        info = analyze(render_for(template, None))
        estimate.segments_per_message = float(info.segments)
        estimate.encoding = info.encoding
        estimate.encodings = {info.encoding: 1}
        return estimate
    infos = [analyze(render_for(template, contact)) for contact in contacts]
    estimate.segments_per_message = sum(info.segments for info in infos) / len(infos)
    estimate.encodings = dict(Counter(info.encoding for info in infos).most_common())
    estimate.encoding = next(iter(estimate.encodings))
    estimate.exact = len(infos) >= estimate.recipients
    return estimate


#: How long an audience's counts and attribute keys are reused (see audience_facts).
AUDIENCE_CACHE_SECONDS = 120


@dataclass(frozen=True)
class AudienceFacts:
    """What the composer and the confirmation pages need to know about the audience
    of some lists, whatever the text."""

    in_lists: int
    """List memberships, counting a contact once per list."""
    contacts: int
    """Distinct contacts across the lists."""
    opted_out: int
    suppressed: int
    """Not opted out, but on the suppression list."""
    recipients: int
    keys: frozenset[str]
    """The attribute keys its reachable contacts have (placeholders beyond the fields)."""
    uncertain_zones: int = 0
    """Recipients whose time zone is not known for sure: none, or several (a mobile
    in a country that spans zones); a send window opens for them only when it is
    open in every zone they may be in."""


def audience_facts(
    lists: Iterable[ContactList | int], *, max_memberships: int | None = None
) -> AudienceFacts | None:
    """The audience of ``lists`` counted and its attribute keys, kept in the cache.

    Counting a million contacts and reading their attribute keys takes a second or
    two and does not depend on the text, so the composer (on every change) and the
    send and schedule confirmation pages share one cached answer. The cache key
    names the lists (with their creation times: a reused id is another list) and
    the newest membership, suppression and consent event, read in one query: new
    members, imports into a list, suppressed numbers, opt-outs and opt-ins count
    again at once. Removals from a list and edited attributes show within
    :data:`AUDIENCE_CACHE_SECONDS`. Sending re-checks everything itself.

    With ``max_memberships``, an audience that is not cached and has more
    memberships than that is not counted (None), so a page view can leave the
    counting to a later request.
    """
    list_ids = sorted(set(_list_ids(lists)))
    key = _audience_cache_key(list_ids)
    facts = cache.get(key)
    if facts is not None:
        return facts
    if max_memberships is not None:
        # Counted up to the limit only: the question is "more than", not how many.
        memberships = ListMembership.objects.filter(contact_list__in=list_ids)
        if memberships.order_by()[: max_memberships + 1].count() > max_memberships:
            return None
    facts = _count_audience(list_ids)
    cache.set(key, facts, AUDIENCE_CACHE_SECONDS)
    return facts


def _list_ids(lists: Iterable[ContactList | int]) -> list[int]:
    return [item.pk if hasattr(item, "pk") else int(item) for item in lists]


def _audience_cache_key(list_ids: list[int]) -> str:
    """One query: the lists' creation times and the newest membership, suppression
    and consent event (primary-key lookups, whatever the tables' sizes)."""

    def newest(queryset: QuerySet) -> Subquery:
        return Subquery(queryset.order_by("-pk").values("pk")[:1])

    rows = list(
        ContactList.objects.filter(pk__in=list_ids)
        .order_by("pk")
        .annotate(
            newest_membership=newest(ListMembership.objects.all()),
            newest_suppression=newest(Suppression.objects.all()),
            newest_consent=newest(ConsentEvent.objects.all()),
        )
        .values_list(
            "pk",
            "created_at",
            "newest_membership",
            "newest_suppression",
            "newest_consent",
        )
    )
    names = ";".join(f"{pk}@{created_at.isoformat()}" for pk, created_at, *_ in rows)
    newest_rows = rows[0][2:] if rows else ()
    digest = hashlib.sha256(f"{names}|{newest_rows}".encode()).hexdigest()
    return f"campaigns:audience:{digest}"


def _count_audience(list_ids: list[int]) -> AudienceFacts:
    """Memberships with one index-only COUNT; contacts, opt-outs and suppressed
    numbers with one pass over the audience (a semi-join, filtered counts); the
    reachable contacts' attribute keys with one more."""
    in_lists = ListMembership.objects.filter(contact_list__in=list_ids).count()
    suppressed = Q(phone__in=Suppression.objects.values("phone"))
    counts = Contact.objects.in_lists(list_ids).aggregate(
        contacts=Count("pk"),
        opted_out=Count("pk", filter=Q(opted_out_at__isnull=False)),
        suppressed=Count("pk", filter=Q(opted_out_at__isnull=True) & suppressed),
        # Several zones are stored space-separated (contacts.phones.join_zones).
        uncertain_zones=Count(
            "pk",
            filter=Q(opted_out_at__isnull=True)
            & ~suppressed
            & (Q(time_zone="") | Q(time_zone__contains=" ")),
        ),
    )
    keys = audience_attribute_keys(Contact.objects.in_lists(list_ids).reachable())
    return AudienceFacts(
        in_lists=in_lists,
        contacts=counts["contacts"],
        opted_out=counts["opted_out"],
        suppressed=counts["suppressed"],
        recipients=counts["contacts"] - counts["opted_out"] - counts["suppressed"],
        keys=frozenset(keys),
        uncertain_zones=counts["uncertain_zones"],
    )


#: Currencies written with their symbol; others by code, e.g. "12.50 CHF".
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


_CENT = Decimal("0.01")
_TEN_THOUSANDTH = Decimal("0.0001")


def round_cost(amount: Decimal | float | int) -> Decimal:
    """A cost as every page shows it: to the cent (half up), or to four decimals
    when it is under a cent (a single test message) so it does not read as zero.

    One rounding for the composer, the confirmation pages and the dashboard, so the
    same cost never reads "$2.415" on one page and "$2.42" on another.
    """
    value = Decimal(str(amount))
    if value and abs(value) < _CENT:
        return value.quantize(_TEN_THOUSANDTH, ROUND_HALF_UP)
    return value.quantize(_CENT, ROUND_HALF_UP)


def format_money(
    amount: Decimal | float | int, currency: str, *, unit_price: bool = False
) -> str:
    """How every admin page writes an amount: "$1,234.50", "$0.0075", "12.50 CHF".

    A cost is rounded by :func:`round_cost`; a ``unit_price`` (per segment) keeps
    up to four decimals, as providers price fractions of a cent ("$0.0125").
    """
    if unit_price:
        value = Decimal(str(amount)).quantize(_TEN_THOUSANDTH, ROUND_HALF_UP)
    else:
        value = round_cost(amount)
    whole, _, fraction = f"{value:,f}".partition(".")
    text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    if currency in CURRENCY_SYMBOLS:
        sign = "-" if text.startswith("-") else ""
        return f"{sign}{CURRENCY_SYMBOLS[currency]}{text.lstrip('-')}"
    return f"{text} {currency}".strip()
