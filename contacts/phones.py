"""Phone numbers: parsing to E.164, and the country and time zone of a number.

The one place that knows about ``phonenumbers``; everything else stores and passes E.164.
"""

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import timezone as phone_timezone

from django.conf import settings

from providers.messages import mask_phone

__all__ = [
    "InvalidPhoneNumber",
    "ParsedPhone",
    "mask_phone",
    "normalize_phone",
    "parse_phone",
    "sender_key",
]

SENDER_MAX_LENGTH = 32
"""The longest sender kept (inbound replies, consent events, suppressions)."""

_UNKNOWN_TIME_ZONE = "Etc/Unknown"
_DIGITS_ONLY = re.compile(r"^\d+$")
_PUNCTUATION = re.compile(r"[\s().\-/]")


class InvalidPhoneNumber(ValueError):
    """A phone number that cannot be parsed, or is not a valid number."""

    def __init__(self, raw: str, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(f"{raw!r} is not a valid phone number: {reason}")


@dataclass(frozen=True, slots=True)
class ParsedPhone:
    e164: str
    country: str
    """ISO 3166-1 alpha-2 region of the number, e.g. "US"; empty when unknown."""
    time_zone: str
    """The IANA time zones the number may be in, sorted and space-separated:
    "America/Los_Angeles" for most landlines, several for a mobile of a country that
    spans zones ("Australia/Adelaide Australia/Brisbane ..."); empty when unknown.
    See :func:`zones_of` and :func:`is_uncertain_zone`."""


def parse_phone(
    raw: str, region: str | None = None, *, keypad_letters: bool = False
) -> ParsedPhone:
    """Parse a number written in any common format.

    Accepts E.164 (``+14155550123``), international without the ``+``
    (``447911123456``) or with an ``00`` prefix, and national format for ``region``
    (default ``PHONE_DEFAULT_REGION``), e.g. ``(415) 555-0123``. Letters are refused
    unless ``keypad_letters`` reads them as on a phone keypad (``1-800-FLOWERS``):
    phonenumbers would, and "+1 415 555 ABCD" is far more often a typo or a
    placeholder than a vanity number.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber(raw, "it is empty")
    if not keypad_letters and any(c.isalpha() for c in text):
        raise InvalidPhoneNumber(raw, "it contains letters")
    region = (region or settings.PHONE_DEFAULT_REGION).upper()
    compact = _PUNCTUATION.sub("", text)
    if compact.startswith("00") and _DIGITS_ONLY.match(compact):
        text = compact = "+" + compact[2:]

    number = _parse_valid(text, region)
    if number is None and _DIGITS_ONLY.match(compact) and len(compact) >= 8:
        # Digits that are not a valid national number may be international
        # without the "+", as many exports and vendor callbacks write them.
        number = _parse_valid("+" + compact, None)
    if number is None:
        if text.startswith("+") or not _DIGITS_ONLY.match(compact):
            raise InvalidPhoneNumber(raw, "not a valid number")
        raise InvalidPhoneNumber(
            raw, f"not a valid number in {region} or in international format"
        )

    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    country = phonenumbers.region_code_for_number(number) or ""
    zones = [
        z
        for z in phone_timezone.time_zones_for_number(number)
        if z != _UNKNOWN_TIME_ZONE
    ]
    # A number can span several zones (a whole country for mobiles: a Moscow mobile
    # is listed in every Russian zone, and Kazakhstan's). All of them are kept, so a
    # sending window opens for it only where it is open in each (campaigns.sending.
    # windows); picking one (the first is alphabetical, Asia/Almaty for +7) would be
    # hours off for most. A contact's own zone, when set, replaces them.
    return ParsedPhone(
        e164=e164,
        country=country if country != "001" else "",
        time_zone=join_zones(zones),
    )


def sender_key(raw: str) -> str:
    """How a sender is stored and matched: E.164 when it parses, else as written.

    Vendors pass on senders phonenumbers refuses (a number in an unassigned range,
    international digits without "+", a short code, an alphanumeric ID). Their
    messages and opt-outs are still kept and honoured, under exactly that string.
    """
    try:
        return parse_phone(raw).e164
    except InvalidPhoneNumber:
        return (raw or "").strip()[:SENDER_MAX_LENGTH]


ZONE_SEPARATOR = " "


def join_zones(zones) -> str:
    """Zones as stored: unique, sorted, space-separated (one value per set, so equal
    sets compare equal in SQL)."""
    return ZONE_SEPARATOR.join(sorted(set(zones)))


def zones_of(value: str) -> list[str]:
    """The zones of a stored ``time_zone`` value ([] when unknown)."""
    return value.split()


def is_uncertain_zone(value: str) -> bool:
    """Whether the recipient's zone is not known for sure: none, or several."""
    return len(zones_of(value)) != 1


def normalize_phone(raw: str, region: str | None = None) -> str:
    """Return ``raw`` in E.164, or raise InvalidPhoneNumber."""
    return parse_phone(raw, region).e164


def _parse_valid(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None
