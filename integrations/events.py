"""The events integrators can subscribe to, and what each one carries.

Payload builders take plain values (or any object with the named attributes), so the
apps that publish (contacts, campaigns, webhooks) import nothing of theirs here.
"""

from django.db import models


class EventType(models.TextChoices):
    MESSAGE_STATUS_CHANGED = (
        "message.status_changed",
        "message.status_changed: a delivery receipt moved a message",
    )
    MESSAGE_INBOUND = "message.inbound", "message.inbound: a text came in"
    CONTACT_OPTED_OUT = (
        "contact.opted_out",
        "contact.opted_out: a number stopped getting marketing",
    )
    CONTACT_OPTED_IN = (
        "contact.opted_in",
        "contact.opted_in: a number opted in again",
    )
    LINK_CLICKED = "link.clicked", "link.clicked: a recipient opened a tracked link"


def message_status_data(
    *,
    message_id: int,
    campaign_id: int | None,
    contact_id: int | None,
    to: str,
    provider: str,
    provider_message_id: str,
    status: str,
    previous_status: str,
    error_code: str,
    error_reason: str,
    segments: int | None,
    price,
    currency: str,
    changed_at,
) -> dict:
    return {
        "message": {
            "id": message_id,
            "campaign": campaign_id,
            "contact": contact_id,
            "to": to,
            "provider": provider,
            "provider_message_id": provider_message_id,
            "status": status,
            "previous_status": previous_status,
            "error_code": error_code,
            "error_reason": error_reason,
            "segments": segments,
            # A string, as vendors quote it: "0.0333" whatever the column's scale.
            "price": None if price is None else format(price.normalize(), "f"),
            "currency": currency,
            "status_changed_at": changed_at,
        }
    }


def inbound_data(inbound) -> dict:
    """``inbound``: a webhooks.models.InboundMessage."""
    return {
        "inbound_message": {
            "id": inbound.pk,
            "from": inbound.from_number,
            "to": inbound.to_number,
            "text": inbound.text,
            "keyword": inbound.keyword,
            "contact": inbound.contact_id,
            "provider": inbound.provider,
            "received_at": inbound.received_at,
            # The campaign message it answers (webhooks.services.answered_message).
            "in_reply_to": inbound.in_reply_to_id,
            "campaign": inbound.in_reply_to.campaign_id
            if inbound.in_reply_to_id
            else None,
        }
    }


def consent_data(
    *, phone: str, contact_id: int | None, source: str, at, text: str = ""
) -> dict:
    return {
        "phone": phone,
        "contact": contact_id,
        "source": source,
        "text": text,
        "at": at,
    }


def click_data(
    *,
    message_id: int,
    campaign_id: int | None,
    contact_id: int | None,
    to: str,
    url: str,
    agent: str,
    clicked_at,
) -> dict:
    return {
        "click": {
            "message": message_id,
            "campaign": campaign_id,
            "contact": contact_id,
            "to": to,
            "url": url,
            "agent": agent,
            "clicked_at": clicked_at,
        }
    }
