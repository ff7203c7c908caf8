import hashlib
import secrets
from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.utils import timezone

KEY_PREFIX = "sk_"


class Scope(models.TextChoices):
    """What an API key may do; chosen when the key is created."""

    READ = "read", "Read: contacts, lists, campaigns, messages"
    WRITE_CONTACTS = (
        "write_contacts",
        "Write contacts: contacts, lists, imports, opt-outs",
    )
    SEND = "send", "Send: create, send and control campaigns, bulk and test messages"
    WEBHOOKS = (
        "webhooks",
        "Webhooks: subscribe URLs to events (they carry contact data)",
    )


def hash_key(raw: str) -> str:
    # API keys are 256-bit random strings, so a fast hash is enough: there is
    # nothing to brute-force, unlike a password.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    """A key an integration authenticates with. Only its hash is stored."""

    name = models.CharField(max_length=100, help_text="Who or what uses this key.")
    prefix = models.CharField(
        max_length=12,
        editable=False,
        help_text="The key's first characters, to tell keys apart.",
    )
    key_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(
        default=list,
        help_text="What the key may do: any of read, write_contacts, send.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key_hash"], name="apikey_unique_hash")
        ]
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def generate(
        cls, *, name: str, scopes: Iterable[str], created_by=None
    ) -> tuple["ApiKey", str]:
        """Create a key; return it and the raw key, which is shown once and never stored.

        ``scopes`` must name at least one :class:`Scope`: a key is given what its
        integration needs, never everything by default.
        """
        chosen = clean_scopes(scopes)
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            name=name,
            prefix=raw[:10],
            key_hash=hash_key(raw),
            created_by=created_by,
            scopes=chosen,
        )
        return key, raw

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> None:
        ApiKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        self.refresh_from_db(fields=["revoked_at"])


def clean_scopes(scopes: Iterable[str]) -> list[str]:
    """``scopes`` in a fixed order; ValueError for an unknown one or none at all."""
    chosen = set(scopes)
    unknown = sorted(chosen - set(Scope.values))
    if unknown:
        raise ValueError(
            f"Unknown API key scope(s): {', '.join(unknown)}; "
            f"choose from {', '.join(Scope.values)}."
        )
    if not chosen:
        raise ValueError(f"Choose at least one scope: {', '.join(Scope.values)}.")
    return [scope for scope in Scope.values if scope in chosen]


class MetricValue(models.Model):
    """One figure behind ``/metrics``: a counter, a histogram bucket or sum, or a gauge.

    Kept in the database rather than in each process, so one scrape of any web
    process sees what every gunicorn worker, ``run_worker`` and Celery worker on
    every machine recorded (smscampaigns/metrics.py). Each process adds to its own
    ``shard`` of a figure so that busy processes do not queue on one row; a scrape
    adds the shards up.
    """

    name = models.CharField(max_length=100)
    labels = models.CharField(
        max_length=255, blank=True, help_text="The label pairs, as sorted JSON."
    )
    shard = models.PositiveSmallIntegerField(default=0)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["name", "labels", "shard"], name="metricvalue_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value}"
