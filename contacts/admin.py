import uuid

from django.contrib import admin
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.db.models.fields.json import KT
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from . import admin_views
from .models import (
    ConsentEvent,
    Contact,
    ContactList,
    ImportJob,
    ListMembership,
    Suppression,
)

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


class MembershipInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    autocomplete_fields = ["contact_list"]
    readonly_fields = ["added_at"]
    fields = ["contact_list", "source", "added_at"]
    verbose_name = "list"
    verbose_name_plural = "lists"


class ConsentEventInline(admin.TabularInline):
    model = ConsentEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "source", "text", "provider"]
    readonly_fields = fields
    verbose_name_plural = "consent history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = [
        "phone",
        "first_name",
        "last_name",
        "subscription",
        "country",
        "created_at",
    ]
    list_filter = [SubscriptionFilter, "country", "memberships__contact_list"]
    search_fields = ["phone", "first_name", "last_name"]
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
        ("country", "time_zone"),
        ("opted_out_at", "opt_out_source"),
        ("created_at", "updated_at"),
    ]
    inlines = [MembershipInline, ConsentEventInline]
    actions = ["add_to_list", "remove_from_list", "opt_out", "opt_in"]
    show_full_result_count = False

    class Media:
        css = ADMIN_CSS

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": "Contacts", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

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
                "<path:object_id>/consent/<str:kind>/",
            ),
            *super().get_urls(),
        ]

    def render_change_form(
        self, request, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None:
            context["consent"] = self._consent_panel(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

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


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin):
    list_display = ["name", "members", "description", "created_at"]
    search_fields = ["name"]

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": "Contact lists", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

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
class ImportJobAdmin(admin.ModelAdmin):
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

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": "Contact imports", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

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
class ConsentEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "phone", "kind", "source", "provider", "text"]
    list_filter = ["kind", "source", "provider"]
    search_fields = ["phone", "text"]
    list_select_related = ["contact"]

    # The consent trail is evidence: nobody edits or deletes it from the admin.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["phone", "reason", "source", "note", "created_at"]
    list_filter = ["reason", "source"]
    search_fields = ["phone", "note"]
