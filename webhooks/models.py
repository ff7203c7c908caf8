from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class InboundMessage(models.Model):
    """A text someone sent to one of our numbers."""

    class Keyword(models.TextChoices):
        NONE = "", "None"
        OPT_OUT = "opt_out", "Opt-out (STOP)"
        OPT_IN = "opt_in", "Opt-in (START)"
        HELP = "help", "Help"
        SIGNUP = "signup", "Sign-up keyword"
        CONFIRM = "confirm", "Sign-up confirmation (YES)"

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
    read_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When someone first opened its conversation; empty: unread. "
        "Keyword replies (STOP, START, HELP) are answered automatically and "
        "arrive read.",
    )
    in_reply_to = models.ForeignKey(
        "campaigns.Message",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_replies",
        help_text="The campaign message this answers: the last one sent to this "
        "number from the number it was sent to, within SMS_REPLY_ATTRIBUTION_HOURS.",
    )

    class Meta:
        constraints = [
            # A vendor retrying a callback must not store (or act on) a reply twice.
            models.UniqueConstraint(
                fields=["provider", "provider_message_id"],
                name="inbound_unique_provider_id",
                condition=~models.Q(provider_message_id=""),
            ),
        ]
        indexes = [
            models.Index(
                fields=["from_number", "received_at"], name="inbound_by_sender"
            ),
            # The inbox lists the newest first: without it every view sorts all
            # replies (joined to their contacts), 0.3 s for 50,000.
            models.Index(fields=["-received_at", "-id"], name="inbound_newest_first"),
            # The unread counts (admin index, inbox, conversations) read the few
            # unread rows, not the whole inbox.
            models.Index(
                fields=["contact"],
                name="inbound_unread",
                condition=models.Q(read_at__isnull=True),
            ),
        ]
        # Marketers read these as their inbox (the menu's name for them,
        # smscampaigns.admin_site); counts read "4 inbound replies".
        verbose_name = "inbound reply"
        verbose_name_plural = "inbound replies"
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_number}: {self.text[:40]}"

    @property
    def is_unread(self) -> bool:
        return self.read_at is None


class RejectedCallback(models.Model):
    """A callback that was refused as malformed, kept for an operator to inspect."""

    provider = models.CharField(max_length=32)
    kind = models.CharField(max_length=16)
    reason = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, blank=True)
    body = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind}: {self.reason}"


class SeenCallback(models.Model):
    """A signature or event a callback carried, remembered for its provider's freshness
    window so a replay (or a vendor's retry of what was applied) is not applied again.

    Only a digest is kept (no personal data): 128 bits of SHA-256 over the provider
    alias and the signature headers, or over the alias, URL and body.
    """

    digest = models.CharField(max_length=32, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.digest


class QueuedCallback(models.Model):
    """A callback that was verified, parsed and answered, waiting for the worker to
    apply it (``SMS_WEBHOOK_APPLY = "queued"``, see webhooks.queue).

    The vendor was told 200 once this row was committed, so it holds everything the
    apply needs: the parsed receipts or inbound texts, in the order they came.
    """

    provider = models.CharField(max_length=32)
    kind = models.CharField(max_length=16)
    items = models.JSONField(encoder=DjangoJSONEncoder)
    lane = models.PositiveSmallIntegerField(default=0)
    """Which applier takes it (webhooks.queue.callback_lane): by number, for order."""
    received_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    """Applies that failed on a database error (the row stays queued and is tried again)."""

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["lane", "id"], name="queuedcallback_lane")]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} #{self.pk}"
