"""Reading STOP / START / HELP out of a reply."""

from django.conf import settings

from .models import InboundMessage

# Vendor keyword readings (Plivo MessageIntent) that count as a keyword.
_HINTS = {
    "optout": InboundMessage.Keyword.OPT_OUT,
    "optin": InboundMessage.Keyword.OPT_IN,
    "help": InboundMessage.Keyword.HELP,
}


def _normalize(text: str) -> str:
    # Whole-message match: "stop", " Stop. " and "STOP!" count; "please stop texting" does not
    # (CTIA asks for the keyword alone; a sentence is stored for a person to read).
    return " ".join(text.casefold().strip().strip(".!?").split())


def match_keyword(text: str, hint: str = "") -> str:
    """The keyword a reply means (an InboundMessage.Keyword value), or "" for none."""
    word = _normalize(text)
    if word:
        for keyword, words in (
            (InboundMessage.Keyword.OPT_OUT, settings.SMS_KEYWORDS_OPT_OUT),
            (InboundMessage.Keyword.OPT_IN, settings.SMS_KEYWORDS_OPT_IN),
            (InboundMessage.Keyword.HELP, settings.SMS_KEYWORDS_HELP),
        ):
            if word in {_normalize(w) for w in words}:
                return keyword
    return _HINTS.get(hint.casefold().strip(), InboundMessage.Keyword.NONE)
