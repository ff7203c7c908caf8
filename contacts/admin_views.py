"""Admin pages for contacts beyond the model forms: the CSV import wizard, its result
and error report, and the confirmation pages of the list and consent actions.

Each view is reached through ``ContactAdmin.get_urls`` (so ``admin_view`` has checked
the user is staff) and checks the model permission it needs itself.
"""

import csv
import re
from collections.abc import Iterator
from pathlib import PurePath

from django.conf import settings
from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import capfirst

from smscampaigns.admin_site import shows_commands
from smscampaigns.celery import broker_configured

from . import services
from .forms import (
    REPORT_COLUMNS,
    ColumnMappingForm,
    ImportFormatForm,
    ImportUploadForm,
    ListActionForm,
    OptInEvidenceForm,
    looks_like_phone,
    region_choices,
)
from .imports import (
    MAX_STORED_ERRORS,
    SNIFF_BYTES,
    ContactImportError,
    CsvFormat,
    csv_preview,
    sniff_csv,
)
from .models import Contact, ContactList, ImportJob, Source
from .tasks import (
    import_job_discard,
    import_job_stalled,
    import_job_start,
    import_job_store,
)

PREVIEW_ROWS = 5
ERRORS_SHOWN = 100
"""Row errors listed on the result page; the CSV report has all that were kept."""
_BACKGROUND_BYTES = 2 * 1024 * 1024
"""Default for ``settings.CONTACT_IMPORT_BACKGROUND_BYTES``."""


def import_upload(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Step 1: upload the file and choose the country and list."""
    _require_import_permission(model_admin, request)
    form = ImportUploadForm(
        request.POST or None,
        request.FILES or None,
        allow_new=can_add_lists(model_admin, request),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        job = import_job_store(
            file=data["file"],
            contact_list=data["contact_list"],
            new_list_name=data.get("new_list_name", ""),
            region=data["region"],
            encoding=form.csv_format.encoding,
            delimiter=form.csv_format.delimiter,
            created_by=request.user,
        )
        return redirect("admin:contacts_contact_import_columns", job_id=job.pk)
    context = _context(
        model_admin,
        request,
        title="Import contacts",
        step=1,
        form=form,
        adminform=helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
    )
    return TemplateResponse(
        request, "admin/contacts/contact/import_upload.html", context
    )


def import_columns(
    model_admin: ModelAdmin, request: HttpRequest, job_id: str
) -> HttpResponse:
    """Step 2: match the file's columns to contact fields, then run the import."""
    _require_import_permission(model_admin, request)
    job = get_object_or_404(
        ImportJob.objects.select_related("contact_list"),
        pk=job_id,
        created_by__isnull=False,
    )
    if job.status != ImportJob.Status.PENDING or job.columns is not None:
        return redirect("admin:contacts_contact_import_result", job_id=job.pk)
    try:
        csv_format = _job_format(job)
        header, rows = _preview(job, csv_format)
    except (ContactImportError, FileNotFoundError, ValueError) as exc:
        # Checked at upload; a file gone from storage since lands here too.
        import_job_discard(job=job)
        messages.error(request, f"The file cannot be imported: {exc}")
        return redirect("admin:contacts_contact_import")

    reformat = "reformat" in request.POST
    format_form = ImportFormatForm(
        request.POST if reformat else None, csv_format=csv_format
    )
    if reformat and format_form.is_valid():
        chosen = CsvFormat(
            format_form.cleaned_data["encoding"], format_form.cleaned_data["delimiter"]
        )
        try:
            _preview(job, chosen)
        except (ContactImportError, ValueError) as exc:
            format_form.add_error(None, f"The file cannot be read that way: {exc}")
        else:
            job.encoding, job.delimiter = chosen.encoding, chosen.delimiter
            job.save(update_fields=["encoding", "delimiter"])
            return redirect("admin:contacts_contact_import_columns", job_id=job.pk)

    form = ColumnMappingForm(header, None if reformat else request.POST or None)
    if request.method == "POST" and not reformat and form.is_valid():
        threshold = getattr(
            settings, "CONTACT_IMPORT_BACKGROUND_BYTES", _BACKGROUND_BYTES
        )
        # A large file never runs inside the request: a Celery worker or, without
        # a broker, ``run_worker`` picks it up.
        background = job.file.size > threshold
        import_job_start(
            job_id=job.pk, columns=form.cleaned_data["columns"], background=background
        )
        return redirect("admin:contacts_contact_import_result", job_id=job.pk)

    width = len(header)
    context = _context(
        model_admin,
        request,
        title="Match the columns",
        step=2,
        job=job,
        form=form,
        format_form=format_form,
        csv_format=csv_format,
        header=header,
        rows=[(row + [""] * width)[:width] for row in rows],
        no_header_row=any(looks_like_phone(column) for column in header if column),
        region_name=dict(region_choices()).get(job.region, job.region or "default"),
    )
    return TemplateResponse(
        request, "admin/contacts/contact/import_columns.html", context
    )


def _job_format(job: ImportJob) -> CsvFormat:
    """The encoding and separator the job's file is read with: those stored at
    upload or chosen since, else told from the file (an upload from before)."""
    if job.encoding and job.delimiter:
        return CsvFormat(job.encoding, job.delimiter)
    with job.file.open("rb") as file:
        found = sniff_csv(file.read(SNIFF_BYTES))
    return CsvFormat(job.encoding or found.encoding, job.delimiter or found.delimiter)


def _preview(job: ImportJob, csv_format: CsvFormat) -> tuple[list[str], list]:
    with job.file.open("rb") as file:
        return csv_preview(
            file=file,
            rows=PREVIEW_ROWS,
            encoding=csv_format.encoding,
            delimiter=csv_format.delimiter,
        )


def import_cancel(
    model_admin: ModelAdmin, request: HttpRequest, job_id: str
) -> HttpResponse:
    """Leave the wizard before importing: the stored file is deleted."""
    _require_import_permission(model_admin, request)
    if request.method != "POST":
        return redirect("admin:contacts_contact_import_columns", job_id=job_id)
    job = get_object_or_404(ImportJob, pk=job_id, created_by__isnull=False)
    if job.status == ImportJob.Status.PENDING and job.columns is None:
        import_job_discard(job=job)
        messages.info(request, "Import cancelled; the uploaded file was deleted.")
    return redirect("admin:contacts_contact_changelist")


def import_result(
    model_admin: ModelAdmin, request: HttpRequest, job_id: str
) -> HttpResponse:
    """Step 3: the counts and first row errors, or progress while a worker runs it."""
    _require_view_permission(model_admin, request)
    job = get_object_or_404(
        ImportJob.objects.select_related("contact_list", "created_by"), pk=job_id
    )
    result = job.result or {}
    errors = result.get("errors", [])
    error_count = result.get("error_count", 0)
    waiting_for_columns = job.status == ImportJob.Status.PENDING and job.columns is None
    if waiting_for_columns and job.created_by_id is not None:
        return redirect("admin:contacts_contact_import_columns", job_id=job.pk)
    # Shown as stopped at once; run_worker marks it failed on its next round.
    stalled = import_job_stalled(job)
    context = _context(
        model_admin,
        request,
        title=f"Import of {job.file_name or 'a file'}",
        step=3,
        job=job,
        in_progress=job.status in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING)
        and not stalled,
        stalled=stalled,
        waiting_for_worker=job.status == ImportJob.Status.PENDING
        and not broker_configured(),
        show_commands=shows_commands(request),
        result=result,
        errors=errors[:ERRORS_SHOWN],
        errors_shown=min(len(errors), ERRORS_SHOWN),
        errors_stored=len(errors),
        errors_not_stored=max(error_count - len(errors), 0),
        max_stored_errors=MAX_STORED_ERRORS,
        list_url=_list_contacts_url(job.contact_list) if job.contact_list else None,
    )
    return TemplateResponse(
        request, "admin/contacts/contact/import_result.html", context
    )


def import_error_report(
    model_admin: ModelAdmin, request: HttpRequest, job_id: str
) -> HttpResponse:
    """The rows the import refused, as a CSV the marketer can fix and import again."""
    _require_view_permission(model_admin, request)
    job = get_object_or_404(ImportJob, pk=job_id)
    result = job.result or {}
    errors = result.get("errors", [])
    header = result.get("header")

    def lines() -> Iterator[str]:
        writer = csv.writer(_Echo())
        safe = _spreadsheet_safe
        # A byte-order mark, so Excel opens the report as UTF-8.
        if header is None:
            # Records from the API (or an import from before cells were kept).
            yield "\ufeff" + writer.writerow(["row", "phone", "error"])
            for error in errors:
                yield writer.writerow(
                    [error["row"], safe(error["phone"]), safe(error["error"])]
                )
            return
        # The file's own columns after ours, so the report can be fixed and
        # imported again as it is (the wizard ignores our two columns).
        yield "\ufeff" + writer.writerow(
            [*REPORT_COLUMNS, *(safe(cell) for cell in header)]
        )
        for error in errors:
            cells = error.get("cells") or []
            yield writer.writerow(
                [error["row"], safe(error["error"]), *(safe(cell) for cell in cells)]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{_report_name(job.file_name)}"'
    )
    return response


def list_action(
    model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet, *, add: bool
) -> HttpResponse | None:
    """The "Add to list…" and "Remove from list…" actions: choose the list, then apply.

    Works on the whole selection in set-based statements, so "select all" over a
    million contacts is one INSERT or DELETE.
    """
    confirmed = "post" in request.POST
    form = ListActionForm(
        request.POST if confirmed else None,
        allow_new=add and can_add_lists(model_admin, request),
    )
    if confirmed and form.is_valid():
        contact_list = form.cleaned_data["contact_list"]
        if contact_list is None:
            contact_list, _ = services.contact_list_get_or_create(
                name=form.cleaned_data["new_list_name"]
            )
        if add:
            count = services.list_add_contacts(
                contact_list=contact_list, contacts=queryset, source=Source.ADMIN
            )
            message = f"Added {count:,} contact{_s(count)} to “{contact_list}”."
            if count == 0:
                message = f"The selected contacts were already in “{contact_list}”."
        else:
            count = services.list_remove_contacts(
                contact_list=contact_list, contacts=queryset
            )
            message = f"Removed {count:,} contact{_s(count)} from “{contact_list}”."
        model_admin.message_user(request, message, messages.SUCCESS)
        return None
    action = "add_to_list" if add else "remove_from_list"
    context = _action_context(
        model_admin,
        request,
        queryset,
        action=action,
        title="Add contacts to a list" if add else "Remove contacts from a list",
        form=form,
        adminform=helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
        submit="Add to list" if add else "Remove from list",
    )
    return TemplateResponse(request, "admin/contacts/contact/list_action.html", context)


#: Most contacts one "Opt in…" may change: opting people back in is done one
#: request at a time, never to a whole filtered audience at once.
MAX_OPT_IN = 100


def consent_action(
    model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet, *, opt_out: bool
) -> HttpResponse | None:
    """The "Opt out" and "Opt in" actions: confirm, then record it for every contact
    whose state changes (each gets a ConsentEvent with source "admin").

    Opting in needs a written note of the evidence of consent, kept on each
    ConsentEvent, and is refused for more than :data:`MAX_OPT_IN` contacts.
    """
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    confirmed = "post" in request.POST
    form = None
    if not opt_out:
        if queryset[: MAX_OPT_IN + 1].count() > MAX_OPT_IN:
            model_admin.message_user(
                request,
                f"Opt in at most {MAX_OPT_IN} contacts at a time: only people who "
                "asked for it, each with the evidence of their consent.",
                messages.ERROR,
            )
            return None
        form = OptInEvidenceForm(request.POST if confirmed else None)
    if confirmed and (form is None or form.is_valid()):
        if opt_out:
            count = services.contacts_opt_out(contacts=queryset, source=Source.ADMIN)
            message = f"Opted out {count:,} contact{_s(count)}."
        else:
            count = services.contacts_opt_in(
                contacts=queryset,
                source=Source.ADMIN,
                text=form.cleaned_data["evidence"],
            )
            message = f"Opted in {count:,} contact{_s(count)}."
        model_admin.message_user(request, message, messages.SUCCESS)
        return None
    if opt_out:
        changing = queryset.filter(opted_out_at__isnull=True).count()
    else:
        changing = queryset.filter(opted_out_at__isnull=False).count()
    context = _action_context(
        model_admin,
        request,
        queryset,
        action="opt_out" if opt_out else "opt_in",
        title="Opt out contacts" if opt_out else "Opt contacts back in",
        opt_out=opt_out,
        changing=changing,
        form=form,
        max_opt_in=MAX_OPT_IN,
    )
    return TemplateResponse(
        request, "admin/contacts/contact/consent_action.html", context
    )


def contact_consent(
    model_admin: ModelAdmin, request: HttpRequest, object_id: int, kind: str
) -> HttpResponse:
    """Opt one contact out or in from its page, after a confirmation (an opt-in
    with a note of the evidence of consent)."""
    # Permission first: a 404 for some ids and a 403 for others would tell someone
    # without access which contacts exist.
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    if kind not in ("opt-out", "opt-in"):
        raise Http404("No such consent change.")
    contact = get_object_or_404(Contact, pk=object_id)
    if not model_admin.has_change_permission(request, contact):
        raise PermissionDenied
    opt_out = kind == "opt-out"
    change_url = reverse("admin:contacts_contact_change", args=[contact.pk])
    posted = request.POST if request.method == "POST" else None
    form = None if opt_out else OptInEvidenceForm(posted)
    if request.method == "POST" and (form is None or form.is_valid()):
        if opt_out:
            _, changed = services.contact_opt_out(
                phone=contact.phone, source=Source.ADMIN
            )
        else:
            _, changed = services.contact_opt_in(
                phone=contact.phone,
                source=Source.ADMIN,
                text=form.cleaned_data["evidence"],
            )
        state = "opted out" if opt_out else "subscribed"
        if changed:
            model_admin.message_user(
                request, f"{contact} is now {state}.", messages.SUCCESS
            )
        else:
            model_admin.message_user(
                request, f"{contact} was already {state}.", messages.INFO
            )
        return redirect(change_url)
    context = _context(
        model_admin,
        request,
        title=f"Opt out {contact}" if opt_out else f"Opt {contact} back in",
        contact=contact,
        opt_out=opt_out,
        change_url=change_url,
        form=form,
    )
    return TemplateResponse(
        request, "admin/contacts/contact/contact_consent.html", context
    )


def can_add_lists(model_admin: ModelAdmin, request: HttpRequest) -> bool:
    """Whether the user may create contact lists (a new list name in a form)."""
    list_admin = model_admin.admin_site._registry.get(ContactList)
    return list_admin is not None and list_admin.has_add_permission(request)


def _require_import_permission(model_admin: ModelAdmin, request: HttpRequest) -> None:
    # An import creates contacts and updates existing ones.
    if not (
        model_admin.has_add_permission(request)
        and model_admin.has_change_permission(request)
    ):
        raise PermissionDenied


def _require_view_permission(model_admin: ModelAdmin, request: HttpRequest) -> None:
    # Results and reports show people's numbers.
    if not model_admin.has_view_permission(request):
        raise PermissionDenied


def _context(
    model_admin: ModelAdmin, request: HttpRequest, *, title: str, **extra
) -> dict:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": Contact._meta,
        "title": title,
        **extra,
    }


def _action_context(
    model_admin: ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    **extra,
) -> dict:
    select_across = request.POST.get("select_across") == "1"
    # The confirmation posts back what the changelist posted: the ticked ids, and for
    # "select all" the flag (the filters stay in the URL), never a million ids.
    selected_ids = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
    count = queryset.count()
    return _context(
        model_admin,
        request,
        title=title,
        action=action,
        action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
        selected_ids=selected_ids,
        select_across=select_across,
        selected_count=count,
        selected_label=capfirst(
            Contact._meta.verbose_name
            if count == 1
            else Contact._meta.verbose_name_plural
        ),
        **extra,
    )


def _list_contacts_url(contact_list: ContactList) -> str:
    url = reverse("admin:contacts_contact_changelist")
    return f"{url}?memberships__contact_list__id__exact={contact_list.pk}"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


_FORMULA_START = ("=", "+", "-", "@")
_CONTROL_START = ("\t", "\r")


def _spreadsheet_safe(value: object) -> str:
    """``value`` as text a spreadsheet will not run as a formula.

    Cells come from an uploaded file, so "=HYPERLINK(…)" is possible. Spreadsheets
    skip leading spaces and line breaks, and evaluate "+1-2-3" too, so any cell that
    starts, after them, with = + - or @ (or starts with a tab or carriage return)
    gets a leading apostrophe: shown as text, and dropped when saved as CSV, so a
    phone number "+1415…" imports again unchanged.
    """
    text = str(value)
    if text.startswith(_CONTROL_START) or text.lstrip().startswith(_FORMULA_START):
        return "'" + text
    return text


def _report_name(file_name: str) -> str:
    stem = re.sub(r"[^\w.-]+", "_", PurePath(file_name or "import").stem)[:80]
    return f"{stem or 'import'}-errors.csv"


class _Echo:
    """A file-like object whose ``write`` returns the line, for streaming csv rows."""

    def write(self, value: str) -> str:
        return value
