import pytest

from webhooks.keywords import match_keyword

OPT_OUT = [
    "STOP",
    "STOPALL",
    "STOP ALL",
    "UNSUBSCRIBE",
    "UNSUB",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
    "OPT-OUT",
    "REMOVE",
]


@pytest.mark.parametrize("word", OPT_OUT)
def test_every_ctia_opt_out_word_in_any_case(word):
    assert match_keyword(word) == "opt_out"
    assert match_keyword(f"  {word.lower()} ") == "opt_out"
    assert match_keyword(word.title() + ".") == "opt_out"


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("START", "opt_in"),
        ("unstop", "opt_in"),
        ("Yes", "opt_in"),
        ("resume", "opt_in"),
        ("HELP", "help"),
        ("info", "help"),
        ("Stop  all", "opt_out"),
    ],
)
def test_opt_in_and_help_words(text, keyword):
    assert match_keyword(text) == keyword


@pytest.mark.parametrize(
    "text",
    [
        "please stop texting me",
        "stopping by later",
        "",
        "   ",
        "HELP ME PLEASE",
        "Thanks!",
    ],
)
def test_a_sentence_is_not_a_keyword(text):
    assert match_keyword(text) == ""


def test_vendor_intent_counts_when_the_text_does_not_match():
    assert match_keyword("Arrêtez", hint="optout") == "opt_out"
    assert match_keyword("hello", hint="OPTIN") == "opt_in"
    # A first-word reading (Vonage sms.keyword) is not an intent.
    assert match_keyword("stop by tomorrow", hint="STOP") == ""


def test_keyword_lists_are_settings(settings):
    settings.SMS_KEYWORDS_OPT_OUT = ["BASTA"]
    assert match_keyword("basta") == "opt_out"
    assert match_keyword("STOP") == ""
