"""Reading STOP / START / HELP, sign-up keywords and their YES out of a reply."""

from django.conf import settings

from contacts.models import SignupKeyword, normalize_signup_keyword

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


def is_confirmation(text: str) -> bool:
    """Whether a reply is a YES to a sign-up question (settings.SMS_KEYWORDS_CONFIRM)."""
    word = _normalize(text)
    return bool(word) and word in {_normalize(w) for w in settings.SMS_KEYWORDS_CONFIRM}


def reserved_meaning(word: str) -> str:
    """What ``word`` already means to every sender ("STOP (opt-out)", "YES (sign-up
    confirmation)"), or "" when it is free to be a sign-up keyword."""
    keyword = match_keyword(word)
    if keyword:
        return InboundMessage.Keyword(keyword).label
    if is_confirmation(word):
        return InboundMessage.Keyword.CONFIRM.label
    return ""


def match_signup_keyword(text: str) -> SignupKeyword | None:
    """The sign-up keyword a reply is (the whole reply, any case), with its list."""
    word = _normalize(text)
    if not word or " " in word or len(word) > 20:
        return None
    return (
        SignupKeyword.objects.select_related("contact_list")
        .filter(keyword=normalize_signup_keyword(word))
        .first()
    )
