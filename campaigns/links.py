"""Tracked links: web links in a campaign's text sent as short links per recipient.

Each recipient's message carries its own short link, ``PUBLIC_BASE_URL/l/<code>``,
for each link of the text. The code is 8 characters of base62 that encode the
message's id and the link's position in the campaign through a keyed permutation
(a Feistel network whose round function is keyed BLAKE2b): no row is stored per
message, a click is resolved with one primary-key lookup, and codes cannot be
guessed from one another (neighbouring message ids give unrelated codes, and a
random code names an existing message with a negligible chance).

Only links written as text are tracked: a link inside a placeholder's default, or
one that runs into a placeholder (``https://shop.example/{code}``, personal to each
recipient), is sent as it is. Every short link has the same length, so the
composer's counts with a sample short link in place are exact.
"""

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.db import IntegrityError, transaction

from .models import Campaign, TrackedLink
from .templating import Placeholder, Template, TemplateError, parse

#: Links tracked per campaign: the code keeps the position in 4 bits.
MAX_LINKS = 16
_POSITION_BITS = 4
#: The permutation works on 46 bits (62**8 > 2**46): message ids up to 2**42.
_HALF_BITS = 23
_HALF_MASK = (1 << _HALF_BITS) - 1
_DOMAIN = 1 << (2 * _HALF_BITS)
_ROUNDS = 4
CODE_LENGTH = 8
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGITS = {char: value for value, char in enumerate(_ALPHABET)}
SHORT_PATH = "/l/"

# http(s):// or www., up to a space, a quote, an angle bracket or a brace.
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'{}]+", re.IGNORECASE)
# Punctuation that ends a sentence rather than a link.
_TRAILING = ".,;:!?*"
# A placeholder name no one can write (parse refuses "\x00"): the per-message link.
_LINK_NAME = "\x00link{}"


# --- Codes --------------------------------------------------------------------------


def _keys() -> list[bytes]:
    """The current key first, then those from SECRET_KEY_FALLBACKS: rotating the
    secret keeps links already sent working."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [_derive(secret) for secret in secrets]


@lru_cache(maxsize=8)
def _derive(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"smscampaigns.links.v1", hashlib.sha256).digest()


@lru_cache(maxsize=8)
def _keyed(key: bytes):
    # Keying a hash costs more than hashing 5 bytes: copy a keyed one instead.
    return hashlib.blake2b(key=key, digest_size=4)


def _round(key: bytes, number: int, half: int) -> int:
    hasher = _keyed(key).copy()
    hasher.update(half.to_bytes(4, "big") + bytes((number,)))
    return int.from_bytes(hasher.digest(), "big") & _HALF_MASK


def _permute(key: bytes, value: int) -> int:
    left, right = value >> _HALF_BITS, value & _HALF_MASK
    for number in range(_ROUNDS):
        left, right = right, left ^ _round(key, number, right)
    return (left << _HALF_BITS) | right


def _unpermute(key: bytes, value: int) -> int:
    left, right = value >> _HALF_BITS, value & _HALF_MASK
    for number in reversed(range(_ROUNDS)):
        left, right = right ^ _round(key, number, left), left
    return (left << _HALF_BITS) | right


def link_code(message_id: int, position: int, *, key: bytes | None = None) -> str:
    """The short link code of link ``position`` in message ``message_id``."""
    if not 0 <= position < MAX_LINKS:
        raise ValueError(f"link position {position} is not below {MAX_LINKS}")
    value = (message_id << _POSITION_BITS) | position
    if not 0 <= value < _DOMAIN:
        raise ValueError(f"message id {message_id} is too large for a short link")
    number = _permute(key or _keys()[0], value)
    chars = []
    for _ in range(CODE_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def link_decode(code: str) -> list[tuple[int, int]]:
    """The (message id, position) pairs ``code`` may stand for: one per key (see
    :func:`_keys`), the current key's first; empty for a malformed code."""
    if len(code) != CODE_LENGTH:
        return []
    number = 0
    for char in code:
        digit = _DIGITS.get(char)
        if digit is None:
            return []
        number = number * 62 + digit
    if number >= _DOMAIN:
        return []
    candidates = []
    for key in _keys():
        value = _unpermute(key, number)
        candidates.append((value >> _POSITION_BITS, value & (MAX_LINKS - 1)))
    return candidates


def short_url(code: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}{SHORT_PATH}{code}"


def sample_short_url() -> str:
    """A short link as recipients get it (same length), for previews and counts;
    it leads nowhere (no message has id 0)."""
    return short_url(link_code(0, 0))


def tracking_on(track_links: bool) -> bool:
    """Whether links are shortened: asked for, and there is a public address to
    put in front of the codes."""
    return bool(track_links and settings.PUBLIC_BASE_URL)


# --- Finding and replacing links ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    literal: int
    start: int
    end: int
    url: str


def _trim(url: str) -> str:
    """``url`` without the punctuation of the sentence around it; a closing
    parenthesis stays when the link opened one (Wikipedia's links)."""
    while url:
        last = url[-1]
        unbalanced = last == ")" and url.count("(") < url.count(")")
        if last not in _TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def _find(template: Template) -> list[_Found]:
    found = []
    last = len(template.literals) - 1
    for index, literal in enumerate(template.literals):
        for match in _URL.finditer(literal):
            url = _trim(match.group())
            end = match.start() + len(url)
            if url.lower() in ("www.", "http://", "https://") or "." not in url:
                continue
            # Runs into a placeholder: the link differs per recipient.
            if end == len(literal) and index < last:
                continue
            # "{{" written in the link: not a link this module can follow.
            if end < len(literal) and literal[end] in "{}":
                continue
            found.append(_Found(index, match.start(), end, url))
    return found


def destination(url: str) -> str:
    """Where a link written ``url`` leads: "www.…" means the web."""
    return url if "://" in url else f"https://{url}"


def template_links(template: Template) -> list[str]:
    """The distinct links the template's text tracks, in order of appearance (at
    most :data:`MAX_LINKS`: any more are sent as written)."""
    urls: list[str] = []
    for found in _find(template):
        if found.url not in urls and len(urls) < MAX_LINKS:
            urls.append(found.url)
    return urls


def _replace(template: Template, replacement: Mapping[str, object]) -> Template:
    """``template`` with each tracked link replaced by ``replacement[url]``: a
    string (fixed text) or a :class:`Placeholder`."""
    found = [f for f in _find(template) if f.url in replacement]
    if not found:
        return template
    literals: list[str] = []
    placeholders: list[Placeholder] = []
    by_literal: dict[int, list[_Found]] = {}
    for item in found:
        by_literal.setdefault(item.literal, []).append(item)
    current = ""
    for index, literal in enumerate(template.literals):
        cursor = 0
        for item in by_literal.get(index, ()):
            current += literal[cursor : item.start]
            value = replacement[item.url]
            if isinstance(value, Placeholder):
                literals.append(current)
                placeholders.append(value)
                current = ""
            else:
                current += str(value)
            cursor = item.end
        current += literal[cursor:]
        if index < len(template.placeholders):
            literals.append(current)
            placeholders.append(template.placeholders[index])
            current = ""
    literals.append(current)
    return Template(
        source=template.source,
        literals=tuple(literals),
        placeholders=tuple(placeholders),
    )


def with_sample_links(template: Template, *, track_links: bool) -> Template:
    """``template`` as recipients will get it, for previews and counts: each tracked
    link replaced by a short link of the same length as theirs."""
    if not tracking_on(track_links):
        return template
    urls = template_links(template)
    if not urls:
        return template
    sample = sample_short_url()
    return _replace(template, dict.fromkeys(urls, sample))


def counted_template(source: str, *, track_links: bool) -> Template:
    """:func:`parse` of ``source`` with sample short links in place (raises
    :class:`TemplateError` as parse does)."""
    return with_sample_links(parse(source), track_links=track_links)


# --- Sending --------------------------------------------------------------------------


def links_prepare(*, campaign: Campaign, sources: Iterable[str] = ()) -> dict[str, int]:
    """Store the links the campaign's text tracks (at launch): their positions by
    URL. Empty when the campaign does not track links. ``sources`` are further
    texts of the campaign (its variants) whose links count too.

    Positions never change once given: a relaunch (new members of its lists) adds
    links only if the text has new ones, which it cannot once sending started.
    """
    if not tracking_on(campaign.track_links):
        return {}
    urls: list[str] = []
    for source in (campaign.template_source, *sources):
        try:
            template = parse(source)
        except TemplateError:
            continue
        for url in template_links(template):
            if url not in urls and len(urls) < MAX_LINKS:
                urls.append(url)
    known = dict(
        TrackedLink.objects.filter(campaign=campaign).values_list("url", "position")
    )
    for url in urls:
        if url in known or len(known) >= MAX_LINKS:
            continue
        position = len(known)
        try:
            with transaction.atomic():
                TrackedLink.objects.create(
                    campaign=campaign, position=position, url=url
                )
        except IntegrityError:  # a concurrent launch gave that position out
            known = dict(
                TrackedLink.objects.filter(campaign=campaign).values_list(
                    "url", "position"
                )
            )
            continue
        known[url] = position
    return known


def campaign_link_positions(campaign: Campaign) -> dict[str, int]:
    """The positions of the links the campaign tracks, by URL (stored at launch)."""
    if not tracking_on(campaign.track_links):
        return {}
    return dict(
        TrackedLink.objects.filter(campaign=campaign).values_list("url", "position")
    )


class LinkRenderer:
    """Renders one campaign text per message with that message's short links."""

    def __init__(self, template: Template, positions: Mapping[str, int]) -> None:
        self.positions = {
            url: positions[url] for url in template_links(template) if url in positions
        }
        self.names = {
            position: _LINK_NAME.format(position)
            for position in self.positions.values()
        }
        self.template = _replace(
            template,
            {url: Placeholder(self.names[p]) for url, p in self.positions.items()},
        )
        self.key = _keys()[0]
        self.base = f"{settings.PUBLIC_BASE_URL}{SHORT_PATH}"
        self.samples = dict.fromkeys(self.names.values(), sample_short_url())

    def render(
        self,
        *,
        message_id: int,
        first_name: str,
        last_name: str,
        phone: str,
        attributes: Mapping[str, object],
    ) -> str:
        return self.render_measured(
            message_id=message_id,
            first_name=first_name,
            last_name=last_name,
            phone=phone,
            attributes=attributes,
        )[0]

    def render_measured(
        self,
        *,
        message_id: int,
        first_name: str,
        last_name: str,
        phone: str,
        attributes: Mapping[str, object],
    ) -> tuple[str, str]:
        """The message's text, and the same text with the sample short link in
        place of its own: the same length and characters (every code is 8
        characters of base62), so encoding and segments measured once on it
        hold for every recipient whose details are alike, and can be cached."""
        person = {"first_name": first_name, "last_name": last_name, "phone": phone}
        if not self.names:
            text = self.template.render(**person, attributes=attributes)
            return text, text
        # The link names cannot be written in a text, so they shadow nothing.
        own = {
            name: self.base + link_code(message_id, position, key=self.key)
            for position, name in self.names.items()
        }
        text = self.template.render(**person, attributes={**attributes, **own})
        sample = self.template.render(
            **person, attributes={**attributes, **self.samples}
        )
        return text, sample
