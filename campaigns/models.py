import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import dateformat, timezone

from .frequency import validate_frequency_cap
from .segments import Segment  # a model of this app, kept beside its compiler
from .sending.windows import validate_send_window


def default_provider() -> str:
    return settings.SMS_DEFAULT_PROVIDER


def default_opt_out_footer() -> str:
    return settings.SMS_OPT_OUT_FOOTER


def validate_provider_alias(alias: str) -> None:
    if alias and alias not in settings.SMS_PROVIDERS:
        raise ValidationError(
            "%(alias)s is not a configured provider (choose one of: %(choices)s).",
            code="unknown_provider",
            params={"alias": alias, "choices": ", ".join(settings.SMS_PROVIDERS)},
        )


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200)
    body = models.TextField(
        help_text="The message. Placeholders such as {first_name} or {first_name|there} are filled in per contact."
    )
    opt_out_footer = models.CharField(
        max_length=160,
        blank=True,
        default=default_opt_out_footer,
        help_text="Added on a new line at the end of every message and counted in its "
        "length. Marketing needs one; clear it only for messages people asked for.",
    )
    lists = models.ManyToManyField(
        "contacts.ContactList", related_name="campaigns", blank=True
    )
    segments = models.ManyToManyField(
        Segment,
        related_name="campaigns",
        blank=True,
        help_text="Saved audiences; their contacts get the message too, once each.",
    )
    provider = models.CharField(
        max_length=32, default=default_provider, validators=[validate_provider_alias]
    )
    sender = models.CharField(
        max_length=32,
        blank=True,
        help_text="Sender number or ID; empty uses the provider's default.",
    )
    fallback_provider = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_provider_alias],
        help_text="Provider that takes over while the main one is failing; empty for none.",
    )
    send_window = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_send_window],
        help_text='Sending hours: messages go out only between start and end, in each recipient\'s local time, e.g. {"start": "09:00", "end": "20:00", "weekdays": [0, 1, 2, 3, 4]}.',
    )
    frequency_cap = models.CharField(
        max_length=32,
        blank=True,
        default="",
        # Raw INSERTs (bench set-ups, SQL imports) may leave it out.
        db_default="",
        validators=[validate_frequency_cap],
        help_text="At most so many marketing messages per person, e.g. “2 per 7 "
        "days”; people over it are skipped. Empty: the server's setting; “off”: "
        "no cap for this campaign.",
    )
    track_links = models.BooleanField(
        default=True,
        help_text="Replace the web links in the text by short links on this site "
        "that count who clicked (each recipient gets their own). Off: links are "
        "sent as written.",
    )
    status = models.CharField(max_length=16, choices=Status, default=Status.DRAFT)
    waiting_reason = models.CharField(
        max_length=255,
        blank=True,
        help_text="Why a sending campaign is not moving right now (provider down, outside the send window).",
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    send_by = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Send by: messages not sent by then are not sent at all (they end "
        '"expired"), and the providers are told to give up delivering at that time '
        "too. Empty: no deadline.",
    )
    schedule_time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="The time zone the schedule was picked in (IANA name, e.g. "
        "Europe/Paris), to show its time as it was chosen; empty: the server's.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def template_source(self) -> str:
        """The body with its opt-out footer: what is rendered for each recipient.

        The footer's braces are escaped: it is fixed text, never placeholders.
        """
        if not self.opt_out_footer:
            return self.body
        footer = self.opt_out_footer.replace("{", "{{").replace("}", "}}")
        return f"{self.body}\n{footer}"

    @property
    def scheduled_at_display(self) -> str:
        """The scheduled time on the clock of the zone it was picked in, e.g.
        "Tue 1 Dec 2026, 09:30 (Europe/Paris)"; the server's zone when none was
        recorded (the API leaves it empty), "" when not scheduled."""
        if self.scheduled_at is None:
            return ""
        name = self.schedule_time_zone or settings.TIME_ZONE
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            name = settings.TIME_ZONE
            zone = ZoneInfo(name)
        local = self.scheduled_at.astimezone(zone)
        return f"{dateformat.format(local, 'D j M Y, H:i')} ({name})"

    def variant_shares(self) -> list[tuple[int, int]]:
        """(variant number, percent of recipients), A (0: the campaign's own text)
        first; [] for a campaign with one text. A gets what the others leave."""
        others = list(
            self.variants.order_by("position").values_list("position", "share")
        )
        if not others:
            return []
        return [(0, 100 - sum(share for _, share in others)), *others]

    def variant_source(self, number: int) -> str:
        """What is rendered for recipients of variant ``number`` (0: the campaign's
        own body), footer included."""
        if not number:
            return self.template_source
        body = self.variants.get(position=number).body
        return Campaign(body=body, opt_out_footer=self.opt_out_footer).template_source

    def status_counts(self) -> dict[str, int]:
        """Messages per status, in one GROUP BY answered from the (campaign, status) index."""
        counts = dict.fromkeys(Message.Status.values, 0)
        rows = (
            Message.objects.filter(campaign=self)
            .order_by()
            .values_list("status")
            .annotate(n=models.Count("id"))
        )
        counts.update(dict(rows))
        return counts


class DispatchSession(models.Model):
    """One running dispatcher (a ``send_campaign``, a ``run_worker`` slice, a Celery
    task): the messages it claims name it, so when it dies its claims are settled at
    once instead of after the lease (see campaigns.sending.liveness).

    It proves it is alive by a heartbeat and, on PostgreSQL, by holding a
    session-level advisory lock that the server releases the moment the process or
    its connection dies.
    """

    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    beat_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"dispatcher #{self.pk} (pid {self.pid} on {self.host})"


class Message(models.Model):
    """One text to one recipient of a campaign: the outbox row and its delivery record."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SUBMITTED = "submitted", "Submitted to provider"
        SENT = "sent", "Sent to carrier"
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Undelivered"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        UNCONFIRMED = "unconfirmed", "Sent, delivery never confirmed"
        UNKNOWN = "unknown", "Unknown (in flight at a crash)"

    class SkipReason(models.TextChoices):
        """``error_code`` of a message never handed to a carrier (its status is
        "failed"): it counts as skipped, not as a delivery failure, and "Retry
        failed" leaves it alone."""

        OPTED_OUT = "opted_out", "Not sent: the recipient had opted out"
        CANCELLED = "cancelled", "Not sent: the campaign was cancelled"
        EXPIRED = "expired", "Not sent: expired, the campaign's send-by time passed"
        FREQUENCY_CAP = (
            "frequency_cap",
            "Not sent: the recipient had reached the frequency cap",
        )

    #: Not handed to the provider yet: waiting in the queue, or being handed now. A
    #: campaign with none left has nothing more to send.
    IN_FLIGHT = frozenset({Status.QUEUED, Status.SENDING})
    #: Statuses only a provider's or a carrier's answer gives: the message was
    #: accepted, whatever happened next.
    ACCEPTED = frozenset(
        {
            Status.SUBMITTED,
            Status.SENT,
            Status.DELIVERED,
            Status.UNDELIVERED,
            Status.EXPIRED,
            Status.UNCONFIRMED,
        }
    )
    #: Outcomes of messages that did not get through (skipped ones included: they
    #: are "failed" without reaching a carrier, see SkipReason).
    FAILURES = frozenset(
        {Status.FAILED, Status.UNDELIVERED, Status.REJECTED, Status.EXPIRED}
    )
    #: Of the failures, the carrier's final answers about a message that went out:
    #: never queued again by "Retry failed" (it requeues status "failed" only).
    FINAL_FAILURES = FAILURES - {Status.FAILED}
    #: Final outcomes: a message in one of these never changes again.
    FINAL = FAILURES | {Status.DELIVERED, Status.UNCONFIRMED}
    #: Whose status may still change: not yet sent, or sent and waiting for a
    #: delivery receipt (or left unknown by a crash, which a receipt may settle).
    UNSETTLED = IN_FLIGHT | {Status.SUBMITTED, Status.SENT, Status.UNKNOWN}

    # How far along a status is. A status update may only move a message to a
    # higher rank, so a late "sent" receipt never overwrites "delivered" and a
    # duplicate receipt changes nothing. Final outcomes share the top rank.
    RANK = {
        Status.QUEUED: 0,
        Status.SENDING: 1,
        Status.UNKNOWN: 2,
        Status.SUBMITTED: 3,
        Status.SENT: 4,
        Status.DELIVERED: 9,
        Status.UNDELIVERED: 9,
        Status.FAILED: 9,
        Status.REJECTED: 9,
        Status.EXPIRED: 9,
        # The vendor's last word: the carrier took it and never said more.
        Status.UNCONFIRMED: 9,
    }

    class Encoding(models.TextChoices):
        GSM7 = "gsm7", "GSM-7"
        UCS2 = "ucs2", "UCS-2"

    class Kind(models.TextChoices):
        CAMPAIGN = "campaign", "Campaign"
        # Answers to an inbound message: keyword confirmations and conversation replies.
        REPLY = "reply", "Reply"
        TEST = "test", "Test send"

    kind = models.CharField(max_length=8, choices=Kind, default=Kind.CAMPAIGN)
    # No index of its own: the (campaign, status, id) index and the unique
    # (campaign, contact) index both start with it, and every index costs launch time.
    # No constraint in the database either, nor on contact: PostgreSQL checks a
    # foreign key row by row (an index probe and a lock on the row it names), 2.4 s
    # and 4 s of a launch of a million messages. Deleting is Django's (CASCADE and
    # SET_NULL run in the collector, not in the database), and what the constraints
    # caught, a launch racing a deletion, is locked out: campaigns.writes.
    # campaign_delete locks the campaign row a launch holds, and contacts are deleted
    # under contacts.services.message_contacts_lock, which message writes share.
    campaign = models.ForeignKey(
        Campaign,
        models.CASCADE,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    contact = models.ForeignKey(
        "contacts.Contact",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        db_constraint=False,
    )
    to = models.CharField(max_length=16, help_text="Destination in E.164.")
    body = models.TextField(help_text="The text as sent, placeholders filled in.")
    provider = models.CharField(max_length=32)
    sender = models.CharField(
        max_length=32,
        blank=True,
        help_text="Sender number or ID; empty: the provider's default.",
    )
    provider_message_id = models.CharField(max_length=64, blank=True, default="")
    client_reference = models.UUIDField(default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    error_code = models.CharField(max_length=32, blank=True)
    error_reason = models.CharField(max_length=255, blank=True)
    encoding = models.CharField(max_length=4, choices=Encoding, blank=True)
    segments = models.PositiveSmallIntegerField(default=1)
    price = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.ForeignKey(
        DispatchSession,
        models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        # Written by every claim: no constraint to check and no index to maintain.
        # Recovery reads it only on the few rows "sending" (campaign, status index).
        db_constraint=False,
        db_index=False,
        help_text="The dispatcher that claimed this message (while it is sending).",
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    handed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When this attempt was handed to the provider (empty: claimed, not yet sent).",
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    time_zone = models.CharField(
        max_length=400,
        blank=True,
        help_text="The recipient's time zone(s), for send windows: one, or several "
        "space-separated when the number may be in any of them.",
    )
    variant = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Which of the campaign's texts it got: 0 for A (the campaign's "
        "own), 1 for B, 2 for C, 3 for D; empty for a campaign with one text.",
    )
    # Raw INSERTs (launch) leave both out: the database fills them in.
    clicks = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="Clicks on this message's tracked links (link previews not counted).",
    )
    first_clicked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the recipient first clicked a tracked link of this message.",
    )

    class Meta:
        constraints = [
            # A campaign texts each contact once; replies and test sends are not bound by it.
            models.UniqueConstraint(
                fields=["campaign", "contact"],
                name="message_one_per_contact",
                condition=models.Q(kind="campaign"),
            ),
            models.UniqueConstraint(
                fields=["client_reference"], name="message_unique_client_reference"
            ),
        ]
        indexes = [
            # Claims (queued messages of a campaign in id order) and per-status counts.
            models.Index(
                fields=["campaign", "status", "id"], name="message_campaign_status"
            ),
            # Delivery receipts look messages up by the provider's id.
            models.Index(
                fields=["provider_message_id"],
                name="message_provider_message_id",
                condition=~models.Q(provider_message_id=""),
            ),
            # Recovery of dead senders' claims (every scheduler tick, across all
            # campaigns and direct messages) reads only the few rows in flight; without
            # it each tick scanned every message ever sent.
            models.Index(
                fields=["status_changed_at"],
                name="message_sending",
                condition=models.Q(status="sending"),
            ),
            # run_worker's DirectSender looks for due replies and test sends four
            # times a second: the few queued ones, not the whole table.
            models.Index(
                fields=["id"],
                name="message_direct_queued",
                condition=models.Q(kind__in=["reply", "test"], status="queued"),
            ),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return (
            f"{self.campaign_id or self.get_kind_display()}→{self.to} ({self.status})"
        )

    @classmethod
    def statuses_below(cls, status: str) -> list[str]:
        """The statuses a message may move from to reach ``status``."""
        rank = cls.RANK[status]
        return [s for s, r in cls.RANK.items() if r < rank]


class DeliveryEvent(models.Model):
    """A provider's status callback, kept as received.

    A receipt can arrive before the send result that names its provider id was
    recorded; it is then stored without a message and applied once the message is
    known (``applied_at`` stays empty until then).
    """

    message = models.ForeignKey(
        "Message",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="delivery_events",
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
    resend = models.BooleanField(
        default=False,
        # Raw INSERTs (the receipts' one-statement path) leave it out.
        db_default=False,
        help_text="The provider said the message never left it, for a reason that "
        "may pass: it is sent again (within the attempt limit).",
    )
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


class CampaignSnapshot(models.Model):
    """A campaign's progress at one moment (see campaigns.stats.campaign_snapshot_take).

    The campaign page and changelist read the latest snapshot instead of counting a
    million messages on every view, and the series of snapshots is the chart of the
    campaign's delivery over time.
    """

    campaign = models.ForeignKey(
        Campaign, models.CASCADE, related_name="snapshots", db_index=False
    )
    taken_at = models.DateTimeField(default=timezone.now)
    counts = models.JSONField(default=dict, help_text="Messages per status.")
    delivery_rate = models.FloatField(null=True, blank=True)
    opt_outs = models.PositiveIntegerField(default=0)
    replied_stop = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Those of opt_outs who replied STOP; empty in snapshots taken "
        "before it was counted apart.",
    )
    skipped_opted_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=5, default=0)
    currency = models.CharField(max_length=3, blank=True)
    cost_by_currency = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "The cost in every currency messages were priced in, amounts as strings: "
            '{"USD": "1.2345", "EUR": "0.50"}. Empty in snapshots taken before it '
            "existed (cost and currency hold the main currency only)."
        ),
    )
    failure_reasons = models.JSONField(
        default=list,
        blank=True,
        help_text='The most frequent failures: [{"code": …, "reason": …, "count": …}].',
    )
    unique_clicks = models.PositiveIntegerField(
        default=0, help_text="Recipients who clicked a tracked link."
    )
    variants = models.JSONField(
        default=dict,
        blank=True,
        help_text='Figures per text variant: {"A": {"messages", "delivered", '
        '"unique_clicks", "opt_outs"}, …}; empty for a campaign with one text.',
    )
    clicks = models.PositiveIntegerField(
        default=0, help_text="Clicks on tracked links, repeated ones included."
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["campaign", "-taken_at"], name="campaignsnapshot_latest"
            )
        ]
        ordering = ["-taken_at", "-id"]
        get_latest_by = "taken_at"

    def __str__(self) -> str:
        return f"{self.campaign_id} at {self.taken_at:%Y-%m-%d %H:%M:%S}"


class ThrottleState(models.Model):
    """Shared state of one rate limiter or circuit breaker (see campaigns.sending.pacing).

    Used when no Redis is configured, so workers on one database still share one
    schedule per provider.
    """

    key = models.CharField(max_length=200)
    tat = models.FloatField(
        default=0.0,
        help_text="Theoretical arrival time (Unix seconds) of the schedule.",
    )
    state = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key"], name="throttlestate_key_unique")
        ]

    def __str__(self) -> str:
        return self.key


#: Variant numbers as marketers name them.
VARIANT_LABELS = "ABCD"


def variant_label(number: int | None) -> str:
    return "" if number is None else VARIANT_LABELS[number]


class CampaignVariant(models.Model):
    """Another text of a campaign, sent to a share of its recipients picked at
    random (an A/B test). The campaign's own body is variant A and gets the share
    the others leave; B, C and D are rows (``position`` 1 to 3)."""

    campaign = models.ForeignKey(
        Campaign, models.CASCADE, related_name="variants", db_index=False
    )
    position = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(3)]
    )
    body = models.TextField(
        help_text="This variant's message; placeholders as in the main text."
    )
    share = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(98)],
        help_text="Percent of the recipients who get this text.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "position"], name="campaignvariant_position"
            ),
        ]
        ordering = ["campaign", "position"]

    def __str__(self) -> str:
        return f"Variant {self.label}"

    @property
    def label(self) -> str:
        return variant_label(self.position)


class TrackedLink(models.Model):
    """A web link found in a campaign's text, sent as a short link per recipient
    (see campaigns.links): the short link's code names the message and the link's
    ``position`` in the campaign, so no row is stored per message."""

    campaign = models.ForeignKey(
        Campaign, models.CASCADE, related_name="tracked_links", db_index=False
    )
    position = models.PositiveSmallIntegerField()
    url = models.TextField(help_text="Where the short link leads.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "position"], name="trackedlink_position"
            ),
        ]
        ordering = ["campaign", "position"]

    def __str__(self) -> str:
        return self.url


class LinkClick(models.Model):
    """One request for a short link: a person's click, or a link preview fetched by
    an app or a crawler (``is_bot``), which is kept but not counted."""

    class Agent(models.TextChoices):
        MOBILE = "mobile", "Mobile browser"
        DESKTOP = "desktop", "Desktop browser"
        PREVIEW = "preview", "Link preview (app or crawler)"
        HEAD = "head", "HEAD request"
        OTHER = "other", "Other"

    message = models.ForeignKey(
        Message, models.CASCADE, related_name="link_clicks", db_index=False
    )
    link = models.ForeignKey(
        TrackedLink, models.CASCADE, related_name="clicks", db_index=False
    )
    clicked_at = models.DateTimeField(default=timezone.now)
    agent = models.CharField(max_length=8, choices=Agent, default=Agent.OTHER)
    is_bot = models.BooleanField(default=False)

    class Meta:
        indexes = [
            # A message's clicks (its page, deletes cascading from it).
            models.Index(fields=["message"], name="linkclick_message"),
            # A campaign's clicks since a moment: "has anyone clicked since the
            # last snapshot?" and clicks over time, through its few links.
            models.Index(fields=["link", "clicked_at"], name="linkclick_link_time"),
        ]
        ordering = ["-clicked_at", "-id"]

    def __str__(self) -> str:
        return f"{self.link_id} by message {self.message_id} at {self.clicked_at}"
