"""The contacts REST API: contacts, lists, list members and imports under /api/v1/."""

import uuid

import pytest
from rest_framework.test import APIClient

from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from contacts import tasks
from contacts.models import (
    ConsentEvent,
    Contact,
    ContactList,
    ImportJob,
    ListMembership,
    Source,
)
from smscampaigns.models import ApiKey, Scope
from tests.factories import ContactFactory, ContactListFactory, ListMembershipFactory

pytestmark = pytest.mark.django_db

ANN = "+14155550123"
BOB = "+12125550123"
CAT = "+447911123456"

CONTACT_FIELDS = {
    "id",
    "phone",
    "first_name",
    "last_name",
    "attributes",
    "time_zone",
    "time_zones",
    "lists",
    "opted_out",
    "opted_out_at",
    "created_at",
}


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def client() -> APIClient:
    _, raw = ApiKey.generate(name="tests", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def field_errors(response) -> dict:
    body = response.json()
    assert body["error"]["status"] == response.status_code
    return body["error"].get("fields", {})


# --- Contacts -------------------------------------------------------------------


def test_requests_without_an_api_key_are_refused():
    anonymous = APIClient()
    for url in [
        "/api/v1/contacts/",
        "/api/v1/lists/",
        "/api/v1/contacts/import/",
        f"/api/v1/contacts/import/{uuid.uuid4()}/",
    ]:
        response = anonymous.get(url)
        assert response.status_code == 401, url
        assert response.json()["error"]["status"] == 401


def test_create_contact_returns_exactly_the_contract_fields_with_e164_phone(client):
    shoppers = ContactListFactory()

    response = client.post(
        "/api/v1/contacts/",
        {
            "phone": "(415) 555-0123",
            "first_name": "Ann",
            "last_name": "Lee",
            "attributes": {"city": "Austin"},
            "lists": [shoppers.pk],
        },
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == CONTACT_FIELDS
    assert body["phone"] == ANN
    assert (body["first_name"], body["last_name"]) == ("Ann", "Lee")
    assert body["attributes"] == {"city": "Austin"}
    assert body["lists"] == [shoppers.pk]
    assert body["opted_out"] is False
    assert body["opted_out_at"] is None
    membership = ListMembership.objects.get(contact_id=body["id"])
    assert membership.source == Source.API


@pytest.mark.parametrize(
    ("phone", "region", "expected"),
    [
        ("+14155550123", None, ANN),
        ("14155550123", None, ANN),
        ("447911123456", None, CAT),
        ("07911 123456", "GB", CAT),
    ],
)
def test_phone_is_accepted_in_common_formats(client, phone, region, expected):
    data = {"phone": phone} | ({"region": region} if region else {})

    response = client.post("/api/v1/contacts/", data)

    assert response.status_code == 201, response.json()
    assert response.json()["phone"] == expected
    assert "region" not in response.json()


def test_invalid_phone_is_a_400_naming_the_field_and_value(client):
    response = client.post("/api/v1/contacts/", {"phone": "12345"})

    assert response.status_code == 400
    [message] = field_errors(response)["phone"]
    assert message.startswith("'12345' is not a valid phone number: ")
    assert not Contact.objects.exists()


def test_unknown_region_is_refused(client):
    response = client.post(
        "/api/v1/contacts/", {"phone": "07911 123456", "region": "XX"}
    )

    assert response.status_code == 400
    assert "region" in field_errors(response)


def test_duplicate_phone_is_a_400_naming_the_existing_contact(client):
    existing = ContactFactory(phone=ANN)

    response = client.post("/api/v1/contacts/", {"phone": "415-555-0123"})

    assert response.status_code == 400
    assert field_errors(response)["phone"] == [
        f"A contact with phone {ANN} already exists (id {existing.pk})."
    ]


def test_changing_a_number_to_one_already_taken_is_a_400(client):
    ContactFactory(phone=ANN)
    bob = ContactFactory(phone=BOB)

    response = client.patch(f"/api/v1/contacts/{bob.pk}/", {"phone": ANN})

    assert response.status_code == 400
    assert "already exists" in field_errors(response)["phone"][0]
    # Saving a contact with its own number is not a duplicate.
    assert (
        client.patch(f"/api/v1/contacts/{bob.pk}/", {"phone": BOB}).status_code == 200
    )


@pytest.mark.parametrize("attributes", [["a"], "city", 3, None, {"note": "a\x00b"}])
def test_attributes_must_be_a_json_object(client, attributes):
    response = client.post(
        "/api/v1/contacts/", {"phone": ANN, "attributes": attributes}, format="json"
    )

    assert response.status_code == 400
    assert "attributes" in field_errors(response)


@pytest.mark.parametrize(
    "data",
    [
        {"phone": 14155550123},
        {"phone": ANN, "first_name": "x" * 101},
        {"phone": ANN, "lists": "1"},
        {"phone": ANN, "lists": [True]},
        {"phone": ANN, "lists": [2**70]},
        {"phone": ANN, "lists": [0]},
    ],
)
def test_wrongly_typed_or_out_of_range_values_are_400(client, data):
    response = client.post("/api/v1/contacts/", data, format="json")

    assert response.status_code == 400
    assert set(field_errors(response)) & set(data)


def test_unknown_list_ids_are_listed_in_the_error(client):
    response = client.post("/api/v1/contacts/", {"phone": ANN, "lists": [998, 999]})

    assert response.status_code == 400
    assert field_errors(response)["lists"] == ["Unknown list ids: 998, 999."]


def test_setting_lists_replaces_memberships(client):
    old, kept, new = ContactListFactory.create_batch(3)
    contact = ContactFactory()
    ListMembershipFactory(contact=contact, contact_list=old)
    ListMembershipFactory(contact=contact, contact_list=kept, source=Source.IMPORT)

    response = client.patch(
        f"/api/v1/contacts/{contact.pk}/", {"lists": [kept.pk, new.pk]}
    )

    assert response.status_code == 200, response.json()
    assert response.json()["lists"] == sorted([kept.pk, new.pk])
    sources = dict(
        ListMembership.objects.filter(contact=contact).values_list(
            "contact_list_id", "source"
        )
    )
    # A membership that stays keeps its origin; the new one says it came from the API.
    assert sources == {kept.pk: Source.IMPORT, new.pk: Source.API}


def test_patch_without_lists_leaves_memberships_alone(client):
    membership = ListMembershipFactory()

    response = client.patch(
        f"/api/v1/contacts/{membership.contact_id}/", {"first_name": "Zed"}
    )

    assert response.status_code == 200
    assert response.json()["lists"] == [membership.contact_list_id]


def test_opted_out_cannot_be_patched(client):
    contact = ContactFactory()

    response = client.patch(f"/api/v1/contacts/{contact.pk}/", {"opted_out": True})

    assert response.status_code == 200
    assert response.json()["opted_out"] is False
    contact.refresh_from_db()
    assert contact.opted_out_at is None


def test_opt_out_and_opt_in_actions_record_consent_events_from_the_api(client):
    contact = ContactFactory(phone=ANN)

    out = client.post(f"/api/v1/contacts/{contact.pk}/opt-out/")
    assert out.status_code == 200
    assert out.json()["opted_out"] is True
    assert out.json()["opted_out_at"] is not None

    back = client.post(f"/api/v1/contacts/{contact.pk}/opt-in/")
    assert back.status_code == 200
    assert back.json()["opted_out"] is False

    events = ConsentEvent.objects.order_by("id").values_list("kind", "source", "phone")
    assert list(events) == [("opt_out", "api", ANN), ("opt_in", "api", ANN)]


def test_opt_out_of_an_unknown_contact_is_404(client):
    assert client.post("/api/v1/contacts/999999/opt-out/").status_code == 404


def test_deleting_a_contact_keeps_its_consent_history(client):
    contact = ContactFactory(phone=ANN)
    client.post(f"/api/v1/contacts/{contact.pk}/opt-out/")

    response = client.delete(f"/api/v1/contacts/{contact.pk}/")

    assert response.status_code == 204
    assert not Contact.objects.exists()
    event = ConsentEvent.objects.get()
    assert (event.phone, event.contact_id) == (ANN, None)


def test_contacts_filter_by_list_opt_out_and_search(client):
    vips = ContactListFactory()
    ann = ContactFactory(phone=ANN, first_name="Ann")
    bob = ContactFactory(phone=BOB, first_name="Bob")
    cat = ContactFactory(phone=CAT, first_name="Cat")
    ListMembershipFactory(contact=ann, contact_list=vips)
    ListMembershipFactory(contact=bob, contact_list=vips)
    client.post(f"/api/v1/contacts/{bob.pk}/opt-out/")

    def ids(query: str) -> set[int]:
        response = client.get(f"/api/v1/contacts/?{query}")
        assert response.status_code == 200, response.json()
        return {c["id"] for c in response.json()["results"]}

    assert ids(f"list={vips.pk}") == {ann.pk, bob.pk}
    assert ids("opted_out=true") == {bob.pk}
    assert ids("opted_out=false") == {ann.pk, cat.pk}
    assert ids("search=cat") == {cat.pk}
    assert ids("search=7911") == {cat.pk}
    assert ids(f"list={vips.pk}&opted_out=false") == {ann.pk}


@pytest.mark.parametrize(
    "query",
    [
        "list=abc",
        "list=999999",
        f"list={2**70}",
        "opted_out=maybe",
        "search=a%00b",
        "page=99999999999999999999",
        "page=abc",
    ],
)
def test_bad_query_parameters_are_4xx_not_5xx(client, query):
    ContactFactory()

    response = client.get(f"/api/v1/contacts/?{query}")

    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def test_contact_list_shows_list_ids_without_a_query_per_contact(
    client, django_assert_max_num_queries
):
    lists = ContactListFactory.create_batch(2)
    for contact in ContactFactory.create_batch(20):
        for contact_list in lists:
            ListMembershipFactory(contact=contact, contact_list=contact_list)

    # Auth (2), count, page, memberships.
    with django_assert_max_num_queries(6):
        response = client.get("/api/v1/contacts/")

    assert response.status_code == 200
    assert response.json()["count"] == 20
    assert all(
        c["lists"] == sorted(cl.pk for cl in lists) for c in response.json()["results"]
    )


def test_unknown_or_malformed_contact_ids_are_404(client):
    for pk in ["999999", "abc", str(2**70)]:
        assert client.get(f"/api/v1/contacts/{pk}/").status_code == 404


# --- Lists ----------------------------------------------------------------------


def test_lists_crud_with_contact_counts(client):
    created = client.post(
        "/api/v1/lists/", {"name": "VIP", "description": "Best customers"}
    )
    assert created.status_code == 201, created.json()
    assert created.json() == {
        "id": created.json()["id"],
        "name": "VIP",
        "description": "Best customers",
        "contact_count": 0,
        "signup_keywords": [],
    }
    list_id = created.json()["id"]
    contact_list = ContactList.objects.get(pk=list_id)
    for contact in ContactFactory.create_batch(3):
        ListMembershipFactory(contact=contact, contact_list=contact_list)

    assert client.get(f"/api/v1/lists/{list_id}/").json()["contact_count"] == 3
    renamed = client.patch(f"/api/v1/lists/{list_id}/", {"name": "VIPs"})
    assert renamed.json()["name"] == "VIPs"
    assert renamed.json()["contact_count"] == 3

    assert client.delete(f"/api/v1/lists/{list_id}/").status_code == 204
    assert not ContactList.objects.exists()
    assert Contact.objects.count() == 3


def test_list_index_counts_members_in_one_query(client, django_assert_max_num_queries):
    for size in range(5):
        contact_list = ContactListFactory()
        for contact in ContactFactory.create_batch(size):
            ListMembershipFactory(contact=contact, contact_list=contact_list)

    # Auth (2), count, page, the page's sign-up keywords.
    with django_assert_max_num_queries(5):
        response = client.get("/api/v1/lists/")

    counts = sorted(row["contact_count"] for row in response.json()["results"])
    assert counts == [0, 1, 2, 3, 4]


def test_duplicate_list_name_is_400(client):
    existing = ContactListFactory(name="VIP")

    response = client.post("/api/v1/lists/", {"name": "VIP"})

    assert response.status_code == 400
    assert field_errors(response)["name"] == [
        f"A list named 'VIP' already exists (id {existing.pk})."
    ]


def test_list_name_is_required_and_bounded(client):
    assert "name" in field_errors(client.post("/api/v1/lists/", {}))
    assert "name" in field_errors(client.post("/api/v1/lists/", {"name": "x" * 201}))


def test_adding_members_counts_only_new_ones_and_marks_them_from_the_api(client):
    contact_list = ContactListFactory()
    ann, bob = ContactFactory(), ContactFactory()
    ListMembershipFactory(contact=ann, contact_list=contact_list)

    response = client.post(
        f"/api/v1/lists/{contact_list.pk}/members/", {"contacts": [ann.pk, bob.pk]}
    )

    assert response.status_code == 200
    assert response.json() == {"added": 1}
    assert ListMembership.objects.get(contact=bob).source == Source.API


def test_removing_members_keeps_the_contacts(client):
    contact_list = ContactListFactory()
    ann, bob = ContactFactory(), ContactFactory()
    ListMembershipFactory(contact=ann, contact_list=contact_list)

    response = client.delete(
        f"/api/v1/lists/{contact_list.pk}/members/", {"contacts": [ann.pk, bob.pk]}
    )

    assert response.status_code == 200
    assert response.json() == {"removed": 1}
    assert not ListMembership.objects.exists()
    assert Contact.objects.count() == 2


@pytest.mark.parametrize("method", ["post", "delete"])
def test_unknown_member_ids_are_a_400_listing_them(client, method):
    contact_list = ContactListFactory()
    ann = ContactFactory()

    response = getattr(client, method)(
        f"/api/v1/lists/{contact_list.pk}/members/",
        {"contacts": [ann.pk, 999998, 999999]},
    )

    assert response.status_code == 400
    assert field_errors(response)["contacts"] == [
        "Unknown contact ids: 999998, 999999."
    ]
    assert not ListMembership.objects.exists()


@pytest.mark.parametrize(
    "body", [{}, {"contacts": []}, {"contacts": "1"}, {"contacts": ["a"]}, [1, 2]]
)
def test_members_body_must_be_a_list_of_ids(client, body):
    contact_list = ContactListFactory()

    response = client.post(
        f"/api/v1/lists/{contact_list.pk}/members/", body, format="json"
    )

    assert response.status_code == 400


# --- Import ---------------------------------------------------------------------


def csv_upload(text: str, name: str = "contacts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def test_json_import_creates_updates_and_reports_row_errors(client):
    ContactFactory(phone=BOB, first_name="Bob")
    shoppers = ContactListFactory()

    response = client.post(
        "/api/v1/contacts/import/",
        {
            "contacts": [
                {"phone": ANN, "first_name": "Ann", "attributes": {"city": "Austin"}},
                {"phone": "12345"},
                {"phone": BOB, "last_name": "Ray"},
                {"phone": "07911 123456"},
            ],
            "list": shoppers.pk,
            "region": "GB",
        },
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert {k: body[k] for k in ("created", "updated", "skipped")} == {
        "created": 2,
        "updated": 1,
        "skipped": 0,
    }
    assert body["error_count"] == 1
    [error] = body["errors"]
    assert (error["row"], error["phone"]) == (2, "12345")
    assert error["error"].startswith("Invalid phone number")
    assert Contact.objects.get(phone=ANN).attributes == {"city": "Austin"}
    assert Contact.objects.filter(phone=CAT).exists()
    assert set(shoppers.contacts.values_list("phone", flat=True)) == {ANN, BOB, CAT}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contacts": []},
        {"contacts": {"phone": ANN}},
        {"contacts": ["+14155550123"]},
        {"contacts": [{"first_name": "Ann"}]},
        {"contacts": [{"phone": 14155550123}]},
        {"contacts": [{"phone": ANN, "attributes": ["x"]}]},
        {"contacts": [{"phone": ANN}], "list": 999999},
        {"contacts": [{"phone": ANN}], "list": "abc"},
        {"contacts": [{"phone": ANN}], "region": "gb"},
        [{"phone": ANN}],
    ],
)
def test_json_import_with_the_wrong_shape_is_400(client, body):
    response = client.post("/api/v1/contacts/import/", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400
    assert not Contact.objects.exists()


def test_json_import_is_limited_to_ten_thousand_records(client):
    records = [{"phone": ANN}] * 10_001

    response = client.post("/api/v1/contacts/import/", {"contacts": records})

    assert response.status_code == 400
    assert "contacts" in field_errors(response)


def test_csv_upload_imports_with_spreadsheet_row_numbers_and_list(client):
    vips = ContactListFactory()
    upload = csv_upload(
        "phone,first_name,last_name,city\n"
        f"{ANN},Ann,Lee,Austin\n"
        "not a number,Zed,,\n"
        f"{BOB},Bob,,\n"
    )

    response = client.post(
        "/api/v1/contacts/import/",
        {"file": upload, "list": vips.pk},
        format="multipart",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["created"], body["updated"], body["skipped"]) == (2, 0, 0)
    assert body["errors"] == [
        {
            "row": 3,
            "phone": "not a number",
            "error": body["errors"][0]["error"],
        }
    ]
    assert Contact.objects.get(phone=ANN).attributes == {"city": "Austin"}
    assert vips.contacts.count() == 2


def test_csv_upload_uses_the_region_for_national_numbers(client):
    response = client.post(
        "/api/v1/contacts/import/",
        {"file": csv_upload("phone\n07911 123456\n"), "region": "GB"},
        format="multipart",
    )

    assert response.status_code == 200
    assert Contact.objects.filter(phone=CAT).exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "file"),
        ({"file": "phone\n+14155550123\n"}, "file"),
        ({"file": SimpleUploadedFile("empty.csv", b"")}, "file"),
        ({"file": SimpleUploadedFile("x.xlsx", b"PK\x03\x04\xff\xfe\x00")}, "file"),
        ({"file": SimpleUploadedFile("x.csv", b"name,city\nAnn,Austin\n")}, "file"),
        ({"file": SimpleUploadedFile("x.csv", b"phone\n"), "list": "abc"}, "list"),
        ({"file": SimpleUploadedFile("x.csv", b"phone\n"), "region": "Mars"}, "region"),
    ],
)
def test_bad_csv_uploads_are_400_naming_the_field(client, data, field):
    response = client.post("/api/v1/contacts/import/", data, format="multipart")

    assert response.status_code == 400, response.json()
    assert field in field_errors(response)


def test_broken_multipart_and_other_media_types_are_4xx(client):
    broken = client.post(
        "/api/v1/contacts/import/",
        data=b"--xyz\r\nnot really multipart",
        content_type="multipart/form-data",
    )
    assert broken.status_code == 400

    form = client.post(
        "/api/v1/contacts/import/",
        data="phone=1",
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 415

    not_json = client.post(
        "/api/v1/contacts/import/", data="{", content_type="application/json"
    )
    assert not_json.status_code == 400


def test_small_upload_imports_at_once_even_with_a_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CONTACT_IMPORT_BACKGROUND_BYTES = 1024

    response = client.post(
        "/api/v1/contacts/import/",
        {"file": csv_upload(f"phone\n{ANN}\n")},
        format="multipart",
    )

    assert response.status_code == 200
    assert not ImportJob.objects.exists()


def test_large_upload_without_a_broker_imports_at_once(client, settings):
    settings.CELERY_BROKER_URL = ""
    settings.CONTACT_IMPORT_BACKGROUND_BYTES = 10

    response = client.post(
        "/api/v1/contacts/import/",
        {"file": csv_upload(f"phone\n{ANN}\n{BOB}\n")},
        format="multipart",
    )

    assert response.status_code == 200
    assert response.json()["created"] == 2
    assert not ImportJob.objects.exists()


@pytest.fixture
def background_imports(settings, tmp_path, monkeypatch):
    """A broker is configured, every upload is "large", and queued tasks run inline."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CONTACT_IMPORT_BACKGROUND_BYTES = 10
    settings.MEDIA_ROOT = tmp_path
    queued: list[str] = []

    def delay(job_id: str) -> None:
        queued.append(job_id)
        tasks.run_import(job_id)

    monkeypatch.setattr(tasks.run_import, "delay", delay)
    return queued


def test_large_upload_runs_in_the_background_and_reports_through_the_job(
    client, background_imports, django_capture_on_commit_callbacks, tmp_path
):
    vips = ContactListFactory()
    upload = csv_upload(f"phone,first_name\n{ANN},Ann\n12345,Bad\n{BOB},Bob\n")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/contacts/import/",
            {"file": upload, "list": vips.pk, "region": "US"},
            format="multipart",
        )

    assert response.status_code == 202, response.json()
    body = response.json()
    job_id = body["job"]
    assert body == {
        "job": job_id,
        "status": "pending",
        "url": f"/api/v1/contacts/import/{job_id}/",
    }
    assert background_imports == [job_id]

    job = client.get(body["url"])
    assert job.status_code == 200
    assert job.json() == {
        "job": job_id,
        "status": "done",
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "error_count": 1,
        "errors": [
            {"row": 3, "phone": "12345", "error": job.json()["errors"][0]["error"]}
        ],
    }
    assert vips.contacts.count() == 2
    stored = ImportJob.objects.get(pk=job_id)
    assert (stored.file_name, stored.region, stored.contact_list) == (
        "contacts.csv",
        "US",
        vips,
    )
    assert stored.finished_at is not None
    # The uploaded file, full of numbers, is gone once imported.
    assert not stored.file
    assert not list((tmp_path / "imports").iterdir())


def test_background_upload_with_a_bad_header_is_refused_before_queueing(
    client, background_imports
):
    response = client.post(
        "/api/v1/contacts/import/",
        {"file": csv_upload("name,city\nAnn,Austin\n")},
        format="multipart",
    )

    assert response.status_code == 400
    assert "phone column" in field_errors(response)["file"][0]
    assert not ImportJob.objects.exists()


def test_undecodable_rows_in_a_background_import_are_row_errors(
    client, background_imports, django_capture_on_commit_callbacks
):
    # The header is fine; the body is not text at all from the second line on.
    upload = SimpleUploadedFile("x.csv", b"phone\n" + b"\xff\xfe\n" * 10)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/contacts/import/", {"file": upload}, format="multipart"
        )
    job = client.get(response.json()["url"]).json()

    # One undecodable row per line: reported as row errors, not a failed job.
    assert job["status"] == "done"
    assert job["error_count"] == 10


def test_a_stored_file_that_cannot_be_imported_fails_the_job(
    client, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    job = ImportJob(file_name="empty.csv")
    job.file.save("empty.csv", ContentFile(b""), save=True)

    tasks.run_import(str(job.pk))

    response = client.get(f"/api/v1/contacts/import/{job.pk}/")
    assert response.json() == {
        "job": str(job.pk),
        "status": "failed",
        "error": "The file is empty: expected a header row.",
    }
    assert not list((tmp_path / "imports").iterdir())


def test_a_failed_job_says_why(client):
    job = ImportJob.objects.create(
        status=ImportJob.Status.FAILED,
        error="The file is empty: expected a header row.",
    )

    response = client.get(f"/api/v1/contacts/import/{job.pk}/")

    assert response.json() == {
        "job": str(job.pk),
        "status": "failed",
        "error": "The file is empty: expected a header row.",
    }


def test_a_broker_that_refuses_the_task_fails_the_job(
    client, background_imports, django_capture_on_commit_callbacks, monkeypatch
):
    def refuse(job_id: str) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.run_import, "delay", refuse)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/contacts/import/",
            {"file": csv_upload(f"phone\n{ANN}\n")},
            format="multipart",
        )

    job = client.get(response.json()["url"]).json()
    assert job["status"] == "failed"
    assert "could not be queued" in job["error"]
    assert not Contact.objects.exists()


def test_a_job_runs_once_even_if_the_task_is_delivered_twice(
    client, background_imports, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/contacts/import/",
            {"file": csv_upload(f"phone\n{ANN}\n")},
            format="multipart",
        )
    job_id = response.json()["job"]

    assert tasks.import_job_run(job_id=job_id) is None
    assert client.get(response.json()["url"]).json()["created"] == 1


def test_the_job_records_the_key_that_started_it(
    background_imports, django_capture_on_commit_callbacks
):
    key, raw = ApiKey.generate(name="nightly sync", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/api/v1/contacts/import/",
            {"file": csv_upload(f"phone\n{ANN}\n")},
            format="multipart",
        )

    assert ImportJob.objects.get().created_by_key == key


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_unknown_import_jobs_are_404(client, job_id):
    response = client.get(f"/api/v1/contacts/import/{job_id}/")

    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


# --- Schema ---------------------------------------------------------------------


def test_schema_documents_the_contacts_endpoints(client):
    response = client.get("/api/schema/?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {
        "/api/v1/contacts/",
        "/api/v1/contacts/{id}/",
        "/api/v1/contacts/{id}/opt-out/",
        "/api/v1/contacts/{id}/opt-in/",
        "/api/v1/lists/",
        "/api/v1/lists/{id}/",
        "/api/v1/lists/{id}/members/",
        "/api/v1/contacts/import/",
        "/api/v1/contacts/import/{job_id}/",
    } <= set(paths)
    import_post = paths["/api/v1/contacts/import/"]["post"]
    assert set(import_post["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/json",
    }
    assert {"200", "202", "400"} <= set(import_post["responses"])
    assert "requestBody" in paths["/api/v1/lists/{id}/members/"]["delete"]
