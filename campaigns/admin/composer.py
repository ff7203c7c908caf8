"""The campaign composer in the admin: form, live counter, placeholders."""

import json
import unicodedata
from collections import Counter
from collections.abc import Sequence
from itertools import groupby, islice
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import path, reverse
from django.utils.html import format_html

from contacts.models import ContactList
from contacts.permissions import can_view_contact_data
from providers.encoding import GSM_SEPTETS, Encoding, analyze, to_gsm

from ..lifecycle import CampaignError, status_display, status_key
from ..links import (
    counted_template,
    sample_short_url,
    template_links,
    tracking_on,
    with_sample_links,
)
from ..models import Campaign, CampaignVariant, variant_label
from ..preview import (
    AudienceFacts,
    audience_facts as shared_audience_facts,
    audience_sample,
    estimate_from_sample,
    format_money as money,
    render_for,
    weigh_variants,
)
from ..provider_checks import ProviderUnusable
from ..segments import Segment
from ..sending.windows import SendWindow, WindowError
from ..templating import (
    CONTACT_FIELD_NAMES,
    Placeholder,
    TemplateError,
    parse,
    validate,
)
from ..writes import (
    CONTENT_FIELDS,
    BodyError,
    campaign_create,
    campaign_update,
    campaign_variants,
    content_locked,
)
from .dashboard import page_title
from .forms import CampaignComposerForm, ComposeForm
from .variants import CampaignVariantInline, variants_save

#: Contacts offered as preview samples.
SAMPLE_CONTACTS = 10
#: Audiences (list memberships) counted while the campaign page renders; a larger
#: one is counted by the panel's first request instead, so the page stays fast.
INLINE_AUDIENCE_LIMIT = 50_000
#: What composition() does about the audience (see there).
COUNT, COUNT_IF_SMALL, SKIP = "count", "count if small", "skip"
#: The contact fields offered as placeholders, in the order a marketer wants them.
FIELD_PLACEHOLDERS = ("first_name", "last_name", "full_name", "phone")
ENCODING_LABELS = {Encoding.GSM7: "GSM-7", Encoding.UCS2: "UCS-2"}
#: The fieldset the composer's live panel follows.
MESSAGE_FIELDSET = "Message"


def audience_facts(
    contact_lists: Sequence[ContactList],
    *,
    segments: Sequence[Segment] = (),
    frequency_cap: str = "",
    small_only: bool = False,
) -> AudienceFacts | None:
    """The audience of ``contact_lists`` and ``segments`` counted, with its
    attribute keys, from the cache the confirmation pages share (see
    campaigns.preview.audience_facts).

    With ``small_only`` (a page view), an audience that is not cached and has more
    than :data:`INLINE_AUDIENCE_LIMIT` memberships (or any segment) is not counted
    (None): the page then leaves it to the panel's first request.
    """
    return shared_audience_facts(
        contact_lists,
        segments=segments,
        frequency_cap=frequency_cap,
        max_memberships=INLINE_AUDIENCE_LIMIT if small_only else None,
    )


def _sample_label(first_name: str, last_name: str, phone: str) -> str:
    name = f"{first_name} {last_name}".strip() or "No name"
    return f"{name} · {phone}"


def insertable(key: str) -> bool:
    """Whether the attribute ``key`` can be written as a placeholder: "{shoe size}"
    would not parse (see campaigns.templating for what a name may contain)."""
    try:
        template = parse(f"{{{key}}}")
    except TemplateError:
        return False
    return template.placeholders == (Placeholder(key),)


def _character_row(char: str, count: int, *, in_contact: bool = False) -> dict:
    stand_in = to_gsm(char)
    return {
        "character": char,
        "code": f"U+{ord(char):04X}",
        "name": unicodedata.name(char, "").lower() or "unnamed character",
        "count": count,
        # None: no GSM equivalent; "": removed (zero-width characters).
        "replacement": None if stand_in == char else stand_in,
        "in_contact": in_contact,
    }


def composition(
    *,
    body: str,
    opt_out_footer: str,
    lists: Sequence[ContactList],
    provider: str,
    segments: Sequence[Segment] = (),
    frequency_cap: str = "",
    track_links: bool = True,
    variants: Sequence[dict] = (),
    sample: int | None = None,
    with_contact_data: bool = True,
    audience: str = COUNT,
) -> dict[str, Any]:
    """What the composer's live panel shows for the fields as typed (JSON-ready).

    The message is rendered for one sample contact (the first of the audience
    unless ``sample`` names another) and measured as it would be sent, footer
    included, tracked links as the short links recipients get (see
    campaigns.links). ``variants`` are the campaign's other texts ({"body",
    "share"}): each is measured the same way ("variants", A first) and the cost
    averages them by share. Without ``with_contact_data`` (people who may not see contacts) no
    contact is offered or shown: the message is rendered with the placeholders'
    defaults, ``sample`` is ignored, and attribute keys are offered by name only.
    ``audience`` is :data:`COUNT` (count it if not cached),
    :data:`COUNT_IF_SMALL` (a page view: see :func:`audience_facts`) or
    :data:`SKIP` (a locked campaign: no audience figures, no placeholder check).
    A fixed number of queries whatever the audience's size; with its counts
    cached, a handful of index lookups and one read of up to
    :data:`ESTIMATE_SAMPLE` contacts.
    """
    list_ids = [item.pk for item in lists]
    segment_ids = [item.pk for item in segments]
    has_audience = bool(list_ids or segment_ids)
    facts = None
    if has_audience and audience != SKIP:
        facts = audience_facts(
            lists,
            segments=segments,
            frequency_cap=frequency_cap,
            small_only=audience == COUNT_IF_SMALL,
        )
    pending = has_audience and audience != SKIP and facts is None
    keys = facts.keys if facts else frozenset()

    columns = ("pk", "first_name", "last_name", "phone", "attributes")
    # A page view with segments leaves the sample to the panel's first request
    # too: matching a segment's first contacts may mean scanning the table.
    rows = (
        list(audience_sample(list_ids, segment_ids).values_list(*columns))
        if has_audience and not (pending and segment_ids)
        else []
    )
    chosen = None
    if with_contact_data:
        chosen = next((row for row in rows if row[0] == sample), None)
        if chosen is None and rows:
            chosen = rows[0]

    try:
        template = parse(
            Campaign(body=body, opt_out_footer=opt_out_footer).template_source
        )
    except TemplateError:
        template = None
    links = template_links(template) if template is not None else []
    if template is not None:
        template = with_sample_links(template, track_links=track_links)
    if template is None:
        # The syntax error is reported below; measure the text as written meanwhile.
        text = f"{body}\n{opt_out_footer}" if opt_out_footer else body
    else:
        text = render_for(template, chosen[1:] if chosen else None)
    info = analyze(text)

    written = Counter(c for c in body + opt_out_footer if c not in GSM_SEPTETS)
    characters = [_character_row(char, count) for char, count in written.items()]
    # A name like "Łukasz" forces UCS-2 for that contact only: say where it comes from.
    characters += [
        _character_row(char, text.count(char), in_contact=True)
        for char in info.non_gsm_characters
        if char not in written
    ]
    gsm_body, gsm_footer = to_gsm(body), to_gsm(opt_out_footer)
    judged = audience != SKIP and not pending

    result: dict[str, Any] = {
        "message": {
            "text": text,
            "characters": info.length,
            "encoding": str(info.encoding),
            "encoding_label": ENCODING_LABELS[info.encoding],
            "segments": info.segments,
            "per_segment": info.per_segment,
            "remaining": info.remaining,
        },
        "ucs2_characters": characters,
        "gsm": {
            "body": gsm_body,
            "opt_out_footer": gsm_footer,
            "changes": gsm_body != body or gsm_footer != opt_out_footer,
        },
        # Placeholders are judged against the audience's keys, so not before
        # they are known.
        "problems": (
            validate(body, known_attributes=keys)
            + [
                f"Variant {variant_label(number)}: {problem}"
                for number, variant in enumerate(variants, start=1)
                for problem in validate(variant["body"], known_attributes=keys)
            ]
            if judged
            else []
        ),
        "placeholders": [
            *FIELD_PLACEHOLDERS,
            *sorted(key for key in keys - CONTACT_FIELD_NAMES if insertable(key)),
        ],
        "samples": [
            {"id": pk, "label": _sample_label(first, last, number)}
            for pk, first, last, number, _ in rows[:SAMPLE_CONTACTS]
        ]
        if with_contact_data
        else [],
        "sample": chosen[0] if chosen else None,
        "links": links_summary(links, track_links=track_links),
        "contacts_hidden": not with_contact_data,
        "lists_chosen": has_audience,
        "audience_pending": pending,
        "audience": None,
        "cost": None,
        "variants": [],
    }
    others = [
        (
            _variant_template(variant["body"], opt_out_footer, track_links),
            variant["share"],
        )
        for variant in variants
    ]
    for other, _ in others:
        if other is not None:
            # The variants' own links count too (their templates have the sample
            # short link in place already when tracked: look at the raw text).
            links += [url for url in _raw_links(other) if url not in links]
    result["links"] = links_summary(links, track_links=track_links)
    if others:
        person = chosen[1:] if chosen else None
        result["variants"] = [
            _variant_row(0, 100 - sum(share for _, share in others), text, info),
            *(
                _variant_row(
                    number,
                    share,
                    *_measured(other, person),
                )
                for number, (other, share) in enumerate(others, start=1)
            ),
        ]
    if audience == SKIP or pending:
        return result
    contacts = [row[1:] for row in rows]
    estimate = estimate_from_sample(
        template=template, contacts=contacts, facts=facts, provider=provider
    )
    if others:
        weigh_variants(
            estimate,
            [
                (
                    estimate_from_sample(
                        template=other,
                        contacts=contacts,
                        facts=facts,
                        provider=provider,
                    ),
                    share,
                )
                for other, share in others
            ],
        )
    result["audience"] = {
        "in_lists": estimate.in_lists,
        "in_segments": estimate.in_segments,
        "frequency_capped": estimate.frequency_capped,
        "contacts": estimate.contacts,
        "duplicates": estimate.duplicates,
        "opted_out": estimate.opted_out,
        "suppressed": estimate.suppressed,
        "excluded": estimate.excluded,
        "recipients": estimate.recipients,
        # Facts cached before the count existed have none: shown as 0 until recounted.
        "uncertain_zones": getattr(facts, "uncertain_zones", 0),
    }
    about = "" if estimate.exact else "about "
    result["cost"] = {
        "amount": str(estimate.cost),
        "currency": estimate.currency,
        "exact": estimate.exact,
        "price_per_segment": str(estimate.price_per_segment),
        "price_text": money(
            estimate.price_per_segment, estimate.currency, unit_price=True
        ),
        "segments": estimate.segments,
        "segments_per_message": round(estimate.segments_per_message, 2),
        "text": about + money(estimate.cost, estimate.currency),
    }
    return result


def _variant_template(body: str, footer: str, track_links: bool):
    try:
        return counted_template(
            Campaign(body=body, opt_out_footer=footer).template_source,
            track_links=track_links,
        )
    except TemplateError:
        return None


def _raw_links(template) -> list[str]:
    try:
        return template_links(parse(template.source))
    except TemplateError:
        return []


def _measured(template, person: tuple | None) -> tuple[str, Any]:
    text = render_for(template, person) if template is not None else ""
    return text, analyze(text)


def _variant_row(number: int, share: int, text: str, info) -> dict[str, Any]:
    return {
        "label": variant_label(number),
        "share": share,
        "text": text,
        "characters": info.length,
        "segments": info.segments,
        "encoding_label": ENCODING_LABELS[info.encoding],
    }


def links_summary(links: list[str], *, track_links: bool) -> dict[str, Any]:
    """What the panel says about the web links in the text."""
    tracked = bool(links) and tracking_on(track_links)
    if not links:
        text = ""
    elif tracked:
        count = len(links)
        text = (
            f"{count} link{'' if count == 1 else 's'} tracked: each recipient gets "
            f"a short link of {len(sample_short_url())} characters in "
            f"{'its' if count == 1 else 'their'} place, and clicks show on the "
            "campaign's page."
        )
    elif track_links:
        text = "Links are sent as written: tracking clicks needs PUBLIC_BASE_URL set."
    else:
        text = "Links are sent as written; clicks are not tracked."
    return {"urls": links, "tracked": tracked, "text": text}


def text_runs(text: str, marked: set[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is made of ``marked`` characters), for highlighting."""
    return [
        ("".join(piece), flag)
        for flag, piece in groupby(text, key=lambda char: char in marked)
    ]


#: The audience table: (element id, label, key in the panel's audience, is an
#: exclusion). composer.js writes the same rows.
AUDIENCE_ROWS = [
    ("composer-in-lists", "In the lists", "in_lists", False),
    ("composer-in-segments", "In the segments", "in_segments", False),
    ("composer-duplicates", "Duplicates across lists and segments", "duplicates", True),
    ("composer-opted-out", "Opted out", "opted_out", True),
    ("composer-suppressed", "Suppressed", "suppressed", True),
    ("composer-frequency-cap", "At the frequency cap", "frequency_capped", True),
    ("composer-recipients", "Recipients", "recipients", False),
    # Not a subtraction: recipients whose send window follows several zones.
    ("composer-uncertain-zones", "Time zone uncertain", "uncertain_zones", False),
]


def audience_rows(panel: dict) -> list[dict[str, Any]]:
    """The audience table's rows, "…" while it is being counted."""
    audience = panel.get("audience")
    rows = []
    for element_id, label, key, exclusion in AUDIENCE_ROWS:
        if audience is None:
            text = "…"
        elif exclusion and audience[key]:
            text = f"\N{MINUS SIGN}{audience[key]:,}"
        else:
            text = f"{audience[key]:,}"
        rows.append(
            {
                "id": element_id,
                "label": label,
                "text": text,
                "total": key == "recipients",
                "note": key == "uncertain_zones",
            }
        )
    cost = panel.get("cost")
    rows.append(
        {
            "id": "composer-cost",
            "label": "Estimated cost",
            "text": cost["text"] if cost else "…",
            "total": True,
        }
    )
    return rows


TIMES = "\N{MULTIPLICATION SIGN}"


def cost_basis(panel: dict) -> str:
    """How the cost was worked out: "$0.0075 per segment, times 2 segments per
    message, times 1,200 recipients" (with multiplication signs)."""
    cost, audience = panel.get("cost"), panel.get("audience")
    if not cost or not audience:
        return "Counting the audience…" if panel.get("audience_pending") else ""
    per_message = f"{cost['segments_per_message']:g}"
    text = (
        f"{cost['price_text']} per segment {TIMES} {per_message} "
        f"segment{'' if per_message == '1' else 's'} per message {TIMES} "
        f"{audience['recipients']:,} recipients"
    )
    if not cost["exact"]:
        text += ", segments averaged over a sample of the audience"
    return text + "."


class _Refused(Exception):
    """The services turned a valid form down (e.g. the campaign started sending
    between the page load and the save)."""

    def __init__(self, errors: list[tuple[str | None, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class ComposerMixin(admin.ModelAdmin):
    form = CampaignComposerForm
    inlines = [CampaignVariantInline]
    search_fields = ["name", "body"]
    filter_horizontal = ["lists", "segments"]
    readonly_fields = [
        "status_shown",
        "scheduled_at",
        "sending_hours",
        "created_by",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> list:
        # In the order a marketer works: who, what (the live panel follows the
        # message, see _ComposerAdminForm), then how it is delivered.
        main = ["name"]
        if obj is not None:
            main += [("status_shown", "scheduled_at"), "sending_hours"]
        fieldsets: list = [
            (None, {"fields": main}),
            ("Audience", {"fields": ["lists", "segments"]}),
            (
                MESSAGE_FIELDSET,
                {"fields": ["body", "opt_out_footer", "track_links"]},
            ),
            (
                "Delivery",
                {
                    "fields": [
                        ("provider", "fallback_provider"),
                        "sender",
                        "send_by",
                        "frequency_cap",
                    ]
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(
                (
                    "History",
                    {
                        "classes": ["collapse"],
                        "fields": [
                            ("created_by", "created_at", "updated_at"),
                            ("started_at", "completed_at"),
                        ],
                    },
                )
            )
        return fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: Campaign | None = None
    ) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and content_locked(obj):
            fields += [name for name in CONTENT_FIELDS if name not in fields]
        return fields

    @admin.display(description="Status")
    def status_shown(self, campaign: Campaign) -> str:
        # The lifecycle's words ("Starting"); the page's script updates it in place.
        return format_html(
            '<span id="campaign-status" class="campaign-status campaign-status-{}">'
            "{}</span>",
            status_key(campaign),
            status_display(campaign),
        )

    @admin.display(description="Sending hours")
    def sending_hours(self, campaign: Campaign) -> str:
        if not campaign.send_window:
            return "Any time of day (sending hours can be set when scheduling)"
        try:
            return SendWindow.from_dict(campaign.send_window).describe()
        except WindowError as error:
            return f"Invalid: {error}"

    def get_form(
        self,
        request: HttpRequest,
        obj: Campaign | None = None,
        change: bool = False,
        **kwargs: Any,
    ):
        form = super().get_form(request, obj, change=change, **kwargs)
        refusals = getattr(request, "_composer_refusals", None)
        if refusals:
            form = type(form.__name__, (form,), {"refusals": refusals})
        return form

    # --- Saving through the services ---------------------------------------------

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused as refused:
            # The save was rolled back with the view's transaction. Show the form
            # again as typed, with the service's reason as its errors.
            request._composer_refusals = refused.errors
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(
        self, request: HttpRequest, obj: Campaign, form, change: bool
    ) -> None:
        fields = {
            name: form.cleaned_data[name]
            for name in form.fields
            if name in form.cleaned_data
        }
        try:
            if change:
                campaign_update(campaign=obj, **fields)
                return
            created = campaign_create(
                lists=fields.pop("lists", ()),
                segments=fields.pop("segments", ()),
                created_by=request.user,
                **fields,
            )
        except BodyError as error:
            raise _Refused(
                [(error.field, problem) for problem in error.problems]
            ) from error
        except ProviderUnusable as error:
            raise _Refused([(error.field, str(error))]) from error
        except CampaignError as error:
            raise _Refused([(None, str(error))]) from error
        # The admin goes on with the object it passed in (history, redirect).
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        # The lists and segments were saved by the service, under its content
        # lock; so are the variants, when they changed.
        for formset in formsets:
            if formset.model is not CampaignVariant:
                self.save_formset(request, form, formset, change=change)
                continue
            # What formset.save() would have said, for the admin's change message.
            formset.new_objects, formset.changed_objects = [], []
            formset.deleted_objects = []
            if formset.has_changed() and not content_locked(form.instance):
                try:
                    variants_save(formset, form.instance)
                except BodyError as error:
                    raise _Refused(
                        [(None, problem) for problem in error.problems]
                    ) from error

    # --- The live panel ---------------------------------------------------------

    def get_urls(self) -> list:
        my_urls = [
            path(
                "compose/",
                self.admin_site.admin_view(self.compose_view),
                name="campaigns_campaign_compose",
            )
        ]
        return my_urls + super().get_urls()

    def compose_view(self, request: HttpRequest) -> HttpResponse:
        """The live panel's numbers for the composer's fields as typed (JSON)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (
            self.has_change_permission(request) or self.has_add_permission(request)
        ):
            raise PermissionDenied
        form = ComposeForm(request.POST)
        if not form.is_valid():
            return JsonResponse({"error": form.error_text()}, status=400)
        return JsonResponse(
            composition(
                **form.cleaned_data,
                with_contact_data=self._may_see_contacts(request),
            )
        )

    def _may_see_contacts(self, request: HttpRequest) -> bool:
        # Only whoever may see contacts in the admin sees their data here.
        return can_view_contact_data(request.user)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Campaign | None = None,
    ) -> HttpResponse:
        context.update(self._composer_context(request, context["adminform"].form, obj))
        context["adminform"] = _ComposerAdminForm(context["adminform"])
        # A tool, not a table editor: named after what is being worked on.
        if obj is None:
            context["title"] = "New campaign"
        else:
            context["title"] = page_title(obj)
        context["subtitle"] = None
        # One campaign at a time: after saving, the next step is on its page.
        context["show_save_and_add_another"] = False
        return super().render_change_form(request, context, add, change, form_url, obj)

    def response_add(
        self, request: HttpRequest, obj: Campaign, post_url_continue: str | None = None
    ) -> HttpResponse:
        if (
            IS_POPUP_VAR in request.POST
            or "_continue" in request.POST
            or "_addanother" in request.POST
            or not self.has_view_or_change_permission(request, obj)
        ):
            return super().response_add(request, obj, post_url_continue)
        # "Save" lands on the campaign's page: testing, sending and scheduling
        # happen there, not in the list.
        self.message_user(
            request,
            f"The campaign “{obj}” was created. Send yourself a test, then send it "
            "now or schedule it with the buttons at the top of this page.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse(
                "admin:campaigns_campaign_change",
                args=[obj.pk],
                current_app=self.admin_site.name,
            )
        )

    def _composer_context(
        self, request: HttpRequest, form, obj: Campaign | None
    ) -> dict[str, Any]:
        locked = obj is not None and content_locked(obj)
        may_see_contacts = self._may_see_contacts(request)
        live = "body" in form.fields and not locked
        typed = ComposeForm(data=_typed_values(form))
        if typed.is_valid():
            # A locked campaign's page is about its progress: no audience counts.
            panel = composition(
                **typed.cleaned_data,
                with_contact_data=may_see_contacts,
                audience=SKIP if locked else COUNT_IF_SMALL,
            )
            marked = {row["character"] for row in panel["ucs2_characters"]}
            runs = text_runs(panel["message"]["text"], marked)
        else:
            panel, runs = {"error": typed.error_text(), "audience_pending": True}, []
        lock_message = ""
        if locked:
            if obj.started_at or obj.status == Campaign.Status.SENDING:
                lock_message = "Sending has started: the text can no longer change."
            elif obj.status == Campaign.Status.CANCELLED:
                lock_message = (
                    "This campaign was cancelled: the text can no longer change."
                )
            else:
                lock_message = (
                    f"This campaign is {status_display(obj).lower()}: "
                    "the text can no longer change."
                )
        return {
            "composer": panel,
            "composer_live": live,
            "composer_locked": locked,
            "composer_lock_message": lock_message,
            "composer_text_runs": runs,
            "composer_audience_rows": audience_rows(panel),
            "composer_cost_basis": cost_basis(panel),
            "composer_url": reverse("admin:campaigns_campaign_compose"),
        }


class _ComposerAdminForm(helpers.AdminForm):
    """The change form's fieldsets in two runs, so the live panel sits right under
    the message: the page's loop shows those up to the message, and
    _composer.html the rest (delivery, history) after the panel."""

    def __init__(self, adminform: helpers.AdminForm) -> None:
        self.__dict__.update(adminform.__dict__)
        names = [name for name, _ in self.fieldsets]
        self.composer_split = (
            names.index(MESSAGE_FIELDSET) + 1
            if MESSAGE_FIELDSET in names
            else len(names)
        )

    def __iter__(self):
        return islice(super().__iter__(), self.composer_split)

    def after_composer(self) -> list[helpers.Fieldset]:
        return list(super().__iter__())[self.composer_split :]


def _typed_values(form) -> dict[str, Any]:
    """The composer's fields as the page shows them: typed (a form sent back with
    errors), initial, or the campaign's own for fields that are read-only."""
    instance = form.instance
    values: dict[str, Any] = {}
    values["variants"] = json.dumps(campaign_variants(instance) if instance.pk else [])
    for name in (
        "body",
        "opt_out_footer",
        "provider",
        "lists",
        "segments",
        "frequency_cap",
        "track_links",
    ):
        if name in form.fields:
            values[name] = form[name].value()
        elif name in ("lists", "segments"):
            values[name] = (
                list(getattr(instance, name).values_list("pk", flat=True))
                if instance.pk
                else []
            )
        else:
            values[name] = getattr(instance, name)
    return values
