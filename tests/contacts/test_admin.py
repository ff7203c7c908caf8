"""The marketer-facing contacts admin: import wizard, list and consent actions, pages."""

import csv
import io
from datetime import timedelta

import pytest

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from contacts import admin as contacts_admin, admin_views, services, tasks
from contacts.models import (
    ConsentEvent,
    Contact,
    ContactList,
    ImportJob,
    ListMembership,
    Source,
    Suppression,
)
from smscampaigns.admin_paginator import CappedCountPaginator
from tests.factories import ContactFactory, ContactListFactory, ListMembershipFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:contacts_contact_changelist")
IMPORT = reverse("admin:contacts_contact_import")

SPRING_CSV = (
    "Mobile,First Name,Last Name,Shoe size\n"
    "(415) 555-0101,Ada,Lovelace,38\n"
    "not a number,Bad,Row,40\n"
    "+44 7911 123456,Alan,Turing,44\n"
)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def csv_file(text: str | bytes, name: str = "spring.csv") -> SimpleUploadedFile:
    data = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile(name, data, content_type="text/csv")


def upload(client, text: str | bytes = SPRING_CSV, **fields):
    data = {"file": csv_file(text), "region": "US", **fields}
    return client.post(IMPORT, data)


def mapping(**choices: str) -> dict[str, str]:
    return {f"column_{index}": choice for index, choice in choices.items()}


def columns_url(job: ImportJob) -> str:
    return reverse("admin:contacts_contact_import_columns", args=[job.pk])


def result_url(job: ImportJob) -> str:
    return reverse("admin:contacts_contact_import_result", args=[job.pk])


# --- Import wizard --------------------------------------------------------------


def test_the_contact_list_offers_an_import_button(admin_client):
    page = admin_client.get(CHANGELIST).content.decode()
    assert f'href="{IMPORT}"' in page
    assert "Import contacts" in page


def test_step_one_offers_countries_by_name_and_the_default_country(
    admin_client, settings
):
    settings.PHONE_DEFAULT_REGION = "GB"
    page = admin_client.get(IMPORT).content.decode()
    assert '<option value="DE">Germany (+49)</option>' in page
    assert '<option value="GB" selected>United Kingdom (+44)</option>' in page


def test_the_wizard_imports_good_rows_and_reports_the_bad_one(
    admin_client, admin_user, media_root
):
    response = upload(admin_client, new_list_name="Spring leads")
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response.url == columns_url(job)
    assert job.created_by == admin_user
    assert job.file_name == "spring.csv"
    assert not ContactList.objects.exists(), "the new list waits for the import"

    page = admin_client.get(columns_url(job)).content.decode()
    assert "(415) 555-0101" in page  # the preview
    assert "Spring leads" in page
    # The guesses: Mobile → Phone, names → names, the rest → Attribute.
    assert '<option value="phone" selected>Phone</option>' in page
    assert '<option value="first_name" selected>First name</option>' in page
    assert '<option value="last_name" selected>Last name</option>' in page
    assert '<option value="attribute" selected>Attribute “shoe_size”</option>' in page

    response = admin_client.post(
        columns_url(job),
        mapping(
            **{"0": "phone", "1": "first_name", "2": "last_name", "3": "attribute"}
        ),
    )
    assert response.status_code == 302
    assert response.url == result_url(job)

    ada = Contact.objects.get(phone="+14155550101")
    assert (ada.first_name, ada.attributes) == ("Ada", {"shoe_size": "38"})
    assert Contact.objects.filter(phone="+447911123456").exists()
    spring = ContactList.objects.get(name="Spring leads")
    assert spring.memberships.count() == 2
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert job.contact_list == spring
    assert job.columns["Shoe size"] == "shoe_size"
    assert not list((media_root / "imports").iterdir()), "the file is deleted"

    page = admin_client.get(result_url(job)).content.decode()
    assert "2</strong> new contacts" in page
    assert "1</strong> row not imported" in page
    assert "<td>3</td><td>not a number</td><td>Invalid phone number" in page
    report_url = reverse("admin:contacts_contact_import_errors", args=[job.pk])
    assert report_url in page

    report = admin_client.get(report_url)
    assert report["Content-Type"].startswith("text/csv")
    assert 'filename="spring-errors.csv"' in report["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    # Our two columns, then the file's own, so the report imports again as it is.
    assert rows[0] == [
        "\ufeffImport row",
        "Import error",
        "Mobile",
        "First Name",
        "Last Name",
        "Shoe size",
    ]
    assert rows[1][0] == "3"
    assert rows[1][1].startswith("Invalid phone number")
    assert rows[1][2:] == ["not a number", "Bad", "Row", "40"]


def test_the_default_country_reads_national_numbers(admin_client):
    upload(admin_client, "phone\n07911 123456\n", region="GB")
    job = ImportJob.objects.get()
    admin_client.post(columns_url(job), mapping(**{"0": "phone"}))
    assert Contact.objects.get().phone == "+447911123456"


def test_an_existing_list_can_be_chosen(admin_client):
    vip = ContactListFactory(name="VIP")
    upload(admin_client, "phone\n+14155550102\n", contact_list=vip.pk)
    job = ImportJob.objects.get()
    admin_client.post(columns_url(job), mapping(**{"0": "phone"}))
    assert list(vip.contacts.values_list("phone", flat=True)) == ["+14155550102"]


def test_a_new_list_name_that_exists_means_that_list(admin_client):
    vip = ContactListFactory(name="VIP")
    upload(admin_client, "phone\n+14155550102\n", new_list_name="vip")
    job = ImportJob.objects.get()
    admin_client.post(columns_url(job), mapping(**{"0": "phone"}))
    assert ContactList.objects.get() == vip
    assert vip.contacts.count() == 1


def test_a_list_and_a_new_list_name_together_are_refused(admin_client):
    vip = ContactListFactory()
    response = upload(admin_client, contact_list=vip.pk, new_list_name="Other")
    assert response.status_code == 200
    assert "not both" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_file_that_is_not_text_is_a_form_error(admin_client, media_root):
    response = upload(admin_client, b"phone\xff\xfe,\x00name\n\x81\x82\n")
    assert response.status_code == 200
    assert "The file is not utf-8 text" in response.content.decode()
    assert not ImportJob.objects.exists()
    assert not (media_root / "imports").exists()


def test_an_excel_workbook_is_a_form_error(admin_client):
    response = upload(admin_client, b"PK\x03\x04\x14\x00\x06\x00binary")
    assert response.status_code == 200
    assert "This is an Excel workbook, not a CSV file" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_an_empty_file_is_a_form_error(admin_client):
    response = upload(admin_client, "")
    assert response.status_code == 200
    assert "The submitted file is empty" in response.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"0": "attribute", "1": "first_name"}, "Choose which column holds the phone"),
        ({"0": "phone", "1": "phone"}, "Choose exactly one column as Phone"),
        ({"0": "phone", "1": "attribute", "2": "attribute"}, "would both fill"),
    ],
)
def test_the_column_mapping_is_checked(admin_client, choices, message):
    upload(admin_client, "Mobile,Name,name\n+14155550103,Ada,Lovelace\n")
    job = ImportJob.objects.get()
    response = admin_client.post(
        columns_url(job), {"column_2": "ignore", **mapping(**choices)}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Contact.objects.exists()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING
    assert job.columns is None


def test_a_file_without_a_phone_like_column_asks_for_one(admin_client):
    upload(admin_client, "Name,City\nAda,London\n")
    job = ImportJob.objects.get()
    page = admin_client.get(columns_url(job)).content.decode()
    assert '<option value="phone" selected>' not in page
    response = admin_client.post(
        columns_url(job), mapping(**{"0": "first_name", "1": "attribute"})
    )
    assert "Choose which column holds the phone number" in response.content.decode()


def test_a_file_without_a_header_row_is_pointed_out(admin_client):
    upload(admin_client, "+14155550104,Ada\n+14155550105,Alan\n")
    job = ImportJob.objects.get()
    page = admin_client.get(columns_url(job)).content.decode()
    assert "looks like a phone number" in page


def test_submitting_the_columns_twice_imports_once(admin_client):
    upload(admin_client, "phone\n+14155550106\n")
    job = ImportJob.objects.get()
    admin_client.post(columns_url(job), mapping(**{"0": "phone"}))
    response = admin_client.post(columns_url(job), mapping(**{"0": "phone"}))
    assert response.status_code == 302
    assert response.url == result_url(job)
    job.refresh_from_db()
    assert job.result["created"] == 1


def test_cancelling_deletes_the_upload(admin_client, media_root):
    upload(admin_client)
    job = ImportJob.objects.get()
    response = admin_client.post(
        reverse("admin:contacts_contact_import_cancel", args=[job.pk])
    )
    assert response.status_code == 302
    assert not ImportJob.objects.exists()
    assert not list((media_root / "imports").iterdir())


def test_a_large_file_is_queued_when_a_broker_is_configured(
    admin_client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.CONTACT_IMPORT_BACKGROUND_BYTES = 10
    settings.CELERY_BROKER_URL = "memory://"
    queued = []
    monkeypatch.setattr(tasks.run_import, "delay", queued.append)
    upload(admin_client, new_list_name="Big")
    job = ImportJob.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            columns_url(job),
            mapping(
                **{"0": "phone", "1": "first_name", "2": "last_name", "3": "ignore"}
            ),
        )

    assert response.url == result_url(job)
    assert queued == [str(job.pk)]
    assert not Contact.objects.exists()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING
    assert job.contact_list.name == "Big"
    page = admin_client.get(result_url(job)).content.decode()
    assert "being imported in the background" in page
    assert '<meta http-equiv="refresh"' in page

    # The worker's run stores the result where the page reads it.
    tasks.import_job_run(job_id=str(job.pk))
    page = admin_client.get(result_url(job)).content.decode()
    assert "2</strong> new contacts" in page
    assert '<meta http-equiv="refresh"' not in page
    assert Contact.objects.get(phone="+14155550101").attributes == {}


def test_a_small_file_runs_at_once_even_with_a_broker(admin_client, monkeypatch):
    monkeypatch.setattr(admin_views, "broker_configured", lambda: True)
    monkeypatch.setattr(tasks.run_import, "delay", pytest.fail)
    upload(admin_client, "phone\n+14155550107\n")
    job = ImportJob.objects.get()
    admin_client.post(columns_url(job), mapping(**{"0": "phone"}))
    assert Contact.objects.filter(phone="+14155550107").exists()


def test_the_result_says_plainly_when_errors_were_not_all_kept(admin_client):
    job = ImportJob.objects.create(
        status=ImportJob.Status.DONE,
        file_name="huge.csv",
        columns={"phone": "phone"},
        result={
            "created": 10,
            "updated": 0,
            "skipped": 0,
            "error_count": 1500,
            "errors": [{"row": 2, "phone": "x", "error": "Invalid"}] * 1000,
        },
    )
    page = admin_client.get(result_url(job)).content.decode()
    assert "1500 rows had errors, but only the first 1000 are kept" in page
    assert "The other 500 are not listed anywhere" in page
    assert "The first 100 of 1000 are shown here" in page


def test_a_failed_import_says_why(admin_client):
    job = ImportJob.objects.create(
        status=ImportJob.Status.FAILED,
        file_name="broken.csv",
        columns={},
        error="The file has no phone column.",
    )
    page = admin_client.get(result_url(job)).content.decode()
    assert "The import failed: The file has no phone column." in page


def test_the_error_report_cannot_run_spreadsheet_formulas(admin_client):
    job = ImportJob.objects.create(
        status=ImportJob.Status.DONE,
        columns={},
        result={
            "error_count": 2,
            "errors": [
                {"row": 2, "phone": "=HYPERLINK(1)", "error": "Invalid"},
                {"row": 3, "phone": "+1 (415) 555", "error": "Invalid"},
            ],
        },
    )
    report = admin_client.get(
        reverse("admin:contacts_contact_import_errors", args=[job.pk])
    )
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    # Spreadsheets evaluate "+1 (415) 555" too; the apostrophe only shows it as text.
    assert [row[1] for row in rows[1:]] == ["'=HYPERLINK(1)", "'+1 (415) 555"]


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("+1-2-3", "'+1-2-3"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        (" =HYPERLINK(1)", "' =HYPERLINK(1)"),
        ("\n=1+1", "'\n=1+1"),
        ("\t1", "'\t1"),
        ("\r1", "'\r1"),
        ("Ada", "Ada"),
        ("415 555 0101", "415 555 0101"),
    ],
)
def test_report_cells_are_never_formulas(cell, safe):
    assert admin_views._spreadsheet_safe(cell) == safe


def test_the_error_report_keeps_every_cell_safe_and_imports_again(admin_client):
    upload(
        admin_client,
        "Mobile,First Name,Notes\nnot a number, =CMD(1),@evil\n+14155550111,Ok,\n",
    )
    job = ImportJob.objects.get()
    admin_client.post(
        columns_url(job), mapping(**{"0": "phone", "1": "first_name", "2": "ignore"})
    )
    report = admin_client.get(
        reverse("admin:contacts_contact_import_errors", args=[job.pk])
    )
    text = b"".join(report.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][2:] == ["Mobile", "First Name", "Notes"]
    assert rows[1][2:] == ["not a number", "' =CMD(1)", "'@evil"]

    # The report goes straight back into the wizard: our columns are ignored.
    upload(admin_client, text.replace("not a number", "(415) 555-0112"))
    again = ImportJob.objects.exclude(pk=job.pk).get()
    page = admin_client.get(columns_url(again)).content.decode()
    assert '<option value="ignore" selected>Ignore</option>' in page
    admin_client.post(
        columns_url(again),
        mapping(
            **{
                "0": "ignore",
                "1": "ignore",
                "2": "phone",
                "3": "first_name",
                "4": "ignore",
            }
        ),
    )
    assert Contact.objects.filter(phone="+14155550112").exists()


def test_imports_are_listed_with_their_results(
    admin_client, django_assert_max_num_queries
):
    upload(admin_client, new_list_name="Spring leads")
    job = ImportJob.objects.get()
    admin_client.post(
        columns_url(job),
        mapping(**{"0": "phone", "1": "ignore", "2": "ignore", "3": "ignore"}),
    )
    for _ in range(60):
        ImportJob.objects.create(status=ImportJob.Status.DONE, result={"created": 1})

    url = reverse("admin:contacts_importjob_changelist")
    with django_assert_max_num_queries(12):
        page = admin_client.get(url).content.decode()
    assert "spring.csv" in page
    assert "Spring leads" in page
    assert result_url(job) in page
    assert reverse("admin:contacts_contact_import_errors", args=[job.pk]) in page
    assert reverse("admin:contacts_importjob_add") not in page

    response = admin_client.get(
        reverse("admin:contacts_importjob_change", args=[job.pk])
    )
    assert response.status_code == 302
    assert response.url == result_url(job)


def test_importing_needs_permission_to_add_and_change_contacts(client):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client.force_login(user)
    assert client.get(IMPORT).status_code == 403
    assert f'href="{IMPORT}"' not in client.get(CHANGELIST).content.decode()


# --- List and consent actions ---------------------------------------------------


def action(client, name: str, contacts, url: str = CHANGELIST, **data):
    return client.post(
        url,
        {
            "action": name,
            ACTION_CHECKBOX_NAME: [contact.pk for contact in contacts],
            **data,
        },
    )


def test_add_to_list_asks_for_the_list_first(admin_client):
    contacts = ContactFactory.create_batch(2)
    ContactListFactory(name="VIP")
    response = action(admin_client, "add_to_list", contacts)
    page = response.content.decode()
    assert response.status_code == 200
    assert "2 contacts selected" in page
    assert ">VIP</option>" in page
    assert not ListMembership.objects.exists()


def test_add_to_a_new_list(admin_client):
    chosen = ContactFactory.create_batch(2)
    ContactFactory()
    response = action(
        admin_client, "add_to_list", chosen, post="yes", new_list_name="Newsletter"
    )
    assert response.status_code == 302
    newsletter = ContactList.objects.get(name="Newsletter")
    assert set(newsletter.contacts.all()) == set(chosen)
    assert set(newsletter.memberships.values_list("source", flat=True)) == {
        Source.ADMIN
    }
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == ["Added 2 contacts to “Newsletter”."]


def test_add_to_an_existing_list_counts_only_new_members(admin_client):
    vip = ContactListFactory()
    member, newcomer = ContactFactory.create_batch(2)
    ListMembershipFactory(contact_list=vip, contact=member)
    response = action(
        admin_client, "add_to_list", [member, newcomer], post="yes", contact_list=vip.pk
    )
    assert vip.memberships.count() == 2
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == [f"Added 1 contact to “{vip}”."]


def test_add_to_list_without_a_list_is_refused(admin_client):
    contacts = ContactFactory.create_batch(1)
    response = action(admin_client, "add_to_list", contacts, post="yes")
    assert response.status_code == 200
    assert "Choose a list or type a new list name" in response.content.decode()


def test_select_all_adds_every_matching_contact(admin_client):
    vip = ContactListFactory()
    contacts = ContactFactory.create_batch(3)
    response = action(
        admin_client,
        "add_to_list",
        contacts[:1],
        post="yes",
        select_across="1",
        contact_list=vip.pk,
    )
    assert response.status_code == 302
    assert vip.memberships.count() == 3


def test_remove_from_list(admin_client):
    vip = ContactListFactory()
    leaving, staying = ContactFactory.create_batch(2)
    for contact in (leaving, staying):
        ListMembershipFactory(contact_list=vip, contact=contact)
    page = action(admin_client, "remove_from_list", [leaving]).content.decode()
    assert "new list" not in page
    response = action(
        admin_client, "remove_from_list", [leaving], post="yes", contact_list=vip.pk
    )
    assert response.status_code == 302
    assert list(vip.contacts.all()) == [staying]
    assert Contact.objects.filter(pk=leaving.pk).exists()


def test_opt_out_asks_then_records_consent_events(admin_client):
    subscribed = ContactFactory()
    already = ContactFactory(opted_out_at="2026-01-01T00:00:00Z", opt_out_source="api")
    page = action(admin_client, "opt_out", [subscribed, already]).content.decode()
    assert "1 of them is subscribed and will be" in page
    assert not ConsentEvent.objects.exists()

    response = action(admin_client, "opt_out", [subscribed, already], post="yes")
    assert response.status_code == 302
    subscribed.refresh_from_db()
    assert subscribed.opted_out
    assert subscribed.opt_out_source == Source.ADMIN
    event = ConsentEvent.objects.get()
    assert (event.contact, event.phone, event.kind, event.source) == (
        subscribed,
        subscribed.phone,
        ConsentEvent.Kind.OPT_OUT,
        Source.ADMIN,
    )
    already.refresh_from_db()
    assert already.opt_out_source == "api"


def test_opt_in_records_consent_events_and_lifts_opt_out_suppressions(admin_client):
    opted_out = ContactFactory(
        opted_out_at="2026-01-01T00:00:00Z", opt_out_source="api"
    )
    suppressed = ContactFactory()
    Suppression.objects.create(
        phone=suppressed.phone, reason=Suppression.Reason.OPT_OUT
    )
    by_hand = ContactFactory()
    Suppression.objects.create(phone=by_hand.phone, reason=Suppression.Reason.MANUAL)
    chosen = [opted_out, suppressed, by_hand]
    page = action(admin_client, "opt_in", chosen).content.decode()
    assert "Only opt people back in when they" in page

    response = action(
        admin_client,
        "opt_in",
        chosen,
        post="yes",
        evidence="Each called support on 2026-05-02 and asked to rejoin.",
    )
    assert response.status_code == 302
    opted_out.refresh_from_db()
    assert not opted_out.opted_out
    assert set(
        ConsentEvent.objects.filter(kind=ConsentEvent.Kind.OPT_IN).values_list(
            "contact", "source"
        )
    ) == {(opted_out.pk, Source.ADMIN), (suppressed.pk, Source.ADMIN)}
    assert list(Suppression.objects.values_list("phone", flat=True)) == [by_hand.phone]


def test_opt_out_of_everyone_matching_a_filter(admin_client):
    ContactFactory.create_batch(3)
    response = action(
        admin_client,
        "opt_out",
        Contact.objects.all()[:1],
        url=f"{CHANGELIST}?subscription=subscribed",
        post="yes",
        select_across="1",
    )
    assert response.status_code == 302
    assert Contact.objects.opted_out().count() == 3
    assert ConsentEvent.objects.count() == 3


# --- Pages ----------------------------------------------------------------------


def test_the_contact_page_shows_the_opt_out_state(admin_client):
    contact = ContactFactory(
        opted_out_at="2026-03-04T05:06:00Z", opt_out_source=Source.KEYWORD
    )
    vip = ContactListFactory(name="VIP")
    ListMembershipFactory(contact_list=vip, contact=contact)
    page = admin_client.get(
        reverse("admin:contacts_contact_change", args=[contact.pk])
    ).content.decode()
    assert "Opted out</span>" in page
    assert "Opted out since March 4, 2026" in page
    assert "via keyword reply" in page
    assert f"memberships__contact_list__id__exact={vip.pk}" in page
    assert "Consent history" in page
    consent_url = reverse("admin:contacts_contact_consent", args=[contact.pk, "opt-in"])
    assert consent_url in page


def test_the_contact_page_shows_a_subscribed_contact(
    admin_client, django_assert_max_num_queries
):
    contact = ContactFactory()
    with django_assert_max_num_queries(20):
        page = admin_client.get(
            reverse("admin:contacts_contact_change", args=[contact.pk])
        ).content.decode()
    assert "Subscribed</span>" in page
    assert "Gets your campaigns." in page
    assert "Lists: none" in page


def test_the_contact_page_says_when_the_number_is_suppressed(admin_client):
    contact = ContactFactory()
    Suppression.objects.create(phone=contact.phone, reason=Suppression.Reason.INVALID)
    page = admin_client.get(
        reverse("admin:contacts_contact_change", args=[contact.pk])
    ).content.decode()
    assert "Suppressed</span>" in page
    assert "number invalid or deactivated" in page


def test_one_contact_can_be_opted_out_and_back_in_from_its_page(admin_client):
    contact = ContactFactory()
    url = reverse("admin:contacts_contact_consent", args=[contact.pk, "opt-out"])
    assert "Yes, opt out" in admin_client.get(url).content.decode()
    response = admin_client.post(url)
    assert response.url == reverse("admin:contacts_contact_change", args=[contact.pk])
    contact.refresh_from_db()
    assert contact.opt_out_source == Source.ADMIN

    opt_in_url = reverse("admin:contacts_contact_consent", args=[contact.pk, "opt-in"])
    page = admin_client.post(opt_in_url).content.decode()
    assert "This field is required" in page, "an opt-in needs its evidence"
    contact.refresh_from_db()
    assert contact.opted_out
    admin_client.post(opt_in_url, {"evidence": "Asked by phone, ticket 4411."})
    contact.refresh_from_db()
    assert not contact.opted_out
    assert ConsentEvent.objects.filter(
        kind=ConsentEvent.Kind.OPT_IN, text="Asked by phone, ticket 4411."
    ).exists()
    assert list(ConsentEvent.objects.order_by("id").values_list("kind", "source")) == [
        (ConsentEvent.Kind.OPT_OUT, Source.ADMIN),
        (ConsentEvent.Kind.OPT_IN, Source.ADMIN),
    ]


def test_an_unknown_consent_change_is_not_found(admin_client):
    contact = ContactFactory(opted_out_at="2026-01-01T00:00:00Z")
    url = reverse("admin:contacts_contact_consent", args=[contact.pk, "whatever"])
    assert admin_client.post(url).status_code == 404
    contact.refresh_from_db()
    assert contact.opted_out


def test_the_opt_out_fields_are_not_edited_by_hand(admin_client):
    contact = ContactFactory()
    page = admin_client.get(
        reverse("admin:contacts_contact_change", args=[contact.pk])
    ).content.decode()
    assert 'name="opted_out_at"' not in page


def test_the_contact_list_shows_subscription_in_bounded_queries(
    admin_client, django_assert_max_num_queries
):
    ContactFactory.create_batch(55)
    out = ContactFactory(opted_out_at="2026-01-01T00:00:00Z")
    suppressed = ContactFactory()
    Suppression.objects.create(phone=suppressed.phone)
    with django_assert_max_num_queries(12):
        page = admin_client.get(CHANGELIST).content.decode()
    assert page.count("Subscribed</span>") == 55
    assert page.count("Opted out</span>") == 1
    assert page.count("Suppressed</span>") == 1

    page = admin_client.get(CHANGELIST, {"subscription": "opted_out"}).content.decode()
    assert out.phone in page
    assert suppressed.phone not in page
    page = admin_client.get(CHANGELIST, {"subscription": "subscribed"}).content.decode()
    assert out.phone not in page
    assert suppressed.phone not in page


def test_lists_show_member_counts_and_link_to_their_contacts(
    admin_client, django_assert_max_num_queries
):
    vip = ContactListFactory(name="VIP")
    for contact in ContactFactory.create_batch(3):
        ListMembershipFactory(contact_list=vip, contact=contact)
    ContactListFactory.create_batch(55)
    with django_assert_max_num_queries(10):
        page = admin_client.get(
            reverse("admin:contacts_contactlist_changelist")
        ).content.decode()
    assert (
        f'{CHANGELIST}?memberships__contact_list__id__exact={vip.pk}">3 contacts'
        in page
    )
    assert page.count(">0 contacts</a>") == 55

    page = admin_client.get(
        reverse("admin:contacts_contactlist_changelist"), {"q": "VIP"}
    ).content.decode()
    assert "3 contacts" in page
    assert "0 contacts" not in page


# --- A million contacts: filters, search and counts that stay cheap -------------


@pytest.fixture
def no_cached_countries():
    cache.delete(contacts_admin.COUNTRY_CHOICES_CACHE_KEY)
    yield
    cache.delete(contacts_admin.COUNTRY_CHOICES_CACHE_KEY)


def test_filtering_by_list_shows_each_member_once(
    admin_client, django_assert_max_num_queries
):
    vip, spring = ContactListFactory(name="VIP"), ContactListFactory(name="Spring")
    both = ContactFactory(first_name="Both")
    both.lists.add(vip, spring)
    only_vip = ContactFactory(first_name="Onlyvip")
    only_vip.lists.add(vip)
    outsider = ContactFactory(first_name="Outsider")
    # The link the lists page and the contact page use.
    with django_assert_max_num_queries(10):
        page = admin_client.get(
            CHANGELIST, {"memberships__contact_list__id__exact": vip.pk}
        ).content.decode()
    assert page.count(f">{both.phone}</a>") == 1
    assert only_vip.phone in page
    assert outsider.phone not in page
    assert '<span id="contacts-count">2 contacts</span>' in page
    assert ">VIP</a>" in page
    assert ">Spring</a>" in page


@pytest.mark.parametrize("value", ["abc", "999999", str(2**70), "²"])
def test_an_unknown_list_in_the_filter_lists_nobody(admin_client, value):
    ContactFactory()
    response = admin_client.get(
        CHANGELIST, {"memberships__contact_list__id__exact": value}
    )
    assert response.status_code == 200
    assert '<span id="contacts-count">0 contacts</span>' in response.content.decode()


def test_the_country_filter_names_the_countries_of_the_contacts(
    admin_client, no_cached_countries
):
    american = ContactFactory(phone="+14155550101")
    german = ContactFactory(phone="+4915112345678")
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Germany (+49)</a>" in page
    assert "United States (+1)</a>" in page
    assert "France" not in page

    page = admin_client.get(CHANGELIST, {"country": "DE"}).content.decode()
    assert german.phone in page
    assert american.phone not in page


def test_a_new_country_filters_at_once_while_the_choices_are_cached(
    admin_client, no_cached_countries
):
    ContactFactory(phone="+14155550101")
    admin_client.get(CHANGELIST)  # the choices are now cached
    french = ContactFactory(phone="+33612345678")

    page = admin_client.get(CHANGELIST, {"country": "FR"}).content.decode()

    assert french.phone in page
    assert "France (+33)</a>" in page  # the chosen country is offered


@pytest.mark.parametrize(
    "typed", ["(415) 555-0101", "+1 415-555-0101", "4155550101", "+14155550101"]
)
def test_a_whole_number_in_any_format_finds_its_contact(
    admin_client, typed, django_assert_max_num_queries
):
    ada = ContactFactory(phone="+14155550101", first_name="Ada")
    ContactFactory(phone="+14155550102", first_name="Alan")
    with django_assert_max_num_queries(10):
        page = admin_client.get(CHANGELIST, {"q": typed}).content.decode()
    assert ada.phone in page
    assert "+14155550102" not in page
    assert "1 result" in page


def test_part_of_a_number_and_names_are_searched(admin_client):
    ada = ContactFactory(phone="+14155550101", first_name="Ada", last_name="Lovelace")
    alan = ContactFactory(phone="+12065550199", first_name="Alan", last_name="Turing")

    def found(text: str) -> set[str]:
        page = admin_client.get(CHANGELIST, {"q": text}).content.decode()
        return {c.phone for c in (ada, alan) if c.phone in page}

    assert found("555-01") == {ada.phone, alan.phone}
    assert found("(415) 555") == {ada.phone}
    assert found("ada love") == {ada.phone}
    assert found("turing") == {alan.phone}
    assert found("Zebedee") == set()


def test_a_large_result_is_counted_up_to_a_cap(admin_client, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    ContactFactory.create_batch(5)
    page = admin_client.get(CHANGELIST).content.decode()
    assert '<span id="contacts-count">More than 3 contacts</span>' in page
    assert "Filter by list, subscription or country, or search" in page

    page = admin_client.get(CHANGELIST, {"q": "555"}).content.decode()
    assert "more than 3 results" in page


def test_a_small_result_is_listed_without_searching_again(
    admin_client, django_assert_num_queries
):
    ada = ContactFactory(first_name="Ada", last_name="Lovelace")
    ContactFactory.create_batch(3, first_name="Alan", last_name="Turing")
    admin_client.get(CHANGELIST)  # the country filter's choices are now cached
    # Session, user, the list filter's lists, the ids found (the count), then the
    # contact found, fetched by its id rather than by searching the table again.
    with django_assert_num_queries(5) as captured:
        page = admin_client.get(CHANGELIST, {"q": "lovelace"}).content.decode()
    assert ada.phone in page
    assert "Turing" not in page
    listing = captured.captured_queries[-1]["sql"]
    assert f'"contacts_contact"."id" IN ({ada.pk})' in listing


def test_only_the_number_column_offers_sorting(admin_client):
    ContactFactory()
    page = admin_client.get(CHANGELIST).content.decode()
    assert page.count('class="sortable') == 1
    assert 'class="sortable column-phone' in page


def test_lists_can_be_sorted_by_their_member_counts(admin_client):
    small, large = ContactListFactory(name="Small"), ContactListFactory(name="Large")
    ListMembershipFactory(contact_list=small)
    for contact in ContactFactory.create_batch(3):
        ListMembershipFactory(contact_list=large, contact=contact)
    url = reverse("admin:contacts_contactlist_changelist")
    page = admin_client.get(url, {"o": "-2"}).content.decode()
    assert page.index(">Large</a>") < page.index(">Small</a>")
    assert "3 contacts" in page
    assert "1 contact<" in page


# --- Opt-outs are never lost through the admin ----------------------------------


def staff(*codenames: str) -> User:
    user = User.objects.create_user(
        f"staff{User.objects.count()}", password="pw", is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="contacts", codename__in=codenames
        )
    )
    return user


def opted_out_contact(phone: str = "+14155550177") -> Contact:
    services.contact_upsert(phone=phone)
    services.contact_opt_out(phone=phone, source=Source.KEYWORD, text="STOP")
    return Contact.objects.get(phone=phone)


def test_deleting_an_opted_out_contact_keeps_its_opt_out(admin_client):
    contact = opted_out_contact()
    subscribed = ContactFactory()
    response = action(
        admin_client, "delete_selected", [contact, subscribed], post="yes"
    )
    assert response.status_code == 302
    assert not Contact.objects.exists()
    suppression = Suppression.objects.get()
    assert (suppression.phone, suppression.reason, suppression.source) == (
        "+14155550177",
        Suppression.Reason.OPT_OUT,
        Source.KEYWORD,
    )
    assert ConsentEvent.objects.filter(phone="+14155550177", kind="opt_out").exists()
    # Imported again later: still no marketing.
    services.contact_upsert(phone="+14155550177", first_name="Re-imported")
    assert not Contact.objects.reachable().filter(phone="+14155550177").exists()


def test_deleting_one_opted_out_contact_from_its_page_keeps_its_opt_out(admin_client):
    contact = opted_out_contact()
    response = admin_client.post(
        reverse("admin:contacts_contact_delete", args=[contact.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert Suppression.objects.filter(
        phone="+14155550177", reason=Suppression.Reason.OPT_OUT
    ).exists()


def test_deleting_everyone_matching_a_filter_is_set_based(
    admin_client, django_assert_max_num_queries
):
    for index in range(5):
        # Exchange 556: ContactFactory's numbers (exchange 555) never collide with it.
        opted_out_contact(f"+1415556013{index}")
    ContactFactory.create_batch(3)
    with django_assert_max_num_queries(30):
        action(
            admin_client,
            "delete_selected",
            Contact.objects.all()[:1],
            post="yes",
            select_across="1",
        )
    assert not Contact.objects.exists()
    assert Suppression.objects.count() == 5


def test_the_number_of_an_existing_contact_cannot_be_changed(admin_client):
    contact = opted_out_contact()
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="phone"' not in page
    assert "+14155550177" in page
    assert (
        'name="phone"'
        in admin_client.get(reverse("admin:contacts_contact_add")).content.decode()
    )


def test_an_opt_out_suppression_cannot_be_deleted_from_the_admin(admin_client):
    opt_out = Suppression.objects.create(
        phone="+14155550199", reason=Suppression.Reason.OPT_OUT
    )
    delete_url = reverse("admin:contacts_suppression_delete", args=[opt_out.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    manual = Suppression.objects.create(phone="+14155550198")
    changelist = reverse("admin:contacts_suppression_changelist")
    response = admin_client.post(
        changelist,
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [opt_out.pk, manual.pk],
            "post": "yes",
        },
    )
    assert response.status_code in (200, 403)
    assert Suppression.objects.count() == 2
    change = admin_client.get(
        reverse("admin:contacts_suppression_change", args=[opt_out.pk])
    ).content.decode()
    assert 'name="reason"' not in change


def test_other_suppressions_are_added_and_deleted_through_the_services(admin_client):
    add_url = reverse("admin:contacts_suppression_add")
    response = admin_client.post(
        add_url, {"phone": "(415) 555-0197", "reason": "manual", "note": "Complaint"}
    )
    assert response.status_code == 302
    manual = Suppression.objects.get()
    assert (manual.phone, manual.source) == ("+14155550197", Source.ADMIN)
    assert not ConsentEvent.objects.exists(), "our decision, not the person's"
    admin_client.post(
        reverse("admin:contacts_suppression_delete", args=[manual.pk]),
        {"post": "yes"},
    )
    assert not Suppression.objects.exists()

    contact = ContactFactory(phone="+14155550196")
    admin_client.post(
        add_url, {"phone": "+14155550196", "reason": "opt_out", "note": "Emailed STOP"}
    )
    event = ConsentEvent.objects.get()
    assert (event.kind, event.source, event.text, event.contact) == (
        ConsentEvent.Kind.OPT_OUT,
        Source.ADMIN,
        "Emailed STOP",
        contact,
    )
    contact.refresh_from_db()
    assert contact.opted_out


# --- Bulk opt-in needs evidence, a small selection and the permission -------------


def test_bulk_opt_in_needs_a_note_of_the_evidence(admin_client):
    people = [ContactFactory(opted_out_at="2026-01-01T00:00:00Z") for _ in range(2)]
    page = action(admin_client, "opt_in", people, post="yes").content.decode()
    assert "This field is required" in page
    assert Contact.objects.opted_out().count() == 2
    action(admin_client, "opt_in", people, post="yes", evidence="  ")
    assert Contact.objects.opted_out().count() == 2
    action(admin_client, "opt_in", people, post="yes", evidence="Signed forms, May 2")
    assert not Contact.objects.opted_out().exists()
    assert set(ConsentEvent.objects.values_list("text", flat=True)) == {
        "Signed forms, May 2"
    }


def test_bulk_opt_in_is_refused_for_more_than_a_hundred(admin_client, monkeypatch):
    monkeypatch.setattr(admin_views, "MAX_OPT_IN", 3)
    people = [ContactFactory(opted_out_at="2026-01-01T00:00:00Z") for _ in range(4)]
    response = action(
        admin_client,
        "opt_in",
        people[:1],
        post="yes",
        select_across="1",
        evidence="Everyone said yes",
    )
    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == [
        "Opt in at most 3 contacts at a time: only people who asked for it, each "
        "with the evidence of their consent."
    ]
    assert Contact.objects.opted_out().count() == 4


def test_bulk_opt_in_is_capped_at_a_hundred():
    assert admin_views.MAX_OPT_IN == 100


def test_bulk_opt_in_needs_the_change_permission(client):
    person = ContactFactory(opted_out_at="2026-01-01T00:00:00Z")
    client.force_login(staff("view_contact"))
    action(client, "opt_in", [person], post="yes", evidence="Asked")
    person.refresh_from_db()
    assert person.opted_out


# --- The consent page's URL -----------------------------------------------------


def test_the_consent_page_takes_only_numeric_ids(admin_client):
    # Not our view: the admin's catch-all sends it to a missing contact.
    response = admin_client.get(
        "/admin/contacts/contact/abc/consent/opt-out/", follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("admin:index")


def test_the_consent_page_checks_permission_before_the_id(client):
    contact = ContactFactory()
    client.force_login(staff("view_contact"))
    for pk in (contact.pk, contact.pk + 999):
        url = reverse("admin:contacts_contact_consent", args=[pk, "opt-out"])
        assert client.get(url).status_code == 403


# --- Creating lists needs the permission -----------------------------------------


def test_a_new_list_from_the_action_needs_the_add_list_permission(client):
    contact = ContactFactory()
    client.force_login(staff("view_contact", "change_contact"))
    page = action(
        client, "add_to_list", [contact], post="yes", new_list_name="Sneaky"
    ).content.decode()
    assert not ContactList.objects.exists()
    assert 'name="new_list_name"' not in page


def test_a_new_list_from_the_import_needs_the_add_list_permission(client):
    client.force_login(staff("view_contact", "change_contact", "add_contact"))
    page = client.get(IMPORT).content.decode()
    assert 'name="new_list_name"' not in page
    upload(client, new_list_name="Sneaky")
    job = ImportJob.objects.get()
    assert job.new_list_name == ""


def test_a_new_list_name_in_any_case_means_the_existing_list():
    vip = ContactListFactory(name="VIP")
    assert services.contact_list_get_or_create(name=" vip ") == (vip, False)
    made, created = services.contact_list_get_or_create(name="Spring")
    assert created
    assert made.name == "Spring"


# --- Search and links -----------------------------------------------------------


def test_a_number_in_national_format_finds_the_contact(
    admin_client, django_assert_max_num_queries
):
    wanted = ContactFactory(phone="+14155550123")
    ContactFactory(phone="+14155550124")
    with django_assert_max_num_queries(20):
        page = admin_client.get(CHANGELIST, {"q": "(415) 555-0123"}).content.decode()
    assert reverse("admin:contacts_contact_change", args=[wanted.pk]) in page
    assert "+14155550124" not in page


def test_the_contact_page_links_to_its_messages_and_replies(admin_client):
    contact = ContactFactory()
    page = admin_client.get(
        reverse("admin:contacts_contact_change", args=[contact.pk])
    ).content.decode()
    messages_url = (
        f"{reverse('admin:campaigns_message_changelist')}"
        f"?contact__id__exact={contact.pk}"
    )
    replies_url = (
        f"{reverse('admin:webhooks_inboundmessage_changelist')}"
        f"?contact__id__exact={contact.pk}"
    )
    assert messages_url.replace("&", "&amp;") in page
    assert replies_url in page
    # Both lists accept the filter.
    assert admin_client.get(messages_url).status_code == 200
    assert admin_client.get(replies_url).status_code == 200


# --- Large imports without a broker ----------------------------------------------


def test_a_large_file_waits_for_run_worker_without_a_broker(admin_client, settings):
    settings.CONTACT_IMPORT_BACKGROUND_BYTES = 10
    settings.CELERY_BROKER_URL = ""
    upload(admin_client)
    job = ImportJob.objects.get()
    admin_client.post(
        columns_url(job),
        mapping(**{"0": "phone", "1": "first_name", "2": "last_name", "3": "ignore"}),
    )
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING
    assert not Contact.objects.exists(), "not inside the web request"
    page = admin_client.get(result_url(job)).content.decode()
    assert "Waiting for the worker (<code>python manage.py run_worker</code>)" in page
    assert '<meta http-equiv="refresh"' in page

    call_command("run_worker", "--once", stdout=io.StringIO())
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert job.progress_at is not None
    assert Contact.objects.count() == 2
    page = admin_client.get(result_url(job)).content.decode()
    assert "2</strong> new contacts" in page


def test_an_import_whose_worker_died_fails_and_stops_refreshing(admin_client):
    job = ImportJob.objects.create(
        status=ImportJob.Status.RUNNING,
        columns={},
        file_name="big.csv",
        progress_at=timezone.now() - timedelta(minutes=tasks.STALLED_MINUTES + 1),
    )
    fresh = ImportJob.objects.create(
        status=ImportJob.Status.RUNNING, columns={}, progress_at=timezone.now()
    )
    page = admin_client.get(result_url(job)).content.decode()
    assert "The import stopped" in page
    assert '<meta http-equiv="refresh"' not in page

    tasks.import_jobs_run_pending(limit=1)
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "stopped (no progress for 15 minutes)" in job.error
    assert fresh.status == ImportJob.Status.RUNNING
    page = admin_client.get(result_url(job)).content.decode()
    assert '<meta http-equiv="refresh"' not in page
    assert "The import failed: The worker running the import stopped" in page


def test_uploads_abandoned_at_the_columns_step_are_deleted_after_a_day(
    admin_client, media_root
):
    upload(admin_client)
    upload(admin_client, "phone\n+14155550107\n")
    old, recent = ImportJob.objects.order_by("created_at")
    ImportJob.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    tasks.import_jobs_run_pending(limit=1)
    assert list(ImportJob.objects.all()) == [recent]
    assert [path.name for path in (media_root / "imports").iterdir()] == [
        f"{recent.pk}.csv"
    ]
