from django.db import models
from django.utils import timezone

from campaigns.models import Message


class DeliveryEvent(models.Model):
    """A provider's status callback, kept as received.

    A receipt can arrive before the send result that names its provider id was
    recorded; it is then stored without a message and applied once the message is
    known (``applied_at`` stays empty until then).
    """

    message = models.ForeignKey(
        Message, models.SET_NULL, null=True, blank=True, related_name="delivery_events"
    )
    provider = models.CharField(max_length=32)
    provider_message_id = models.CharField(max_length=64, blank=True)
    recipient = models.CharField(max_length=16, blank=True)
    client_reference = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Message.Status, blank=True)
    raw_status = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_reason = models.CharField(max_length=255, blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    segments = models.PositiveSmallIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            # Receipts still waiting for their message, by the id they name.
            models.Index(
                fields=["provider", "provider_message_id"],
                name="deliveryevent_unmatched",
                condition=models.Q(message__isnull=True),
            ),
        ]
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.provider} {self.provider_message_id} {self.raw_status}"


class InboundMessage(models.Model):
    """A text someone sent to one of our numbers."""

    class Keyword(models.TextChoices):
        NONE = "", "None"
        OPT_OUT = "opt_out", "Opt-out (STOP)"
        OPT_IN = "opt_in", "Opt-in (START)"
        HELP = "help", "Help"

    provider = models.CharField(max_length=32)
    provider_message_id = models.CharField(max_length=64, blank=True)
    from_number = models.CharField(max_length=32)
    to_number = models.CharField(max_length=32)
    text = models.TextField(blank=True)
    keyword = models.CharField(
        max_length=8, choices=Keyword, blank=True, default=Keyword.NONE
    )
    contact = models.ForeignKey(
        "contacts.Contact",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_messages",
    )
    received_at = models.DateTimeField(default=timezone.now)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["from_number", "received_at"], name="inbound_by_sender"
            ),
        ]
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_number}: {self.text[:40]}"
