"""Event webhooks: integrators' endpoints, the event outbox and its deliveries."""

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from .events import EventType

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    """A URL an integrator wants events POSTed to, signed with its secret."""

    url = models.URLField(max_length=500, help_text="Where events are POSTed.")
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(
        default=list,
        help_text="The event types sent to it: " + ", ".join(EventType.values) + ".",
    )
    # Kept to sign each delivery (an HMAC needs the key itself); shown once, when
    # the endpoint is created.
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    is_active = models.BooleanField(
        "active",
        default=True,
        help_text="Inactive endpoints get no new events; what is waiting stays "
        "until it is active again.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_by_key = models.ForeignKey(
        "smscampaigns.ApiKey",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # The deliverer's state: one worker at a time holds the lease of an endpoint,
    # so at most one delivery is in flight to it and they go out in order.
    leased_until = models.DateTimeField(null=True, blank=True, editable=False)
    lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    failing_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Since when every attempt failed (empty: the last one succeeded).",
    )
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    retry_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="While failing: when the oldest waiting event is tried again.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url


class Event(models.Model):
    """One thing that happened, as sent: the outbox row, written in the same
    transaction as the change it reports."""

    uid = models.UUIDField(default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=40, choices=EventType)
    body = models.TextField(help_text="The JSON POSTed, byte for byte.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["uid"], name="event_unique_uid")]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"

    @property
    def public_id(self) -> str:
        return f"evt_{self.uid.hex}"


class Delivery(models.Model):
    """One event for one endpoint: waiting, delivered, or given up on."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    endpoint = models.ForeignKey(
        WebhookEndpoint, models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The HTTP status of the last attempt."
    )
    error = models.CharField(
        max_length=255, blank=True, help_text="Why the last attempt failed."
    )
    resend_of = models.ForeignKey(
        "self",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The delivery this one sends again (from the admin).",
    )

    class Meta:
        indexes = [
            # The deliverer's queue: an endpoint's waiting deliveries in order.
            models.Index(
                fields=["endpoint", "id"],
                name="delivery_pending",
                condition=models.Q(status="pending"),
            ),
        ]
        ordering = ["-id"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"
