"""What a campaign would send: audience after exclusions, encodings, segments, cost."""

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Subquery
from django.utils import timezone

from contacts.models import (
    ConsentEvent,
    Contact,
    ContactList,
    ListMembership,
    Suppression,
)

from .frequency import capped_q, effective_cap
from .links import counted_template
from .models import Campaign
from .segments import Segment, audience_q
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


def campaign_targets(campaign: Campaign):
    """Contacts in the campaign's lists or segments, each once, before exclusions."""
    return Contact.objects.filter(
        audience_q(
            list_ids=campaign.lists.values_list("pk", flat=True),
            segments=campaign.segments.all(),
        )
    )


def campaign_audience(campaign: Campaign):
    """Contacts the campaign would text now: in its lists or segments, reachable,
    each once. (The frequency cap is judged as each message goes out.)"""
    return campaign_targets(campaign).reachable()


def campaign_preview(*, campaign: Campaign, samples: int = 3) -> Preview:
    """Render every message the campaign would send, streaming the audience."""
    from providers.encoding import analyze

    price, currency = price_for(campaign.provider)
    preview = Preview(price_per_segment=price, currency=currency)
    everyone = campaign_targets(campaign)
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
    """Distinct contacts across the lists and segments."""
    opted_out: int = 0
    suppressed: int = 0
    """Not opted out, but on the suppression list."""
    recipients: int = 0
    """Who would get the message: distinct, not opted out, not suppressed, not over
    the frequency cap."""
    in_segments: int = 0
    """Contacts matching any of the segments."""
    frequency_capped: int = 0
    """Reachable, but at the frequency cap now: skipped if nothing changes."""
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
        return self.in_lists + self.in_segments - self.contacts

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
    segments=(),
    frequency_cap: str = "",
    track_links: bool = True,
    variants: Sequence[tuple[str, int]] = (),
) -> Estimate:
    """Audience after exclusions and the cost of sending ``body`` to ``lists`` and
    ``segments`` now, with the campaign's ``frequency_cap`` override.

    The audience's counts and attribute keys come from :func:`audience_facts`
    (cached: the composer and the confirmation pages share them), then at most
    :data:`ESTIMATE_SAMPLE` messages are rendered, whatever the audience's size, so
    the composer can ask on every change. Works for unsaved campaigns (the admin's
    form): pass the fields, not a campaign. Tracked links are counted as the
    short links recipients get. ``variants`` are the campaign's other texts with
    their shares (percent): segments per message are then the average over the
    texts, weighted by their shares.
    """
    list_ids, segment_ids = _list_ids(lists), _list_ids(segments)
    chosen = bool(list_ids or segment_ids)
    facts = (
        audience_facts(list_ids, segments=segment_ids, frequency_cap=frequency_cap)
        if chosen
        else None
    )
    templates = [
        _counted_or_none(text, opt_out_footer, track_links)
        for text in (body, *(text for text, _ in variants))
    ]
    template = templates[0]
    # Only a personalized text differs per contact: otherwise one rendering will do.
    personal = any(t is not None and t.placeholders for t in templates)
    contacts = list(
        audience_sample(list_ids, segment_ids).values_list(
            "first_name", "last_name", "phone", "attributes"
        )
        if personal and chosen
        else []
    )
    estimate = estimate_from_sample(
        template=template, contacts=contacts, facts=facts, provider=provider
    )
    if variants:
        others = [
            (
                estimate_from_sample(
                    template=other, contacts=contacts, facts=facts, provider=provider
                ),
                share,
            )
            for other, (_, share) in zip(templates[1:], variants, strict=True)
        ]
        weigh_variants(estimate, others)
    estimate.problems = validate(
        body, known_attributes=facts.keys if facts is not None else ()
    )
    return estimate


def _counted_or_none(body: str, footer: str, track_links: bool):
    source = Campaign(body=body, opt_out_footer=footer).template_source
    try:
        return counted_template(source, track_links=track_links)
    except TemplateError:
        return None


def weigh_variants(main: Estimate, others: list[tuple[Estimate, int]]) -> None:
    """Make ``main`` (variant A's estimate) stand for every text: segments per
    message averaged over the texts, weighted by their shares (A gets the rest)."""
    a_share = 100 - sum(share for _, share in others)
    main.segments_per_message = (
        main.segments_per_message * a_share
        + sum(other.segments_per_message * share for other, share in others)
    ) / 100
    main.exact = main.exact and all(other.exact for other, _ in others)


def audience_contacts(list_ids: Iterable[int], segment_ids: Iterable[int] = ()):
    """Contacts in the lists or the segments (by id), each once, before exclusions."""
    segment_ids = list(segment_ids)
    segments = Segment.objects.filter(pk__in=segment_ids) if segment_ids else []
    return Contact.objects.filter(
        audience_q(list_ids=list(list_ids), segments=segments)
    )


def audience_sample(list_ids: list[int], segment_ids: Iterable[int] = ()) -> QuerySet:
    """The first :data:`ESTIMATE_SAMPLE` contacts (by id) the lists and segments
    would text."""
    return (
        audience_contacts(list_ids, segment_ids)
        .reachable()
        .order_by("pk")[:ESTIMATE_SAMPLE]
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
        # Facts cached before these counts existed have none.
        estimate.in_segments = getattr(facts, "in_segments", 0)
        estimate.frequency_capped = getattr(facts, "frequency_capped", 0)
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
    """Distinct contacts across the lists and segments."""
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
    in_segments: int = 0
    """Contacts matching any of the segments."""
    frequency_capped: int = 0
    """Reachable contacts at the frequency cap now (left out of ``recipients``)."""


def audience_facts(
    lists: Iterable[ContactList | int],
    *,
    segments: Iterable[Segment | int] = (),
    frequency_cap: str = "",
    max_memberships: int | None = None,
) -> AudienceFacts | None:
    """The audience of ``lists`` and ``segments`` counted and its attribute keys,
    kept in the cache; ``frequency_cap`` is the campaign's override (empty: the
    setting), to count who is at the cap now.

    Counting a million contacts and reading their attribute keys takes a second or
    two and does not depend on the text, so the composer (on every change) and the
    send and schedule confirmation pages share one cached answer. The cache key
    names the lists (with their creation times: a reused id is another list), the
    segments (with their last change) and the cap, and the newest membership,
    suppression and consent event, read in one query: new members, imports into a
    list, suppressed numbers, opt-outs and opt-ins count again at once. Removals
    from a list, edited attributes, and what segments and the cap read from
    messages and the clock show within :data:`AUDIENCE_CACHE_SECONDS`. Sending
    re-checks everything itself.

    With ``max_memberships``, an audience that is not cached and has more
    memberships than that is not counted (None), so a page view can leave the
    counting to a later request. An audience with segments counts as large: a
    segment's size is only known by counting it.
    """
    list_ids = sorted(set(_list_ids(lists)))
    segment_ids = sorted(set(_list_ids(segments)))
    cap = effective_cap(frequency_cap)
    key = _audience_cache_key(list_ids, segment_ids, str(cap or ""))
    facts = cache.get(key)
    if facts is not None:
        return facts
    if max_memberships is not None:
        if segment_ids:
            return None
        # Counted up to the limit only: the question is "more than", not how many.
        memberships = ListMembership.objects.filter(contact_list__in=list_ids)
        if memberships.order_by()[: max_memberships + 1].count() > max_memberships:
            return None
    facts = _count_audience(list_ids, segment_ids, cap)
    cache.set(key, facts, AUDIENCE_CACHE_SECONDS)
    return facts


def _list_ids(lists: Iterable) -> list[int]:
    return [item.pk if hasattr(item, "pk") else int(item) for item in lists]


def _audience_cache_key(list_ids: list[int], segment_ids: list[int], cap: str) -> str:
    """The lists' creation times, the segments' last changes and the newest
    membership, suppression and consent event (primary-key lookups, whatever the
    tables' sizes): one query, two with both lists and segments."""

    def newest(queryset: QuerySet) -> Subquery:
        return Subquery(queryset.order_by("-pk").values("pk")[:1])

    newest_columns = {
        "newest_membership": newest(ListMembership.objects.all()),
        "newest_suppression": newest(Suppression.objects.all()),
        "newest_consent": newest(ConsentEvent.objects.all()),
    }

    def rows(queryset: QuerySet, stamp: str, ids: list[int]) -> list[tuple]:
        if not ids:
            return []
        return list(
            queryset.filter(pk__in=ids)
            .order_by("pk")
            .annotate(**newest_columns)
            .values_list("pk", stamp, *newest_columns)
        )

    list_rows = rows(ContactList.objects.all(), "created_at", list_ids)
    segment_rows = rows(Segment.objects.all(), "updated_at", segment_ids)
    names = ";".join(f"{pk}@{stamp.isoformat()}" for pk, stamp, *_ in list_rows)
    changed = ";".join(f"{pk}@{stamp.isoformat()}" for pk, stamp, *_ in segment_rows)
    first = (list_rows or segment_rows)[:1]
    newest_rows = first[0][2:] if first else ()
    text = f"{names}|{changed}|{segment_ids}|{cap}|{newest_rows}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"campaigns:audience:{digest}"


def _count_audience(
    list_ids: list[int], segment_ids: list[int], cap=None
) -> AudienceFacts:
    """Memberships with one index-only COUNT; contacts, opt-outs, suppressed
    numbers, segment matches and contacts at the frequency cap with one pass over
    the audience (filtered counts); the reachable contacts' attribute keys with
    one more."""
    now = timezone.now()
    in_lists = (
        ListMembership.objects.filter(contact_list__in=list_ids).count()
        if list_ids
        else 0
    )
    segments = list(Segment.objects.filter(pk__in=segment_ids))
    suppressed = Q(phone__in=Suppression.objects.values("phone"))
    reachable = Q(opted_out_at__isnull=True) & ~suppressed
    extra = {}
    if segments:
        extra["in_segments"] = Count(
            "pk", filter=audience_q(segments=segments, now=now)
        )
    if cap is not None:
        extra["frequency_capped"] = Count(
            "pk", filter=reachable & capped_q(cap, now=now)
        )
    audience = audience_contacts(list_ids, segment_ids)
    counts = audience.aggregate(
        contacts=Count("pk"),
        opted_out=Count("pk", filter=Q(opted_out_at__isnull=False)),
        suppressed=Count("pk", filter=Q(opted_out_at__isnull=True) & suppressed),
        # Several zones are stored space-separated (contacts.phones.join_zones).
        uncertain_zones=Count(
            "pk",
            filter=reachable & (Q(time_zone="") | Q(time_zone__contains=" ")),
        ),
        **extra,
    )
    keys = audience_attribute_keys(audience.reachable())
    capped = counts.get("frequency_capped", 0)
    return AudienceFacts(
        in_lists=in_lists,
        contacts=counts["contacts"],
        opted_out=counts["opted_out"],
        suppressed=counts["suppressed"],
        recipients=counts["contacts"]
        - counts["opted_out"]
        - counts["suppressed"]
        - capped,
        keys=frozenset(keys),
        uncertain_zones=counts["uncertain_zones"],
        in_segments=counts.get("in_segments", 0),
        frequency_capped=capped,
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
