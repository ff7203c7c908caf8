"""How a text travels as SMS: GSM-7 or UCS-2, how long it is, and how many segments.

A text goes as GSM-7 (3GPP TS 23.038 default alphabet) when every character is in the
basic table or its extension table; a single other character switches the whole text to
UCS-2. Lengths are counted in the unit the network counts:

- GSM-7: septets. Extension-table characters (``€ [ ] { } \\ ^ ~ |`` and form feed) are
  sent as ESC + code and cost 2.
- UCS-2: UTF-16 code units. Characters outside the Basic Multilingual Plane (emoji)
  are a surrogate pair and cost 2.

A text fits one SMS up to 160 septets / 70 code units. Longer texts are concatenated and
each part loses room to the User Data Header: 153 septets / 67 code units per part.

Segment counts are an upper bound. Neither an ESC pair nor a surrogate pair is split
across parts, so a part may hold one unit less than 153 / 67 (some gateways do split
them and may bill one segment less). The vendor's own count in its delivery report
(Vonage ``sms.count_total``, Plivo ``Units``) stays authoritative for billing.

The empty text is one GSM-7 segment: a message with no user data is still one SMS, and
an estimate should never come out below what a vendor could bill.

The GSM alphabet is read from the ``gsm0338`` codec (importing it registers
``"gsm03.38"``), so this module and ``text.encode("gsm03.38")`` agree on every
character, except that a literal ESC (U+001B) counts as non-GSM here: sent as GSM it
would turn the next character into an extension-table lookup.
"""

import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM_CODEC = "gsm03.38"

GSM_SINGLE = 160
GSM_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67

_ESC = 0x1B


class Encoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


def _gsm_septets() -> dict[str, int]:
    """Each GSM character and its cost in septets, read from the codec's own tables."""
    costs: dict[str, int] = {}
    for code in range(128):
        if code == _ESC:
            continue
        for raw, cost in ((bytes([code]), 1), (bytes([_ESC, code]), 2)):
            try:
                char = raw.decode(GSM_CODEC)
            except UnicodeDecodeError:
                continue  # not every ESC + code pair is assigned
            if len(char) == 1:
                # A character in both tables is sent with the cheaper basic code.
                costs[char] = min(cost, costs.get(char, cost))
    return costs


GSM_SEPTETS: dict[str, int] = _gsm_septets()
"""Every character GSM-7 can carry, with its cost in septets (1, or 2 for the extension
table)."""


@dataclass(frozen=True, slots=True)
class TextInfo:
    """How one text will be sent."""

    encoding: Encoding
    length: int
    """Septets for GSM-7, UTF-16 code units for UCS-2."""
    segments: int
    """SMS parts the text needs (an upper bound; see the module docstring)."""
    per_segment: int
    """Units one part holds for this text: 160/153 (GSM-7) or 70/67 (UCS-2)."""
    non_gsm_characters: tuple[str, ...]
    """The characters that force UCS-2, each once, in order of first appearance."""
    remaining: int
    """Units that still fit in the last segment before another one is needed."""

    @property
    def is_gsm(self) -> bool:
        return self.encoding is Encoding.GSM7


def _ucs2_units(char: str) -> int:
    # Astral characters are a surrogate pair in UTF-16. Counted from the code point
    # rather than by encoding so that a lone surrogate (possible in a str decoded from
    # JSON) counts 1 instead of raising.
    return 2 if ord(char) > 0xFFFF else 1


def _pack(costs: list[int], single: int, part: int) -> tuple[int, int, int]:
    """(segments, per_segment, remaining) for units of the given costs, never split."""
    total = sum(costs)
    if total <= single:
        return 1, single, single - total
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments, part, part - used


def analyze(text: str) -> TextInfo:
    """The encoding, length and segment count of ``text``; never raises."""
    non_gsm = tuple(dict.fromkeys(c for c in text if c not in GSM_SEPTETS))
    if non_gsm:
        encoding, single, part = Encoding.UCS2, UCS2_SINGLE, UCS2_PART
        costs = [_ucs2_units(c) for c in text]
    else:
        encoding, single, part = Encoding.GSM7, GSM_SINGLE, GSM_PART
        costs = [GSM_SEPTETS[c] for c in text]
    segments, per_segment, remaining = _pack(costs, single, part)
    return TextInfo(
        encoding=encoding,
        length=sum(costs),
        segments=segments,
        per_segment=per_segment,
        non_gsm_characters=non_gsm,
        remaining=remaining,
    )


def segment_count(text: str) -> int:
    """How many SMS parts ``text`` needs (an upper bound; 1 for the empty text)."""
    return analyze(text).segments


def is_gsm(text: str) -> bool:
    """Whether ``text`` can be sent as GSM-7."""
    return all(c in GSM_SEPTETS for c in text)


def estimate_cost(text: str, recipients: int, price_per_segment: Decimal) -> Decimal:
    """What sending ``text`` to ``recipients`` people costs at ``price_per_segment``.

    An estimate from our segment count, which may exceed the vendor's by one part on
    texts with escape or surrogate pairs at a part boundary.
    """
    if recipients < 0:
        raise ValueError("recipients cannot be negative")
    if isinstance(price_per_segment, float):
        # A float price carries binary rounding error into money: make the caller choose.
        raise TypeError("price_per_segment must be a Decimal (or int), not a float")
    return segment_count(text) * recipients * Decimal(price_per_segment)


# --- Transliteration ---------------------------------------------------------------

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_SPACES = "\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_SINGLE_QUOTES = "\u2018\u2019\u201a\u201b\u2032\u2035`\u00b4\u02bc\u02b9"
_DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u02ba"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d"
_BULLETS = "\u2022\u2023\u25e6\u2219\u25cf\u25aa\u25ab\u00b7\u30fb"

TRANSLITERATIONS: dict[str, str] = {
    **dict.fromkeys(_ZERO_WIDTH, ""),
    **dict.fromkeys(_SPACES, " "),
    **dict.fromkeys(_SINGLE_QUOTES, "'"),
    **dict.fromkeys(_DOUBLE_QUOTES, '"'),
    **dict.fromkeys(_DASHES, "-"),
    **dict.fromkeys(_BULLETS, "-"),
    "\u2026": "...",
    "\u2028": "\n",  # line separator
    "\u2029": "\n",  # paragraph separator
    "\u2039": "<",
    "\u203a": ">",
    "\u00a9": "(c)",
    "\u00ae": "(R)",
    "\u2122": "TM",
    "\u00d7": "x",
    "\u00f7": "/",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2260": "!=",
    "\u2190": "<-",
    "\u2192": "->",
    "\u2044": "/",  # fraction slash: NFKD writes ½ as 1 U+2044 2
}
"""Characters that force UCS-2 and a GSM stand-in for each (pasted word-processor text:
smart quotes, dashes, unusual spaces, bullets). Accented letters outside the GSM table
are handled by dropping their accents (``á`` → ``a``, ``ç`` → ``c``); see to_gsm()."""


@lru_cache(maxsize=4096)
def _gsm_stand_in(char: str) -> str:
    if char in GSM_SEPTETS:
        return char
    if char in TRANSLITERATIONS:
        return TRANSLITERATIONS[char]
    # Compatibility decomposition, then drop combining marks: á -> a, the ligature
    # U+FB01 -> fi, fullwidth letters -> ASCII, the ohm sign -> Greek capital omega.
    # Only used when every piece left is GSM.
    decomposed = "".join(
        TRANSLITERATIONS.get(c, c)
        for c in unicodedata.normalize("NFKD", char)
        if unicodedata.category(c) != "Mn"
    )
    if decomposed and is_gsm(decomposed):
        return decomposed
    return char


def to_gsm(text: str) -> str:
    """``text`` with the characters that have a GSM stand-in replaced by it.

    Characters with no stand-in (emoji, most non-Latin scripts) are left as they are,
    so analyze() still reports them and the text still goes as UCS-2. A GSM text is
    returned unchanged. Zero-width characters and soft hyphens are removed. The text is
    NFC-composed first, so that a letter typed as base + combining accent ("e" U+0301)
    becomes the single GSM letter "é"; combining marks left on their own are kept,
    since dropping them would garble scripts that stay UCS-2 anyway.
    """
    if is_gsm(text):
        return text
    return "".join(_gsm_stand_in(c) for c in unicodedata.normalize("NFC", text))
