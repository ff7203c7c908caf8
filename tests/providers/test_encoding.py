# ruff: noqa: RUF001  (look-alike characters are what these tests are about)
import math
from decimal import Decimal

import pytest
from hypothesis import example, given, strategies as st

from providers.encoding import (
    GSM_SEPTETS,
    TRANSLITERATIONS,
    Encoding,
    analyze,
    estimate_cost,
    is_gsm,
    segment_count,
    to_gsm,
)

GSM_CHARS = sorted(GSM_SEPTETS)
BASIC_GSM_CHARS = sorted(c for c, cost in GSM_SEPTETS.items() if cost == 1)
EXTENSION_CHARS = sorted(c for c, cost in GSM_SEPTETS.items() if cost == 2)

gsm_text = st.text(alphabet=GSM_CHARS)


# --- The alphabet, as gsm0338 has it ------------------------------------------------


def test_the_alphabet_has_the_basic_and_extension_tables_without_escape():
    assert len(BASIC_GSM_CHARS) == 127  # 128 codes, ESC excluded
    assert "".join(EXTENSION_CHARS) == "\f[\\]^{|}~€"
    assert "\x1b" not in GSM_SEPTETS


@pytest.mark.parametrize("char", ["@", "£", "Ç", "\n", "\r", "é", "ñ", "Δ", "¤", "_"])
def test_basic_table_characters_cost_one_septet(char):
    info = analyze(char)
    assert (info.encoding, info.length) == (Encoding.GSM7, 1)


@pytest.mark.parametrize(
    "char", ["ç", "`", "’", "“", "\u00a0", "\t", "á", "😀", "\x1b"]
)
def test_characters_outside_the_tables_force_ucs2(char):
    info = analyze(f"Hi {char}")
    assert info.encoding == Encoding.UCS2
    assert info.non_gsm_characters == (char,)


@given(gsm_text)
def test_septet_count_agrees_with_the_gsm0338_codec(text):
    assert analyze(text).length == len(text.encode("gsm03.38"))


# --- Lengths and segments: worked examples ------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "length", "segments"),
    [
        ("a" * 160, "gsm7", 160, 1),
        ("a" * 161, "gsm7", 161, 2),
        ("€" * 80, "gsm7", 160, 1),
        ("€" * 81, "gsm7", 162, 2),
        ("a" * 159 + "€", "gsm7", 161, 2),
        ("a" * 153 * 2, "gsm7", 306, 2),
        ("a" * (153 * 2 + 1), "gsm7", 307, 3),
        ("😀", "ucs2", 2, 1),
        ("ç" * 70, "ucs2", 70, 1),
        ("ç" * 71, "ucs2", 71, 2),
        ("ç" * 67 * 2, "ucs2", 134, 2),
        ("ç" * (67 * 2 + 1), "ucs2", 135, 3),
        ("😀" * 35, "ucs2", 70, 1),
        ("😀" * 36, "ucs2", 72, 2),
        ("a" * 69 + "ç", "ucs2", 70, 1),
        ("Line one\nLine two", "gsm7", 17, 1),
    ],
)
def test_length_and_segments(text, encoding, length, segments):
    info = analyze(text)
    assert (info.encoding, info.length, info.segments) == (encoding, length, segments)
    assert segment_count(text) == segments


def test_an_extension_character_is_not_split_across_segments():
    # 152 + 2 septets would fill part one with ESC only: the € moves to part two.
    text = "a" * 152 + "€" + "a" * 152
    info = analyze(text)
    assert info.length == 306  # ceil(306 / 153) would say 2
    assert info.segments == 3


def test_an_extension_character_that_fits_stays_in_its_segment():
    text = "a" * 151 + "€" + "a" * 153
    assert analyze(text).length == 306
    assert analyze(text).segments == 2


def test_a_surrogate_pair_is_not_split_across_segments():
    text = "ç" * 66 + "😀" + "ç" * 66
    info = analyze(text)
    assert info.length == 134  # ceil(134 / 67) would say 2
    assert info.segments == 3


def test_empty_text_is_one_gsm_segment():
    info = analyze("")
    assert (info.encoding, info.length, info.segments) == ("gsm7", 0, 1)
    assert info.remaining == 160


def test_per_segment_and_remaining_follow_the_part_size():
    single = analyze("a" * 150)
    assert (single.per_segment, single.remaining) == (160, 10)
    multi = analyze("a" * 200)
    assert (multi.per_segment, multi.remaining) == (153, 153 - 47)
    ucs2 = analyze("ç" * 80)
    assert (ucs2.per_segment, ucs2.remaining) == (67, 67 - 13)


def test_non_gsm_characters_are_unique_in_order_of_first_appearance():
    info = analyze("“Café” ça 😀 “x”")
    assert info.non_gsm_characters == ("“", "”", "ç", "😀")


def test_a_lone_surrogate_counts_one_unit_without_raising():
    info = analyze("\ud83d")
    assert (info.encoding, info.length, info.segments) == ("ucs2", 1, 1)


# --- Properties ---------------------------------------------------------------------


@given(st.text(), st.text(min_size=1))
@example("a" * 160, "ç")
@example("€" * 80, "a")
def test_appending_never_reduces_the_segment_count(text, suffix):
    assert segment_count(text + suffix) >= segment_count(text)


@given(st.text(alphabet=BASIC_GSM_CHARS, min_size=161, max_size=1000))
def test_long_gsm_text_needs_one_segment_per_153_septets(text):
    assert analyze(text).segments == math.ceil(len(text) / 153)


@given(st.text(alphabet=GSM_CHARS, min_size=161, max_size=1000))
def test_escape_pairs_cost_at_most_one_septet_per_part(text):
    septets = analyze(text).length
    assert (
        math.ceil(septets / 153) <= analyze(text).segments <= math.ceil(septets / 152)
    )


@given(st.text())
def test_text_is_ucs2_exactly_when_it_has_non_gsm_characters(text):
    info = analyze(text)
    assert (info.encoding == Encoding.UCS2) == bool(info.non_gsm_characters)
    assert set(info.non_gsm_characters) == {c for c in text if c not in GSM_SEPTETS}


@given(st.text(alphabet=st.characters(codec=None)))
def test_analyze_never_raises_and_reports_consistent_numbers(text):
    info = analyze(text)
    assert info.segments >= 1
    assert 0 <= info.remaining <= info.per_segment
    if info.encoding == Encoding.UCS2:
        assert info.length == len(text.encode("utf-16-be", "surrogatepass")) // 2


# --- Transliteration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It’s ‘fine’", "It's 'fine'"),
        ("“Sale” starts now", '"Sale" starts now'),
        ("9–5 — every day − almost", "9-5 - every day - almost"),
        ("Wait for it…", "Wait for it..."),
        ("50\u00a0%\u2009off\u202fnow\tok", "50 % off now ok"),
        ("• one\n· two", "- one\n- two"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("ça, garçon, ÇA", "ca, garcon, ÇA"),
        ("áíóúâêôãõ", "aiouaeoao"),
        ("e\u0301te\u0301", "été"),
        ("½ ﬁ Ｈｉ", "1/2 fi Hi"),
        ("© ™", "(c) TM"),
        ("Price: 5€ [50%] {x}", "Price: 5€ [50%] {x}"),
    ],
)
def test_to_gsm_replaces_characters_with_a_gsm_stand_in(text, expected):
    assert to_gsm(text) == expected


def test_to_gsm_keeps_characters_it_cannot_map_so_they_still_force_ucs2():
    result = to_gsm("Hi “Анна” 😀")
    assert result == 'Hi "Анна" 😀'
    assert analyze(result).non_gsm_characters == ("А", "н", "а", "😀")


@given(
    st.text(
        alphabet=[
            *TRANSLITERATIONS,
            *GSM_CHARS,
            *"áàâãäçéèêëíìîïóòôõöúùûüñýÿÁÉÍÓÚÂÊÎÔÛÃÕ",
        ]
    )
)
def test_to_gsm_of_mapped_characters_is_pure_gsm(text):
    assert is_gsm(to_gsm(text))


@given(gsm_text)
def test_to_gsm_leaves_gsm_text_unchanged(text):
    assert to_gsm(text) == text


@given(st.text(alphabet=st.characters(codec=None)))
def test_to_gsm_never_introduces_non_gsm_characters(text):
    import unicodedata

    before = set(unicodedata.normalize("NFC", text))
    assert set(analyze(to_gsm(text)).non_gsm_characters) <= before


# --- Cost ---------------------------------------------------------------------------


def test_estimate_cost_multiplies_segments_recipients_and_price():
    assert estimate_cost("a" * 161, 1000, Decimal("0.0075")) == Decimal("15.0000")
    assert estimate_cost("ç", 3, Decimal("0.05")) == Decimal("0.15")
    assert estimate_cost("hello", 0, Decimal("0.05")) == 0


def test_estimate_cost_refuses_float_prices_and_negative_recipients():
    with pytest.raises(TypeError):
        estimate_cost("hello", 1, 0.05)
    with pytest.raises(ValueError, match="negative"):
        estimate_cost("hello", -1, Decimal("0.05"))
