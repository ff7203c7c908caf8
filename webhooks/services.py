"""Inbound messages: storing replies and honouring STOP / START / HELP."""

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import message_create_direct
from contacts.models import Contact, PendingSignup, Source
from contacts.phones import mask_phone, sender_key
from contacts.services import (
    contact_opt_in,
    contact_opt_out,
    signup_confirm,
    signup_expire,
    signup_pending,
    signup_request,
)
from providers.messages import InboundSms

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
    message = InboundMessage.objects.create(
        provider=provider,
        provider_message_id=inbound.provider_message_id[:64],
        from_number=sender[:32],
        to_number=inbound.to_number[:32],
        text=inbound.text,
        keyword=keyword,
        contact=contact,
        received_at=inbound.received_at or timezone.now(),
        payload=dict(inbound.payload),
    )
    consent = {
        "phone": sender,
        "source": Source.KEYWORD,
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
    # Out through the provider it came in on, from the number it was sent to.
    return message_create_direct(
        to=inbound.from_number,
        body=text,
        provider=inbound.provider,
        sender=inbound.to_number,
        kind=Message.Kind.REPLY,
        contact=inbound.contact,
        # Sent by the worker (or Celery): the vendor's webhook is answered now.
        background=True,
    )


def _normalize(number: str) -> str:
    return sender_key(number)
