"""Inbound messages: storing replies and honouring STOP / START / HELP."""

import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import message_create_direct
from contacts.models import Contact, PendingSignup, Source
from contacts.phones import mask_phone, sender_key
from contacts.services import (
    blocked_numbers,
    contact_opt_in,
    contact_opt_out,
    signup_confirm,
    signup_expire,
    signup_pending,
    signup_request,
)
from integrations.events import EventType, inbound_data
from integrations.services import publish
from providers import get_provider, provider_problem
from providers.messages import InboundSms
from smscampaigns.storable import unstorable_text

from .keywords import is_confirmation, match_keyword, match_signup_keyword
from .models import InboundMessage

logger = logging.getLogger(__name__)

# Never answer the same number with the same automatic text more than once in this
# window: a confused (or automated) sender repeating STOP gets one confirmation.
REPLY_WINDOW = timedelta(minutes=5)


@transaction.atomic
def inbound_message_record(*, provider: str, inbound: InboundSms) -> InboundMessage:
    """Store a reply and act on its keyword. A vendor's retry of the same message
    (same provider id) is recognised and changes nothing."""
    if inbound.provider_message_id:
        existing = InboundMessage.objects.filter(
            provider=provider, provider_message_id=inbound.provider_message_id
        ).first()
        if existing is not None:
            return existing
    sender = _normalize(inbound.from_number)
    keyword = match_keyword(inbound.text, inbound.keyword_hint)
    # STOP and HELP come first, whatever is pending; a YES answers a waiting sign-up
    # before it means START; a sign-up keyword is only ever read in what is left.
    pending = signup_keyword = None
    if keyword not in (
        InboundMessage.Keyword.OPT_OUT,
        InboundMessage.Keyword.HELP,
    ) and is_confirmation(inbound.text):
        pending = signup_pending(phone=sender)
        if pending is not None:
            keyword = InboundMessage.Keyword.CONFIRM
    if not keyword:
        signup_keyword = match_signup_keyword(inbound.text)
        if signup_keyword is not None:
            keyword = InboundMessage.Keyword.SIGNUP
    contact = Contact.objects.filter(phone=sender).first()
    received_at = inbound.received_at or timezone.now()
    message = InboundMessage.objects.create(
        provider=provider,
        provider_message_id=inbound.provider_message_id[:64],
        from_number=sender[:32],
        to_number=inbound.to_number[:32],
        text=inbound.text,
        keyword=keyword,
        contact=contact,
        received_at=received_at,
        # A keyword is answered for the marketer: nothing waits for them to read.
        read_at=timezone.now() if keyword else None,
        in_reply_to=answered_message(
            contact=contact,
            sender=sender,
            our_number=inbound.to_number,
            provider=provider,
            received_at=received_at,
        ),
        payload=dict(inbound.payload),
    )
    publish(EventType.MESSAGE_INBOUND, lambda: inbound_data(message))
    consent = {
        "phone": sender,
        # The vendor's reading of a text that is no keyword here (Plivo's
        # MessageIntent): its signal, not a STOP reply.
        "source": Source.KEYWORD
        if not keyword or match_keyword(inbound.text) == keyword
        else Source.PROVIDER,
        "text": inbound.text,
        "provider": provider,
    }
    if keyword == InboundMessage.Keyword.OPT_OUT:
        contact_opt_out(**consent)
        _reply(message, settings.SMS_REPLY_OPT_OUT)
    elif keyword == InboundMessage.Keyword.OPT_IN:
        contact_opt_in(**consent)
        _reply(message, settings.SMS_REPLY_OPT_IN)
    elif keyword == InboundMessage.Keyword.HELP:
        _reply(message, settings.SMS_REPLY_HELP)
    elif keyword == InboundMessage.Keyword.CONFIRM:
        _signup_confirm(message, pending)
    elif keyword == InboundMessage.Keyword.SIGNUP:
        pending, repeat = signup_request(
            phone=sender,
            signup_keyword=signup_keyword,
            text=inbound.text,
            provider=provider,
        )
        if pending is not None:
            # A keyword repeated while its question waits is asked once per reply
            # window; a new sign-up (after a STOP, say) is always asked.
            _send_reply(message, pending.question, once_in_window=repeat)
    if keyword:
        logger.info("%s keyword %s from %s", provider, keyword, mask_phone(sender))
    return message


def _signup_confirm(message: InboundMessage, pending: PendingSignup) -> None:
    signup_keyword = pending.signup_keyword
    if pending.expired:
        # Told once that it came too late (a second late YES finds nothing waiting
        # and means what YES means without a sign-up).
        if signup_expire(pending=pending):
            _send_reply(
                message,
                signup_keyword.render(settings.SMS_REPLY_SIGNUP_EXPIRED),
            )
        return
    confirmed = signup_confirm(
        pending=pending, text=message.text, provider=message.provider
    )
    if confirmed is None:
        return  # another request confirmed or cancelled it first
    contact, _ = confirmed
    message.contact = contact
    message.save(update_fields=["contact"])
    # Once per confirmed sign-up (the confirmation claimed it), not once per window:
    # a number may leave with STOP and join again within minutes.
    _send_reply(
        message, signup_keyword.render(signup_keyword.welcome), once_in_window=False
    )


def answered_message(
    *,
    contact: Contact | None,
    sender: str,
    our_number: str,
    provider: str,
    received_at: datetime,
) -> Message | None:
    """The campaign message a reply from ``sender`` to ``our_number`` answers: the
    last one sent to that number from that number within
    SMS_REPLY_ATTRIBUTION_HOURS before it came. A message sent from the provider's
    default number (no sender of its own) counts when the reply came in through
    the same provider. None when there is none (or no contact: campaign messages
    are found through their contact, whose index makes it one short lookup)."""
    hours = settings.SMS_REPLY_ATTRIBUTION_HOURS
    if contact is None or hours <= 0:
        return None
    ours = sender_key(our_number) if our_number else ""
    recent = (
        Message.objects.filter(
            contact=contact,
            to=sender,
            kind=Message.Kind.CAMPAIGN,
            submitted_at__gte=received_at - timedelta(hours=hours),
            submitted_at__lte=received_at,
        )
        .order_by("-submitted_at", "-id")
        .only("pk", "sender", "provider", "campaign_id")
    )
    # A contact gets a few campaign messages a day at most: the newest few are read.
    for message in recent[:50]:
        if message.sender:
            if ours and sender_key(message.sender) == ours:
                return message
        elif message.provider == provider:
            return message
    return None


# Digits (a number or a short code) can be answered; an alphanumeric sender ID
# cannot receive texts, and a longer string is no number.
_REPLYABLE = re.compile(r"\+?\d{3,15}")


def _reply(inbound: InboundMessage, template: str) -> Message | None:
    text = template.format(
        program=settings.SMS_PROGRAM_NAME, help_contact=settings.SMS_HELP_CONTACT
    )
    return _send_reply(inbound, text)


def _send_reply(
    inbound: InboundMessage, text: str, *, once_in_window: bool = True
) -> Message | None:
    if not _REPLYABLE.fullmatch(inbound.from_number):
        logger.info(
            "%s: no automatic reply to sender %s",
            inbound.provider,
            mask_phone(inbound.from_number),
        )
        return None
    recent = Message.objects.filter(
        kind=Message.Kind.REPLY,
        to=inbound.from_number,
        body=text,
        queued_at__gte=timezone.now() - REPLY_WINDOW,
    )
    if once_in_window and recent.exists():
        return None
    return _answer(inbound, text)


def _answer(inbound: InboundMessage, text: str) -> Message:
    """Queue ``text`` to the sender of ``inbound``: the one way replies leave."""
    # Out through the provider it came in on, from the number it was sent to.
    return message_create_direct(
        to=inbound.from_number,
        body=text,
        provider=inbound.provider,
        sender=inbound.to_number,
        kind=Message.Kind.REPLY,
        contact=inbound.contact,
        # Sent by the worker (or Celery): neither the vendor's webhook nor the
        # marketer waits for the vendor that sends it.
        background=True,
    )


class ReplyRefused(ValueError):
    """A conversation reply that may not be sent; the message says why, for the
    person who wrote it."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


#: Longest reply accepted, whatever the provider: ten concatenated GSM-7 segments.
MAX_REPLY_LENGTH = 1600


@transaction.atomic
def conversation_reply(*, contact: Contact, text: str) -> Message:
    """Answer ``contact`` with ``text``: queued as a reply message from the number
    they last wrote to, through the provider their text came in on, and sent by the
    worker. Their unread messages are marked read (answering means they were read).

    Raises :class:`ReplyRefused` when the text is empty, too long or holds what
    cannot be stored, when the contact never wrote to us (there is no number to
    answer from), when they opted out or are suppressed, or when the provider
    cannot be used.
    """
    text = text.strip()
    if not text:
        raise ReplyRefused("Write a reply first: the text is empty.", code="blank")
    if len(text) > MAX_REPLY_LENGTH:
        raise ReplyRefused(
            f"The reply is {len(text)} characters; at most {MAX_REPLY_LENGTH} "
            "are accepted.",
            code="max_length",
        )
    if problem := unstorable_text(text):
        raise ReplyRefused(f"The reply contains {problem}.", code="invalid")
    # Locked: two replies at once are both sent, but never past an opt-out
    # recorded in between (contact_opt_out updates this row).
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    if blocked_numbers([contact.phone]):
        raise ReplyRefused(
            f"{contact.phone} opted out or is suppressed: no reply can be sent "
            "to them until they text START.",
            code="opted_out",
        )
    last = (
        InboundMessage.objects.filter(contact=contact, from_number=contact.phone)
        .order_by("-received_at", "-id")
        .first()
    )
    if last is None:
        raise ReplyRefused(
            f"{contact.phone} has not written to any of your numbers: there is no "
            "conversation to answer.",
            code="no_conversation",
        )
    if problem := provider_problem(last.provider):
        raise ReplyRefused(
            f"The reply cannot go out through {last.provider!r}, the provider their "
            f"message came in on: {problem}.",
            code="provider_unusable",
        )
    if problem := get_provider(last.provider).text_problem(text):
        raise ReplyRefused(problem, code="max_length")
    message = _answer(last, text)
    conversation_mark_read(contact=contact)
    return message


def conversation_mark_read(*, contact: Contact) -> int:
    """Mark the contact's unread messages read; returns how many were unread."""
    return InboundMessage.objects.filter(contact=contact, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def _normalize(number: str) -> str:
    return sender_key(number)
