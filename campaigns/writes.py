"""Campaign writes that come from integrations rather than the composer: ad-hoc bulk
sends, and the create/edit/delete rules for stored campaigns.

The rules live here, not in the API views, so any other entry point (the admin, a
command) can apply the same ones.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contacts.models import Contact
from contacts.phones import InvalidPhoneNumber, ParsedPhone, parse_phone
from contacts.services import blocked_numbers, message_contacts_lock

from . import lifecycle
from .lifecycle import CampaignError
from .models import (
    Campaign,
    CampaignVariant,
    Message,
    default_opt_out_footer,
    variant_label,
)
from .preview import campaign_audience
from .provider_checks import require_usable, text_length_problems
from .segments import audience_q
from .sending.direct import message_create_direct
from .sending.queue import enqueue_dispatch
from .templating import TemplateError, audience_attribute_keys, parse, validate

#: Campaign fields that decide what recipients get; frozen once sending started.
CONTENT_FIELDS = (
    "body",
    "opt_out_footer",
    "lists",
    "segments",
    "provider",
    "sender",
    "track_links",
)
#: Content fields that are sets of related rows, compared by id.
_AUDIENCE_FIELDS = ("lists", "segments")
#: States in which the content may still change and the campaign may be deleted.
EDITABLE = frozenset({Campaign.Status.DRAFT, Campaign.Status.SCHEDULED})
#: Most numbers one bulk request may name.
MAX_BULK_RECIPIENTS = 10_000
# Rows per statement: well under SQLite's bound-parameter limit, few round trips.
_CHUNK = 900


def content_locked(campaign: Campaign) -> bool:
    """Whether the campaign's content (:data:`CONTENT_FIELDS`) can no longer change.

    It can while it is a draft or scheduled, and while it is paused before it ever
    started: no message exists yet then (a paused campaign is not launched), so a
    change reaches everyone alike. The one rule for the services and the admin.
    """
    if campaign.status in EDITABLE:
        return False
    return not (
        campaign.status == Campaign.Status.PAUSED and campaign.started_at is None
    )


class BodyError(ValueError):
    """A message body whose placeholders or syntax would not render; ``field`` is
    the input it is about ("body", or "variants" for a variant's text)."""

    def __init__(self, problems: list[str], *, field: str = "body") -> None:
        super().__init__(" ".join(problems))
        self.problems = problems
        self.field = field


class NoRecipients(ValueError):
    """A bulk request in which no number is valid."""


@dataclass
class AdhocResult:
    campaign: Campaign
    accepted: int = 0
    invalid: list[str] = field(default_factory=list)
    """The numbers as given that are not valid phone numbers."""
    skipped: list[str] = field(default_factory=list)
    """Valid numbers (E.164) left out because they opted out or are suppressed."""


def body_problems(body: str, contacts) -> list[str]:
    """What is wrong with ``body`` for ``contacts`` (a queryset); empty when fine."""
    return validate(body, known_attributes=audience_attribute_keys(contacts))


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def campaign_create_adhoc(
    *,
    recipients: Sequence[str],
    message: str,
    provider: str = "",
    created_by=None,
) -> AdhocResult:
    """Text ``message`` to ``recipients`` now, as a campaign without lists.

    Valid numbers become contacts (created in bulk when new); opted-out and
    suppressed numbers are skipped; each remaining number gets one queued message,
    rendered by the dispatcher like any campaign's. Raises :class:`NoRecipients`
    when no number is valid, :class:`BodyError` for a body that would not render and
    :class:`~campaigns.provider_checks.ProviderUnusable` for a provider that cannot send.
    """
    provider = provider or settings.SMS_DEFAULT_PROVIDER
    require_usable(field="provider", alias=provider)
    invalid: list[str] = []
    parsed: dict[str, ParsedPhone] = {}  # by E.164, in the order given, each once
    for raw in recipients:
        try:
            number = parse_phone(raw)
        except InvalidPhoneNumber:
            if raw not in invalid:
                invalid.append(raw)
            continue
        parsed.setdefault(number.e164, number)
    if not parsed:
        raise NoRecipients("None of the recipients is a valid phone number.")
    numbers = list(parsed)
    problems = body_problems(message, Contact.objects.filter(phone__in=numbers))
    problems += text_length_problems(
        body=message, footer=default_opt_out_footer(), provider=provider
    )
    if problems:
        raise BodyError(problems)

    now = timezone.now()
    with transaction.atomic():
        # Contacts it writes messages for are not deleted before it commits.
        message_contacts_lock(exclusive=False)
        campaign = Campaign.objects.create(
            name=f"Bulk {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
            body=message,
            provider=provider,
            created_by=created_by,
        )
        contacts = _upsert_contacts(parsed)
        blocked = blocked_numbers(numbers)
        queued = [
            Message(
                kind=Message.Kind.CAMPAIGN,
                campaign=campaign,
                contact_id=contacts[number][0],
                to=number,
                body="",  # the dispatcher renders it when it sends
                provider=campaign.provider,
                time_zone=contacts[number][1],
                queued_at=now,
                status_changed_at=now,
            )
            for number in numbers
            if number not in blocked
        ]
        Message.objects.bulk_create(queued, batch_size=1000)
        # Its audience is these messages: launched (nobody sees the draft it was).
        lifecycle.move(campaign, "launch", started_at=now)
        if queued:
            transaction.on_commit(lambda: enqueue_dispatch(campaign.pk))
        else:
            # Nobody to text: finished as soon as it started.
            lifecycle.move(
                campaign, "finish", to=Campaign.Status.COMPLETED, completed_at=now
            )
    return AdhocResult(
        campaign=campaign,
        accepted=len(queued),
        invalid=invalid,
        skipped=[number for number in numbers if number in blocked],
    )


def _upsert_contacts(parsed: dict[str, ParsedPhone]) -> dict[str, tuple[int, str]]:
    """Create the contacts that do not exist yet; return (id, time zone) by number."""
    numbers = list(parsed)
    known = _contacts_by_number(numbers)
    new = [
        Contact(phone=p.e164, country=p.country, time_zone=p.time_zone)
        for number, p in parsed.items()
        if number not in known
    ]
    if new:
        # A concurrent request may create the same numbers: ignore those conflicts
        # and read every id back.
        Contact.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
        known |= _contacts_by_number([c.phone for c in new])
    return known


def _contacts_by_number(numbers: Sequence[str]) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(numbers):
        rows = Contact.objects.filter(phone__in=chunk).values_list(
            "phone", "pk", "time_zone"
        )
        found.update((phone, (pk, zone)) for phone, pk, zone in rows)
    return found


# --- Stored campaigns ------------------------------------------------------------


def _check_body(
    body: str,
    lists: Iterable,
    *,
    footer: str,
    provider: str,
    segments: Iterable = (),
    track_links: bool = True,
) -> None:
    problems = body_problems(
        body,
        Contact.objects.filter(
            audience_q(list_ids=[item.pk for item in lists], segments=list(segments))
        ),
    )
    problems += text_length_problems(
        body=body, footer=footer, provider=provider, track_links=track_links
    )
    if problems:
        raise BodyError(problems)


#: Texts a campaign may have besides its own (B, C, D).
MAX_OTHER_VARIANTS = 3


def variant_problems(
    variants: Sequence[dict],
    *,
    lists: Iterable,
    footer: str,
    provider: str,
    segments: Iterable = (),
    track_links: bool = True,
) -> list[str]:
    """Why ``variants`` (the texts besides the campaign's own, each {"body",
    "share"}) cannot be sent to ``lists``; empty when they can.

    One to three of them, each with a share of 1 to 98 % of the recipients, that
    leave variant A (the campaign's own text) at least 1 %; each text is checked
    like the campaign's (placeholders, length).
    """
    if not variants:
        return []
    if len(variants) > MAX_OTHER_VARIANTS:
        return [
            f"A campaign has at most {MAX_OTHER_VARIANTS + 1} texts: its own (A) "
            f"and {MAX_OTHER_VARIANTS} variants (B, C, D)."
        ]
    problems = []
    shares = [variant.get("share") for variant in variants]
    if any(not isinstance(share, int) or not 1 <= share <= 98 for share in shares):
        problems.append("Each variant's share is a whole percent from 1 to 98.")
    elif sum(shares) > 99:
        problems.append(
            f"The variants' shares add up to {sum(shares)} %: variant A (the main "
            "text) needs at least 1 % of the recipients."
        )
    contacts = Contact.objects.filter(
        audience_q(list_ids=[item.pk for item in lists], segments=list(segments))
    )
    keys = audience_attribute_keys(contacts)
    for number, variant in enumerate(variants, start=1):
        label = variant_label(number)
        body = variant.get("body") or ""
        if not body.strip():
            problems.append(f"Variant {label} has no text.")
            continue
        found = validate(body, known_attributes=keys)
        found += text_length_problems(
            body=body, footer=footer, provider=provider, track_links=track_links
        )
        problems += [f"Variant {label}: {problem}" for problem in found]
    return problems


def _variants_set(campaign: Campaign, variants: Sequence[dict]) -> None:
    CampaignVariant.objects.filter(campaign=campaign).delete()
    CampaignVariant.objects.bulk_create(
        CampaignVariant(
            campaign=campaign,
            position=number,
            body=variant["body"],
            share=variant["share"],
        )
        for number, variant in enumerate(variants, start=1)
    )


def campaign_variants(campaign: Campaign) -> list[dict]:
    """The campaign's texts besides its own, as the services take them."""
    return [
        {"body": body, "share": share}
        for body, share in campaign.variants.order_by("position").values_list(
            "body", "share"
        )
    ]


@transaction.atomic
def campaign_create(
    *,
    lists: Iterable = (),
    segments: Iterable = (),
    created_by=None,
    variants: Sequence[dict] = (),
    **fields: Any,
) -> Campaign:
    """A draft campaign; its body is checked against its audience's attributes, and
    its providers must be usable (:class:`~campaigns.provider_checks.ProviderUnusable`)."""
    lists, segments = list(lists), list(segments)
    require_usable(
        field="provider",
        alias=fields.get("provider") or settings.SMS_DEFAULT_PROVIDER,
    )
    require_usable(field="fallback_provider", alias=fields.get("fallback_provider", ""))
    _check_body(
        fields.get("body", ""),
        lists,
        footer=fields.get("opt_out_footer", default_opt_out_footer()),
        provider=fields.get("provider") or settings.SMS_DEFAULT_PROVIDER,
        segments=segments,
        track_links=fields.get("track_links", True),
    )
    problems = variant_problems(
        variants,
        lists=lists,
        segments=segments,
        footer=fields.get("opt_out_footer", default_opt_out_footer()),
        provider=fields.get("provider") or settings.SMS_DEFAULT_PROVIDER,
        track_links=fields.get("track_links", True),
    )
    if problems:
        raise BodyError(problems, field="variants")
    campaign = Campaign.objects.create(created_by=created_by, **fields)
    campaign.lists.set(lists)
    campaign.segments.set(segments)
    _variants_set(campaign, variants)
    return campaign


@transaction.atomic
def campaign_update(*, campaign: Campaign, **fields: Any) -> Campaign:
    """Change a campaign. Its content (:data:`CONTENT_FIELDS`) can only change
    while :func:`content_locked` allows it (raises :class:`CampaignError`
    otherwise); the name and the delivery settings may change at any time."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    current = {
        name: set(getattr(locked, name).values_list("pk", flat=True))
        for name in _AUDIENCE_FIELDS
    }
    variants = fields.pop("variants", None)
    variants_changed = variants is not None and list(variants) != campaign_variants(
        locked
    )
    changed = [
        name
        for name in CONTENT_FIELDS
        if name in fields
        and (
            {item.pk for item in fields[name]} != current[name]
            if name in _AUDIENCE_FIELDS
            else fields[name] != getattr(locked, name)
        )
    ]
    if variants_changed:
        changed.append("variants")
    if changed and content_locked(locked):
        raise CampaignError(
            f"Campaign {locked.pk} is {locked.get_status_display().lower()}: its "
            f"{', '.join(changed)} can no longer change (only campaigns that have "
            "not started sending can be edited)"
        )
    # A provider is judged when it is chosen: a campaign keeps the one it has.
    for name in ("provider", "fallback_provider"):
        if name in fields and fields[name] != getattr(locked, name):
            require_usable(field=name, alias=fields[name])
    changed_content = {
        "body",
        "lists",
        "segments",
        "opt_out_footer",
        "provider",
        "track_links",
    }
    if changed_content & set(changed):
        lists = fields["lists"] if "lists" in fields else locked.lists.all()
        segments = fields["segments"] if "segments" in fields else locked.segments.all()
        _check_body(
            fields.get("body", locked.body),
            lists,
            footer=fields.get("opt_out_footer", locked.opt_out_footer),
            provider=fields.get("provider", locked.provider),
            segments=segments,
            track_links=fields.get("track_links", locked.track_links),
        )
    if changed and (variants_changed or campaign_variants(locked)):
        lists_now = fields["lists"] if "lists" in fields else locked.lists.all()
        segments_now = (
            fields["segments"] if "segments" in fields else locked.segments.all()
        )
        problems = variant_problems(
            campaign_variants(locked) if variants is None else variants,
            lists=lists_now,
            segments=segments_now,
            footer=fields.get("opt_out_footer", locked.opt_out_footer),
            provider=fields.get("provider", locked.provider),
            track_links=fields.get("track_links", locked.track_links),
        )
        if problems:
            raise BodyError(problems, field="variants")
    lists = fields.pop("lists", None)
    segments = fields.pop("segments", None)
    # Only the fields given: the status belongs to campaigns.lifecycle.
    if "status" in fields:
        raise TypeError("campaign_update() does not change the status")
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save(update_fields=[*fields, "updated_at"])
    if lists is not None:
        locked.lists.set(lists)
    if segments is not None:
        locked.segments.set(segments)
    if variants_changed:
        _variants_set(locked, variants)
    campaign.refresh_from_db()
    return campaign


@transaction.atomic
def campaign_delete(*, campaign: Campaign) -> None:
    """Delete a draft or scheduled campaign; one that has sent anything stays."""
    # Conditional, so a campaign that started sending a moment ago is not removed;
    # locked first, so one being launched now is read once its launch has committed
    # (no foreign key stops deleting a campaign that has messages: Message.campaign).
    editable = Campaign.objects.filter(pk=campaign.pk, status__in=EDITABLE)
    deleted = 0
    if list(editable.select_for_update().values_list("pk", flat=True)):
        deleted, _ = editable.delete()
    if not deleted:
        campaign.refresh_from_db()
        raise CampaignError(
            f"Campaign {campaign.pk} is {campaign.get_status_display().lower()}: only "
            "drafts and scheduled campaigns can be deleted (cancel it instead)"
        )


# --- Test sends ------------------------------------------------------------------


class RecipientsOptedOut(ValueError):
    """Numbers that may not be texted, even for a test."""

    def __init__(self, numbers: list[str]) -> None:
        super().__init__(
            f"{', '.join(numbers)} opted out or {'is' if len(numbers) == 1 else 'are'} "
            "suppressed; test sends respect opt-outs too."
        )
        self.numbers = numbers


def campaign_test_text(campaign: Campaign, *, with_contact_data: bool = True) -> str:
    """The text a test send sends: the campaign's message, footer included, filled
    in with the first audience contact's data (or the placeholders' defaults when
    the audience is empty, or when ``with_contact_data`` is False: for people not
    allowed to see contacts). Raises :class:`BodyError` for a body that does not
    parse."""
    try:
        template = parse(campaign.template_source)
    except TemplateError as error:
        raise BodyError([str(error)]) from error
    example = (
        campaign_audience(campaign)
        .order_by("pk")
        .only("phone", "first_name", "last_name", "attributes")
        .first()
        if with_contact_data
        else None
    )
    return template.render(
        first_name=example.first_name if example else "",
        last_name=example.last_name if example else "",
        phone=example.phone if example else "",
        attributes=example.attributes
        if example and isinstance(example.attributes, dict)
        else {},
    )


def campaign_send_test(
    *, campaign: Campaign, numbers: Sequence[str], with_contact_data: bool = True
) -> list[Message]:
    """Send the campaign's text to ``numbers`` (E.164) now, outside its audience.

    Placeholders are filled with the first audience contact's data, or left to
    their defaults when the audience is empty. Raises :class:`BodyError` for a body
    that does not parse, :class:`RecipientsOptedOut` for numbers that opted out and
    :class:`~campaigns.provider_checks.ProviderUnusable` when the provider cannot send.
    """
    require_usable(field="provider", alias=campaign.provider)
    text = campaign_test_text(campaign, with_contact_data=with_contact_data)
    blocked = blocked_numbers(numbers)
    if blocked:
        raise RecipientsOptedOut([n for n in numbers if n in blocked])
    # Every row first, then the sends (on commit): a failure creates none of them.
    with transaction.atomic():
        return [
            message_create_direct(
                to=number,
                body=text,
                provider=campaign.provider,
                kind=Message.Kind.TEST,
                sender=campaign.sender,
            )
            for number in numbers
        ]
