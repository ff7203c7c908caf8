"""Inbound messages: storing replies and honouring STOP / START / HELP."""

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import message_create_direct
from contacts.models import Contact, Source
from contacts.phones import mask_phone, sender_key
from contacts.services import contact_opt_in, contact_opt_out
from providers.messages import InboundSms

from .keywords import match_keyword
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
    if keyword:
        logger.info("%s keyword %s from %s", provider, keyword, mask_phone(sender))
    return message


# Digits (a number or a short code) can be answered; an alphanumeric sender ID
# cannot receive texts, and a longer string is no number.
_REPLYABLE = re.compile(r"\+?\d{3,15}")


def _reply(inbound: InboundMessage, template: str) -> Message | None:
    if not _REPLYABLE.fullmatch(inbound.from_number):
        logger.info(
            "%s: no automatic reply to sender %s",
            inbound.provider,
            mask_phone(inbound.from_number),
        )
        return None
    text = template.format(
        program=settings.SMS_PROGRAM_NAME, help_contact=settings.SMS_HELP_CONTACT
    )
    recent = Message.objects.filter(
        kind=Message.Kind.REPLY,
        to=inbound.from_number,
        body=text,
        queued_at__gte=timezone.now() - REPLY_WINDOW,
    )
    if recent.exists():
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
