import re
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils import timezone

from .fields import PhoneNumberField
from .phones import SENDER_MAX_LENGTH, mask_phone, parse_phone, sender_key
from .querysets import AppendOnlyQuerySet, ContactQuerySet, SuppressionQuerySet
from .validators import validate_attributes


class Source(models.TextChoices):
    """Where a change to a contact or its consent came from."""

    KEYWORD = "keyword", "Keyword reply"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Import"
    PROVIDER = "provider", "Provider signal"


def validate_time_zone(value: str) -> None:
    """An IANA zone name the server knows (e.g. "Europe/Moscow"), or empty."""
    if not value:
        return
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            "%(value)s is not a known time zone (use an IANA name such as "
            "Europe/Moscow).",
            code="invalid_time_zone",
            params={"value": value},
        ) from None


class Contact(models.Model):
    phone = PhoneNumberField(
        help_text="E.164, e.g. +14155550123. Other formats are converted."
    )
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    attributes = models.JSONField(
        default=dict,
        blank=True,
        help_text='Free-form values for personalization, e.g. {"city": "Austin"}; '
        "at most 50 keys and 4 KB.",
        validators=[validate_attributes],
    )
    country = models.CharField(max_length=2, blank=True, editable=False)
    time_zone = models.CharField(
        max_length=400,
        blank=True,
        editable=False,
        help_text="The zone(s) send windows use: the one set by hand, else every zone "
        "the number may be in (space-separated).",
    )
    time_zone_set = models.CharField(
        "time zone",
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="The recipient's IANA time zone, e.g. Europe/Moscow, when known; "
        "empty: the zones of the number (several for a mobile in a country that "
        "spans zones).",
    )
    opted_out_at = models.DateTimeField(null=True, blank=True)
    opt_out_source = models.CharField(max_length=16, choices=Source, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    lists = models.ManyToManyField(
        "ContactList", through="ListMembership", related_name="contacts", blank=True
    )

    objects = ContactQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phone"], name="contact_unique_phone")
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name} ({self.phone})" if name else self.phone

    def save(self, *args, **kwargs) -> None:
        # Country and time zone always follow the number (the send window uses
        # them), unless the zone was set by hand.
        parsed = parse_phone(self.phone)
        self.phone, self.country, self.time_zone = (
            parsed.e164,
            parsed.country,
            self.time_zone_set or parsed.time_zone,
        )
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"phone", "time_zone_set"} & set(
            update_fields
        ):
            kwargs["update_fields"] = {*update_fields, "country", "time_zone"}
        stored = getattr(self, "_stored_phone", None)
        if self._state.adding or stored is None or stored == self.phone:
            super().save(*args, **kwargs)
        else:
            from .services import KEPT_ON_NUMBER_CHANGE, opted_out_numbers_keep

            # A new number: an opt-out of the old one stays, as a suppression.
            with transaction.atomic(using=kwargs.get("using") or self._state.db):
                opted_out_numbers_keep(
                    contacts=Contact.objects.filter(pk=self.pk),
                    note=KEPT_ON_NUMBER_CHANGE,
                )
                super().save(*args, **kwargs)
        self._stored_phone = self.phone

    def delete(self, *args, **kwargs):
        from .services import (
            KEPT_ON_DELETE,
            message_contacts_lock,
            opted_out_numbers_keep,
        )

        using = kwargs.get("using") or self._state.db
        with transaction.atomic(using=using):
            message_contacts_lock(exclusive=True, using=using)
            opted_out_numbers_keep(
                contacts=Contact.objects.filter(pk=self.pk), note=KEPT_ON_DELETE
            )
            return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db, field_names, values, **kwargs):
        contact = super().from_db(db, field_names, values, **kwargs)
        # The number as stored, to see in save() whether it changes.
        contact._stored_phone = contact.__dict__.get("phone")
        return contact

    @property
    def opted_out(self) -> bool:
        return self.opted_out_at is not None


class ContactList(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name"], name="contactlist_unique_name")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    contact_list = models.ForeignKey(
        ContactList, models.CASCADE, related_name="memberships"
    )
    contact = models.ForeignKey(Contact, models.CASCADE, related_name="memberships")
    added_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source, default=Source.ADMIN)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact_list", "contact"], name="membership_unique_contact"
            )
        ]
        indexes = [
            models.Index(
                fields=["contact", "contact_list"], name="membership_by_contact"
            )
        ]

    def __str__(self) -> str:
        # How a contact's page labels the row, and a deletion lists it: by the
        # list's name (callers listing many select_related the list).
        return str(self.contact_list)


class ConsentEvent(models.Model):
    """One opt-in or opt-out, kept forever as the audit trail carriers and regulators ask for."""

    class Kind(models.TextChoices):
        OPT_OUT = "opt_out", "Opt-out"
        OPT_IN = "opt_in", "Opt-in"

    # A sender phonenumbers refuses (short code, alphanumeric ID) is kept as written.
    phone = models.CharField(max_length=SENDER_MAX_LENGTH)
    contact = models.ForeignKey(
        Contact, models.SET_NULL, null=True, blank=True, related_name="consent_events"
    )
    kind = models.CharField(max_length=8, choices=Kind)
    source = models.CharField(max_length=16, choices=Source)
    text = models.TextField(
        blank=True, help_text="The message received, for keyword events."
    )
    provider = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # A keyword sign-up (double opt-in) keeps what the person was asked and when:
    # ``text`` is their YES, ``created_at`` the time of it. The database defaults
    # serve the set-based INSERT … SELECT of bulk opt-ins, which names its columns.
    keyword = models.CharField(
        max_length=20,
        blank=True,
        default="",
        db_default="",
        help_text="The sign-up keyword texted, for a keyword sign-up.",
    )
    question = models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text="The confirmation question the person answered, for a keyword "
        "sign-up.",
    )
    requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sign-up keyword arrived."
    )
    contact_list = models.ForeignKey(
        ContactList,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The list joined, for a keyword sign-up.",
    )

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["phone", "created_at"], name="consent_by_phone")
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.phone} ({self.get_source_display()})"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise TypeError("ConsentEvent rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("ConsentEvent rows are append-only")


#: Sign-up keywords are one word of letters or digits, as carriers print them on
#: signs and in ads ("Text JOIN to …").
_SIGNUP_KEYWORD = re.compile(r"[^\W_]{2,20}")

DEFAULT_SIGNUP_QUESTION = (
    "{program}: Reply YES to get {list} texts. Msg frequency varies. "
    "Msg&data rates may apply. Reply STOP to opt out."
)
DEFAULT_SIGNUP_WELCOME = (
    "{program}: Welcome to {list}! Msg&data rates may apply. "
    "Reply HELP for help, STOP to opt out."
)
_PLACEHOLDERS = re.compile(r"\{(program|list|keyword)\}")


def normalize_signup_keyword(text: str) -> str:
    """The stored form of a keyword: trimmed, upper case ("join " means JOIN)."""
    return text.strip().upper()


class SignupKeyword(models.Model):
    """A word people text to our number to join a list, with double opt-in: they get
    the question first and join only when they answer YES in time."""

    contact_list = models.ForeignKey(
        ContactList, models.CASCADE, related_name="signup_keywords"
    )
    keyword = models.CharField(
        max_length=20,
        help_text="One word people text to join, e.g. JOIN or VIP (letters and "
        "digits; any case matches).",
    )
    question = models.TextField(
        "confirmation question",
        default=DEFAULT_SIGNUP_QUESTION,
        help_text="Sent when the keyword arrives. It must ask for YES and say how to "
        "opt out (STOP). {program}, {list} and {keyword} are filled in.",
    )
    welcome = models.TextField(
        "welcome text",
        default=DEFAULT_SIGNUP_WELCOME,
        help_text="Sent after the YES. It must say how to opt out (STOP). {program}, "
        "{list} and {keyword} are filled in.",
    )
    confirm_within_hours = models.PositiveIntegerField(
        "confirmation window (hours)",
        default=24,
        validators=[MinValueValidator(1), MaxValueValidator(720)],
        help_text="A YES later than this after the question does not sign up.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Stored in upper case: unique regardless of how it was typed.
            models.UniqueConstraint(
                fields=["keyword"], name="signupkeyword_unique_keyword"
            )
        ]
        ordering = ["keyword"]
        verbose_name = "sign-up keyword"

    def __str__(self) -> str:
        return self.keyword

    def save(self, *args, **kwargs) -> None:
        self.keyword = normalize_signup_keyword(self.keyword)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.keyword = normalize_signup_keyword(self.keyword)
        errors: dict[str, str] = {}
        if not _SIGNUP_KEYWORD.fullmatch(self.keyword):
            errors["keyword"] = "Use one word of 2 to 20 letters or digits."
        else:
            # The inbound code's own reading of STOP / START / HELP (and YES):
            # a sign-up keyword must never shadow one of them.
            from webhooks.keywords import reserved_meaning

            meaning = reserved_meaning(self.keyword)
            if meaning:
                errors["keyword"] = (
                    f"{self.keyword} is already a keyword for everyone who texts "
                    f"us: {meaning}. Choose another word."
                )
        if not re.search(r"\bSTOP\b", self.question, re.IGNORECASE):
            errors["question"] = "Say how to opt out (Reply STOP to opt out)."
        elif not re.search(r"\bYES\b", self.question, re.IGNORECASE):
            errors["question"] = "Ask for YES (Reply YES to …)."
        if not re.search(r"\bSTOP\b", self.welcome, re.IGNORECASE):
            errors["welcome"] = "Say how to opt out (Reply STOP to opt out)."
        if errors:
            raise ValidationError(errors)

    @property
    def confirm_within(self) -> timedelta:
        return timedelta(hours=self.confirm_within_hours)

    def render(self, template: str) -> str:
        """``template`` (the question or the welcome) as sent."""
        # Not str.format: a marketer's stray brace must not break a sign-up.
        values = {
            "program": settings.SMS_PROGRAM_NAME,
            "list": self.contact_list.name,
            "keyword": self.keyword,
        }
        return _PLACEHOLDERS.sub(lambda m: values[m.group(1)], template)


class PendingSignup(models.Model):
    """A number that texted a sign-up keyword and was asked to confirm. One per
    number (a newer keyword replaces the older one); it is deleted when the number
    answers YES, or texts STOP."""

    phone = models.CharField(max_length=SENDER_MAX_LENGTH)
    signup_keyword = models.ForeignKey(
        SignupKeyword, models.CASCADE, related_name="pending_signups"
    )
    keyword_text = models.TextField(help_text="The keyword message as received.")
    question = models.TextField(help_text="The confirmation question as sent.")
    provider = models.CharField(max_length=32, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phone"], name="pendingsignup_unique_phone")
        ]
        ordering = ["-requested_at"]
        verbose_name = "pending sign-up"

    def __str__(self) -> str:
        return f"{mask_phone(self.phone)}: {self.signup_keyword}"

    @property
    def expired(self) -> bool:
        return timezone.now() >= self.expires_at


class Suppression(models.Model):
    """A number that must never get marketing, whether or not it is a contact."""

    class Reason(models.TextChoices):
        OPT_OUT = "opt_out", "Opted out"
        MANUAL = "manual", "Added by hand"
        INVALID = "invalid", "Number invalid or deactivated"

    # Forms take only valid numbers; an opt-out from a sender phonenumbers refuses
    # (short code, alphanumeric ID) is kept under that sender, as written.
    phone = PhoneNumberField(max_length=SENDER_MAX_LENGTH)
    reason = models.CharField(max_length=16, choices=Reason, default=Reason.MANUAL)
    source = models.CharField(max_length=16, choices=Source, default=Source.ADMIN)
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phone"], name="suppression_unique_phone")
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.phone} ({self.get_reason_display()})"

    def save(self, *args, **kwargs) -> None:
        self.phone = sender_key(self.phone)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        # Only an opt-in lifts an opt-out (SuppressionQuerySet.lift_opt_outs).
        return Suppression.objects.filter(pk=self.pk).delete()


class ImportJob(models.Model):
    """A contact import from an uploaded CSV file, run in the background by a worker.

    The file waits in the default storage (under ``imports/``) until the job finishes;
    then it is deleted, because it holds people's numbers.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=8, choices=Status, default=Status.PENDING)
    contact_list = models.ForeignKey(
        ContactList,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The list the imported contacts join.",
    )
    region = models.CharField(
        max_length=2, blank=True, help_text="Region for national-format numbers."
    )
    file = models.FileField(upload_to="imports/", max_length=255, blank=True)
    encoding = models.CharField(
        max_length=40,
        blank=True,
        help_text='The file\'s text encoding, a Python codec name ("utf-8", '
        '"cp1252"); blank: told from the file when it is imported.',
    )
    delimiter = models.CharField(
        max_length=1,
        blank=True,
        help_text="The column separator; blank: told from the file when it is "
        "imported.",
    )
    keypad_letters = models.BooleanField(
        default=False,
        help_text="Letters in phone numbers are read as on a phone keypad; "
        "otherwise such a number is a row error.",
    )
    file_name = models.CharField(
        max_length=255, blank=True, help_text="The name of the file as uploaded."
    )
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by_key = models.ForeignKey(
        "smscampaigns.ApiKey",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The admin user who uploaded the file.",
    )
    columns = models.JSONField(
        null=True,
        blank=True,
        help_text='What each column fills, e.g. {"Mobile": "phone", "Notes": null}; '
        "empty until the columns are matched (imports from the admin).",
    )
    new_list_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="A list to create when the import runs, if no list was chosen.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    progress_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the running import last finished a chunk of rows: a job "
        "running with no progress for long has lost its worker.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "contact import"

    def __str__(self) -> str:
        return f"Import {self.file_name or self.pk} ({self.get_status_display()})"
