import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.fields.json import KT
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from smscampaigns.admin_paginator import CappedCountChangeList, CappedCountPaginator
from smscampaigns.admin_site import ListTitleMixin
from smscampaigns.csv_export import csv_response

from . import admin_views, services
from .exports import attribute_keys, contact_columns, contact_rows, contacts_filename
from .forms import AttributesFormField, region_choices
from .models import (
    ConsentEvent,
    Contact,
    ContactList,
    ImportJob,
    ListMembership,
    PendingSignup,
    SignupKeyword,
    Source,
    Suppression,
    normalize_signup_keyword,
)
from .permissions import ContactDataAdminMixin
from .querysets import member_count

ADMIN_CSS = {"all": ["contacts/admin.css"]}


def subscription_badge(*, opted_out: bool, suppressed: bool) -> str:
    if opted_out:
        label, css_class, title = "Opted out", "stop", "Gets no marketing messages."
    elif suppressed:
        label, css_class = "Suppressed", "warning"
        title = "The number is on the suppression list: it gets no marketing."
    else:
        label, css_class, title = "Subscribed", "ok", "Gets your campaigns."
    return format_html(
        '<span class="sms-badge sms-badge--{}" title="{}">{}</span>',
        css_class,
        title,
        label,
    )


class SubscriptionFilter(admin.SimpleListFilter):
    title = "subscription"
    parameter_name = "subscription"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [
            ("subscribed", "Subscribed"),
            ("opted_out", "Opted out"),
            ("suppressed", "Suppressed number"),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        match self.value():
            case "subscribed":
                return queryset.reachable()
            case "opted_out":
                return queryset.opted_out()
            case "suppressed":
                return queryset.filter(
                    opted_out_at__isnull=True,
                    phone__in=Suppression.objects.values("phone"),
                )
        return queryset


class ContactListFilter(admin.SimpleListFilter):
    """Contacts in one list, as a semi-join (``EXISTS``) on the memberships.

    The admin's own filter on ``memberships__contact_list`` adds ``DISTINCT`` to the
    whole query, which sorts every member of a 700,000-contact list on each page
    view. The parameter keeps the name that filter used, so links stay valid.
    """

    title = "contact list"
    parameter_name = "memberships__contact_list__id__exact"

    def lookups(self, request, model_admin) -> list[tuple[int, str]]:
        return list(ContactList.objects.order_by("name").values_list("pk", "name"))

    def has_output(self) -> bool:
        # The admin applies only filters it shows: a link to a deleted list (or
        # with no list left) must still filter, to nobody.
        return super().has_output() or self.value() is not None

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if not (value.isascii() and value.isdigit() and int(value) < 2**63):
            return queryset.none()  # no list has that id
        return queryset.in_lists([int(value)])


#: How long the country filter's choices are reused.
COUNTRY_CHOICES_CACHE_SECONDS = 600
COUNTRY_CHOICES_CACHE_KEY = "contacts:admin:countries"


class CountryFilter(admin.SimpleListFilter):
    """The countries of the contacts' numbers, by name.

    Listing the distinct countries reads every contact (about 0.1 s for a million),
    so the choices are kept in the cache for
    :data:`COUNTRY_CHOICES_CACHE_SECONDS`: a country whose first contact arrived
    meanwhile is offered a little later, and ``?country=XX`` filters at once.
    """

    title = "country"
    parameter_name = "country"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        countries = cache.get(COUNTRY_CHOICES_CACHE_KEY)
        if countries is None:
            countries = list(
                Contact.objects.order_by("country")
                .values_list("country", flat=True)
                .distinct()
            )
            cache.set(
                COUNTRY_CHOICES_CACHE_KEY, countries, COUNTRY_CHOICES_CACHE_SECONDS
            )
        if self.value() and self.value() not in countries:
            countries = sorted([*countries, self.value()])
        names = dict(region_choices())
        return sorted(
            (
                (country, names.get(country, country) if country else "Unknown")
                for country in countries
            ),
            key=lambda choice: choice[1],
        )

    def has_output(self) -> bool:
        return super().has_output() or self.value() is not None

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() is not None:
            return queryset.filter(country=self.value())
        return queryset


class MembershipInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    autocomplete_fields = ["contact_list"]
    # Where a membership came from is a record (an import, the API), not a choice;
    # one added here is the admin's.
    readonly_fields = ["source", "added_at"]
    fields = ["contact_list", "source", "added_at"]
    verbose_name = "list"
    verbose_name_plural = "lists"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Each row is labelled with its list's name (ListMembership.__str__).
        return super().get_queryset(request).select_related("contact_list")


class ConsentEventInline(admin.TabularInline):
    model = ConsentEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "source", "keyword", "text", "provider"]
    readonly_fields = fields
    verbose_name_plural = "consent history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(ListTitleMixin, ContactDataAdminMixin, admin.ModelAdmin):
    list_display = [
        "phone",
        "first_name",
        "last_name",
        "subscription",
        "country",
        "created_at",
    ]
    list_filter = [SubscriptionFilter, CountryFilter, ContactListFilter]
    search_fields = ["phone", "first_name", "last_name"]
    search_help_text = (
        "A phone number in any format finds that contact; other text matches part "
        "of a number or a name."
    )
    # Opt-out changes go through the actions and buttons, which record a ConsentEvent.
    readonly_fields = [
        "country",
        "time_zone",
        "opted_out_at",
        "opt_out_source",
        "created_at",
        "updated_at",
    ]
    fields = [
        "phone",
        ("first_name", "last_name"),
        "attributes",
        ("country", "time_zone_set", "time_zone"),
        ("opted_out_at", "opt_out_source"),
        ("created_at", "updated_at"),
    ]
    inlines = [MembershipInline, ConsentEventInline]
    actions = ["add_to_list", "remove_from_list", "opt_out", "opt_in", "export_csv"]
    # A million contacts: each view counts at most 10,001 of them (see
    # CappedCountPaginator), never the whole table, and no per-choice counts.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    # Newest first along the primary key, or by number along its unique index:
    # sorting a 700,000-contact list by name or date takes the best part of a second.
    sortable_by = ["phone"]

    class Media:
        css = ADMIN_CSS

    def get_changelist(self, request: HttpRequest, **kwargs) -> type:
        return CappedCountChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # A whole number through the phone index, and each column searched only
        # for what it can hold (see ContactQuerySet.search): the admin's own search
        # would miss "(415) 555-0101" and test every word against every column.
        return queryset.search(search_term), False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # ContactListFilter keeps the parameter name of the admin's relation filter.
        return lookup == ContactListFilter.parameter_name or super().lookup_allowed(
            lookup, value, request
        )

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "attributes":
            # Name and value rows: a marketer should not have to write JSON.
            return AttributesFormField(
                required=False,
                label="Attributes",
                help_text="Values for personalization, used in messages as "
                "{name}. Empty a value to remove it; at most 50.",
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # The opt-out and the consent history belong to the number: changing the
        # number of an existing contact would move them to another person.
        if obj is not None:
            return ["phone", *self.readonly_fields]
        return self.readonly_fields

    def delete_model(self, request: HttpRequest, obj: Contact) -> None:
        services.contact_delete(contact=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        services.contacts_delete(contacts=queryset)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                suppressed=Exists(Suppression.objects.filter(phone=OuterRef("phone")))
            )
        )

    @admin.display(description="Subscription", ordering="opted_out_at")
    def subscription(self, contact: Contact) -> str:
        return subscription_badge(
            opted_out=contact.opted_out, suppressed=contact.suppressed
        )

    @admin.action(description="Add to list…", permissions=["change"])
    def add_to_list(self, request, queryset) -> HttpResponse | None:
        return admin_views.list_action(self, request, queryset, add=True)

    @admin.action(description="Remove from list…", permissions=["change"])
    def remove_from_list(self, request, queryset) -> HttpResponse | None:
        return admin_views.list_action(self, request, queryset, add=False)

    @admin.action(description="Opt out…", permissions=["change"])
    def opt_out(self, request, queryset) -> HttpResponse | None:
        return admin_views.consent_action(self, request, queryset, opt_out=True)

    @admin.action(description="Opt in…", permissions=["change"])
    def opt_in(self, request, queryset) -> HttpResponse | None:
        return admin_views.consent_action(self, request, queryset, opt_out=False)

    @admin.action(description="Export to CSV", permissions=["view"])
    def export_csv(self, request, queryset) -> HttpResponseBase:
        return self._export(queryset)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The changelist's "Export CSV" button: every contact its filters and
        search select, not only the page shown."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            # What the changelist itself does with a filter it cannot apply.
            return redirect(reverse("admin:contacts_contact_changelist") + "?e=1")
        return self._export(changelist.get_queryset(request))

    def _export(self, contacts: QuerySet) -> HttpResponseBase:
        keys = attribute_keys(contacts)
        # With a byte order mark: Excel, where marketers open it, then reads UTF-8.
        return csv_response(
            contacts_filename(),
            contact_columns(keys),
            contact_rows(contacts, keys),
            bom=True,
        )

    def get_urls(self) -> list:
        def view(func, name: str, route: str):
            def call(request, **kwargs):
                return func(self, request, **kwargs)

            return path(
                route,
                self.admin_site.admin_view(call),
                name=f"contacts_contact_{name}",
            )

        return [
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="contacts_contact_export",
            ),
            view(admin_views.import_upload, "import", "import/"),
            view(admin_views.import_result, "import_result", "import/<uuid:job_id>/"),
            view(
                admin_views.import_columns,
                "import_columns",
                "import/<uuid:job_id>/columns/",
            ),
            view(
                admin_views.import_cancel,
                "import_cancel",
                "import/<uuid:job_id>/cancel/",
            ),
            view(
                admin_views.import_error_report,
                "import_errors",
                "import/<uuid:job_id>/errors.csv",
            ),
            view(
                admin_views.contact_consent,
                "consent",
                "<int:object_id>/consent/<str:kind>/",
            ),
            *super().get_urls(),
        ]

    def render_change_form(
        self, request, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None:
            context["consent"] = self._consent_panel(obj)
            context["contact_links"] = self._related_links(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _related_links(self, request: HttpRequest, contact: Contact) -> list:
        """Links to the contact's messages and replies, for users who may see them."""
        links = []
        for label, model_label, url_name in (
            (
                "Messages sent",
                "campaigns.message",
                "admin:campaigns_message_changelist",
            ),
            (
                "Replies",
                "webhooks.inboundmessage",
                "admin:webhooks_inboundmessage_changelist",
            ),
        ):
            app_label, model_name = model_label.split(".")
            if request.user.has_perm(f"{app_label}.view_{model_name}"):
                links.append(
                    (label, f"{reverse(url_name)}?contact__id__exact={contact.pk}")
                )
        # Both ways in one thread, with the reply box (webhooks.admin_views).
        if request.user.has_perm("webhooks.view_inboundmessage") and (
            request.user.has_perm("campaigns.view_message")
        ):
            links.append(
                (
                    "Conversation",
                    reverse(
                        "admin:webhooks_inboundmessage_conversation", args=[contact.pk]
                    ),
                )
            )
        return links

    def _consent_panel(self, contact: Contact) -> dict:
        suppression = Suppression.objects.filter(phone=contact.phone).first()
        changelist = reverse("admin:contacts_contact_changelist")
        lists = format_html_join(
            ", ",
            '<a href="{}?memberships__contact_list__id__exact={}">{}</a>',
            (
                (changelist, contact_list.pk, contact_list.name)
                for contact_list in contact.lists.order_by("name")
            ),
        )
        return {
            "badge": subscription_badge(
                opted_out=contact.opted_out, suppressed=suppression is not None
            ),
            "opted_out_at": contact.opted_out_at,
            "opt_out_source": contact.get_opt_out_source_display(),
            "suppression": suppression,
            # contact_opt_in lifts opt-out suppressions, not those added by hand.
            "can_opt_in": contact.opted_out
            or (
                suppression is not None
                and suppression.reason == Suppression.Reason.OPT_OUT
            ),
            "lists": lists,
            "opt_out_url": reverse(
                "admin:contacts_contact_consent", args=[contact.pk, "opt-out"]
            ),
            "opt_in_url": reverse(
                "admin:contacts_contact_consent", args=[contact.pk, "opt-in"]
            ),
        }


class SignupKeywordForm(forms.ModelForm):
    class Meta:
        model = SignupKeyword
        fields = ["keyword", "confirm_within_hours", "question", "welcome"]
        widgets = {
            "question": forms.Textarea(attrs={"rows": 3, "cols": 80}),
            "welcome": forms.Textarea(attrs={"rows": 3, "cols": 80}),
        }

    def clean_keyword(self) -> str:
        # As stored, so two rows of one form ("join", "JOIN") are seen as the same.
        return normalize_signup_keyword(self.cleaned_data["keyword"])


class SignupKeywordInline(admin.StackedInline):
    """Keywords people text to join the list (double opt-in: question, YES, welcome)."""

    model = SignupKeyword
    form = SignupKeywordForm
    extra = 0
    verbose_name_plural = "sign-up keywords (people text one to join this list)"


@admin.register(ContactList)
class ContactListAdmin(ListTitleMixin, admin.ModelAdmin):
    list_display = ["name", "members", "keywords", "description", "created_at"]
    search_fields = ["name"]
    inlines = [SignupKeywordInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(member_count=member_count())
            .prefetch_related("signup_keywords")
        )

    @admin.display(description="Sign-up keywords")
    def keywords(self, contact_list: ContactList) -> str:
        words = [k.keyword for k in contact_list.signup_keywords.all()]
        return ", ".join(words) or "—"

    @admin.display(description="Members", ordering="member_count")
    def members(self, contact_list: ContactList) -> str:
        url = reverse("admin:contacts_contact_changelist")
        count = contact_list.member_count
        return format_html(
            '<a href="{}?memberships__contact_list__id__exact={}">{} contact{}</a>',
            url,
            contact_list.pk,
            f"{count:,}",
            "" if count == 1 else "s",
        )


@admin.register(ImportJob)
class ImportJobAdmin(ListTitleMixin, admin.ModelAdmin):
    """Past imports, so their results and error reports can be found again."""

    list_display = [
        "created_at",
        "file_link",
        "contact_list",
        "started_by",
        "state",
        "outcome",
        "report",
    ]
    list_display_links = None
    list_filter = ["status"]
    search_fields = ["file_name", "contact_list__name"]
    list_select_related = ["contact_list", "created_by", "created_by_key"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The counts only: a result holds up to 1,000 row errors.
        return (
            super()
            .get_queryset(request)
            .defer("result")
            .annotate(
                result_created=KT("result__created"),
                result_updated=KT("result__updated"),
                result_skipped=KT("result__skipped"),
                result_error_count=KT("result__error_count"),
            )
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The result page is the useful view of a job.
        try:
            job_id = uuid.UUID(object_id)
        except ValueError:
            raise Http404("No such import.") from None
        return redirect("admin:contacts_contact_import_result", job_id=job_id)

    def delete_model(self, request, obj: ImportJob) -> None:
        if obj.file:
            obj.file.delete(save=False)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for job in queryset.exclude(file=""):
            job.file.delete(save=False)
        super().delete_queryset(request, queryset)

    @admin.display(description="File", ordering="file_name")
    def file_link(self, job: ImportJob) -> str:
        url = reverse("admin:contacts_contact_import_result", args=[job.pk])
        return format_html('<a href="{}">{}</a>', url, job.file_name or "(no name)")

    @admin.display(description="Started by")
    def started_by(self, job: ImportJob) -> str:
        if job.created_by is not None:
            return job.created_by.get_username()
        if job.created_by_key is not None:
            return f"API key {job.created_by_key.name}"
        return "—"

    @admin.display(description="Status", ordering="status")
    def state(self, job: ImportJob) -> str:
        # A wizard upload waits for its columns before it is started.
        if (
            job.status == ImportJob.Status.PENDING
            and job.columns is None
            and job.created_by_id is not None
        ):
            return "Waiting for its columns to be matched"
        return job.get_status_display()

    @admin.display(description="Result")
    def outcome(self, job: ImportJob) -> str:
        if job.result_created is None:
            return "—"
        errors = int(job.result_error_count or 0)
        return (
            f"{job.result_created} new · {job.result_updated} updated · "
            f"{job.result_skipped} unchanged · {errors} error{'' if errors == 1 else 's'}"
        )

    @admin.display(description="Error report")
    def report(self, job: ImportJob) -> str:
        if job.result_error_count in (None, "0", 0):
            return "—"
        url = reverse("admin:contacts_contact_import_errors", args=[job.pk])
        return format_html('<a href="{}">Download CSV</a>', url)


@admin.register(ConsentEvent)
class ConsentEventAdmin(ListTitleMixin, ContactDataAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "phone",
        "kind",
        "source",
        "provider",
        "keyword",
        "text",
    ]
    list_filter = ["kind", "source", "provider"]
    search_fields = ["phone", "text", "keyword"]
    list_select_related = ["contact"]

    # The consent trail is evidence: nobody edits or deletes it from the admin.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(ListTitleMixin, ContactDataAdminMixin, admin.ModelAdmin):
    """Numbers that get no marketing. Opt-outs are the person's decision: they are
    never deleted or changed here (an opt-in lifts them, with its ConsentEvent)."""

    list_display = ["phone", "reason", "source", "note", "created_at"]
    list_filter = ["reason", "source"]
    search_fields = ["phone", "note"]
    fields = ["phone", "reason", "source", "note", "created_at"]
    readonly_fields = ["source", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is not None:
            # Only the note changes: a new number or reason is a new suppression.
            return ["phone", "reason", *self.readonly_fields]
        return self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and obj.reason == Suppression.Reason.OPT_OUT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Per row, so "Delete selected" also refuses a selection holding an opt-out.
        if obj is not None and obj.reason == Suppression.Reason.OPT_OUT:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Suppression, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        saved, _ = services.suppression_add(
            phone=obj.phone,
            reason=obj.reason,
            source=Source.ADMIN,
            note=obj.note,
        )
        obj.pk, obj.created_at, obj.source = saved.pk, saved.created_at, saved.source
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        services.suppression_delete(suppression=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        _, kept = services.suppressions_delete(suppressions=queryset)
        if kept:
            self.message_user(
                request,
                f"{kept} opt-out{'' if kept == 1 else 's'} kept: only an opt-in "
                "lifts an opt-out.",
                messages.WARNING,
            )


@admin.register(PendingSignup)
class PendingSignupAdmin(ListTitleMixin, ContactDataAdminMixin, admin.ModelAdmin):
    """Numbers asked to confirm a keyword sign-up that have not answered YES yet."""

    list_display = ["phone", "signup_keyword", "requested_at", "expires_at"]
    list_select_related = ["signup_keyword"]
    list_filter = ["signup_keyword"]
    search_fields = ["phone"]

    # Written by the inbound flow only: a YES, a STOP or a new keyword changes them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
