"""The contacts part of the REST API: contacts, lists, members and imports.

Views parse and validate input with ``contacts.serializers``, call the services
(``contacts.services``, ``contacts.imports``, ``contacts.tasks``) and render the
result. Routes are in ``smscampaigns.api_urls``.
"""

import uuid
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Prefetch, QuerySet
from django.urls import reverse

from smscampaigns.api_errors import ErrorResponseSerializer
from smscampaigns.csv_export import CSVRenderer, JSONErrorsMixin, csv_response
from smscampaigns.json_limits import LargeJSONParser, LimitedJSONParser
from smscampaigns.models import ApiKey, Scope
from smscampaigns.permissions import model_rules, rule

from . import services
from .exports import (
    BASE_COLUMNS,
    attribute_keys,
    contact_columns,
    contact_rows,
    contacts_filename,
)
from .filters import ContactFilter
from .imports import (
    SNIFF_BYTES,
    ContactImportError,
    contact_import_csv,
    contact_import_records,
    sniff_csv,
)
from .models import Contact, ContactList, ImportJob, ListMembership, Source
from .permissions import CONTACT_DATA_PERMISSION
from .serializers import (
    ContactListSerializer,
    ContactSerializer,
    ImportCsvInputSerializer,
    ImportJobAcceptedSerializer,
    ImportJobSerializer,
    ImportJsonInputSerializer,
    ImportResultSerializer,
    ListMembersAddedSerializer,
    ListMembersInputSerializer,
    ListMembersRemovedSerializer,
    duplicate_contact_id,
    duplicate_list_message,
    duplicate_phone_message,
)
from .tasks import import_job_create

BACKGROUND_IMPORT_BYTES = 2 * 1024 * 1024
"""Default for ``settings.CONTACT_IMPORT_BACKGROUND_BYTES``."""

_HEADER_MAX_BYTES = 64 * 1024

_ERROR = ErrorResponseSerializer
_ERRORS = {
    400: OpenApiResponse(_ERROR, description="Invalid input."),
    401: OpenApiResponse(_ERROR, description="No valid API key."),
}
_NOT_FOUND = {404: OpenApiResponse(_ERROR, description="No such object.")}


class _DeleteWithBodySchema(AutoSchema):
    """Document the body of ``DELETE lists/<id>/members/``.

    drf-spectacular only documents bodies for POST, PUT and PATCH.
    """

    def _get_request_body(self, direction: str = "request") -> Any:
        if self.method != "DELETE" or getattr(self.view, "action", None) != "members":
            return super()._get_request_body(direction)
        self.method = "POST"
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"


@extend_schema_view(
    list=extend_schema(responses={200: ContactSerializer(many=True), **_ERRORS}),
    create=extend_schema(responses={201: ContactSerializer, **_ERRORS}),
    retrieve=extend_schema(responses={200: ContactSerializer, **_ERRORS, **_NOT_FOUND}),
    update=extend_schema(responses={200: ContactSerializer, **_ERRORS, **_NOT_FOUND}),
    partial_update=extend_schema(
        responses={200: ContactSerializer, **_ERRORS, **_NOT_FOUND}
    ),
    destroy=extend_schema(
        responses={204: None, **_ERRORS, **_NOT_FOUND},
        description="Delete a contact. Its consent history (opt-outs, opt-ins) is kept.",
    ),
)
class ContactViewSet(JSONErrorsMixin, viewsets.ModelViewSet):
    """People who can get messages. ``opted_out`` changes only through the opt-out and
    opt-in actions, which record the consent event."""

    serializer_class = ContactSerializer
    parser_classes = [LimitedJSONParser]
    filterset_class = ContactFilter
    api_rules = {
        **model_rules(
            "contacts.contact", write_scope=Scope.WRITE_CONTACTS, contact_data=True
        ),
        "opt_out": rule(
            Scope.WRITE_CONTACTS, "contacts.change_contact", CONTACT_DATA_PERMISSION
        ),
        "opt_in": rule(
            Scope.WRITE_CONTACTS, "contacts.change_contact", CONTACT_DATA_PERMISSION
        ),
        "export": rule(Scope.READ, "contacts.view_contact", CONTACT_DATA_PERMISSION),
    }
    # Any id reaches the view, so a malformed one gets the API's JSON 404 (the
    # router's default pattern refuses dots, and Django then answers in HTML).
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Contact]:
        # One query for the list ids of a whole page, not one per contact.
        memberships = ListMembership.objects.only("id", "contact_id", "contact_list_id")
        return Contact.objects.prefetch_related(
            Prefetch("memberships", queryset=memberships)
        )

    def perform_create(self, serializer: ContactSerializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer: ContactSerializer) -> None:
        self._save(serializer)

    def perform_destroy(self, instance: Contact) -> None:
        services.contact_delete(contact=instance)  # keeps an opt-out as a suppression

    def _save(self, serializer: ContactSerializer) -> None:
        list_ids = serializer.validated_data.get("lists")
        try:
            with transaction.atomic():
                contact = serializer.save()
                if list_ids is not None:
                    _contact_set_lists(contact=contact, list_ids=list_ids)
        except IntegrityError as exc:
            # Another request stored the same number between validation and save.
            phone = serializer.validated_data.get("phone", "")
            existing = duplicate_contact_id(phone)
            if existing is None:
                raise
            raise ValidationError(
                {"phone": [duplicate_phone_message(phone, existing)]}
            ) from exc

    @extend_schema(
        request=None,
        responses={200: ContactSerializer, **_ERRORS, **_NOT_FOUND},
        description="Record that the contact opted out (source: api). "
        "The consent event is kept even if the contact is deleted later.",
    )
    @action(detail=True, methods=["post"], url_path="opt-out")
    def opt_out(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        services.contact_opt_out(phone=contact.phone, source=Source.API)
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request=None,
        responses={200: ContactSerializer, **_ERRORS, **_NOT_FOUND},
        description="Record that the contact opted in again (source: api).",
    )
    @action(detail=True, methods=["post"], url_path="opt-in")
    def opt_in(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        services.contact_opt_in(phone=contact.phone, source=Source.API)
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        summary="Download contacts as CSV",
        description="Every contact the filters select (all without them): "
        + ", ".join(BASE_COLUMNS)
        + ", then one column per attribute. Lists are named, separated by "
        "semicolons. Streamed as it is read, whatever the size; dates in UTC (ISO "
        "8601). Cells a spreadsheet would run as a formula start with an apostrophe.",
        responses={(200, "text/csv"): OpenApiTypes.STR, **_ERRORS},
    )
    @action(detail=False, methods=["get"], renderer_classes=[JSONRenderer, CSVRenderer])
    def export(self, request: Request):
        contacts = self.filter_queryset(Contact.objects.all())
        keys = attribute_keys(contacts)
        return csv_response(
            contacts_filename(), contact_columns(keys), contact_rows(contacts, keys)
        )


def _contact_set_lists(*, contact: Contact, list_ids: list[int]) -> None:
    """Make ``contact`` a member of exactly ``list_ids``; new memberships get source api."""
    ListMembership.objects.filter(contact=contact).exclude(
        contact_list_id__in=list_ids
    ).delete()
    ListMembership.objects.bulk_create(
        [
            ListMembership(contact=contact, contact_list_id=pk, source=Source.API)
            for pk in list_ids
        ],
        ignore_conflicts=True,
    )


@extend_schema_view(
    list=extend_schema(responses={200: ContactListSerializer(many=True), **_ERRORS}),
    create=extend_schema(responses={201: ContactListSerializer, **_ERRORS}),
    retrieve=extend_schema(
        responses={200: ContactListSerializer, **_ERRORS, **_NOT_FOUND}
    ),
    update=extend_schema(
        responses={200: ContactListSerializer, **_ERRORS, **_NOT_FOUND}
    ),
    partial_update=extend_schema(
        responses={200: ContactListSerializer, **_ERRORS, **_NOT_FOUND}
    ),
    destroy=extend_schema(
        responses={204: None, **_ERRORS, **_NOT_FOUND},
        description="Delete a list. Its contacts are kept.",
    ),
)
class ContactListViewSet(viewsets.ModelViewSet):
    """Lists of contacts that campaigns are sent to."""

    serializer_class = ContactListSerializer
    parser_classes = [LimitedJSONParser]
    lookup_value_regex = "[^/]+"
    api_rules = {
        **model_rules("contacts.contactlist", write_scope=Scope.WRITE_CONTACTS),
        "members": rule(Scope.WRITE_CONTACTS, "contacts.change_contactlist"),
    }
    schema = _DeleteWithBodySchema()

    def get_queryset(self) -> QuerySet[ContactList]:
        # Meta.ordering does not apply to an aggregated query: order explicitly.
        return (
            ContactList.objects.annotate(contact_count=Count("memberships"))
            .prefetch_related("signup_keywords")
            .order_by("name", "id")
        )

    def perform_create(self, serializer: ContactListSerializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer: ContactListSerializer) -> None:
        self._save(serializer)

    def _save(self, serializer: ContactListSerializer) -> None:
        try:
            with transaction.atomic():
                contact_list = serializer.save()
        except IntegrityError as exc:
            # Another request took the name between validation and save.
            name = serializer.validated_data.get("name", "")
            existing = (
                ContactList.objects.filter(name=name)
                .values_list("pk", flat=True)
                .first()
            )
            if existing is None:
                raise
            raise ValidationError(
                {"name": [duplicate_list_message(name, existing)]}
            ) from exc
        # A new or renamed list: the response shows its count too.
        contact_list.contact_count = contact_list.memberships.count()

    @extend_schema(
        methods=["POST"],
        request=ListMembersInputSerializer,
        responses={200: ListMembersAddedSerializer, **_ERRORS, **_NOT_FOUND},
        description="Add contacts to the list (source: api); members already in it "
        "are left as they are.",
    )
    @extend_schema(
        methods=["DELETE"],
        request=ListMembersInputSerializer,
        responses={200: ListMembersRemovedSerializer, **_ERRORS, **_NOT_FOUND},
        description="Remove contacts from the list. The contacts are kept.",
    )
    @action(detail=True, methods=["post", "delete"])
    def members(self, request: Request, pk: str | None = None) -> Response:
        contact_list = self.get_object()
        serializer = ListMembersInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = serializer.validated_data["contacts"]
        if request.method == "POST":
            added = services.list_add_contacts(
                contact_list=contact_list,
                contacts=Contact.objects.filter(pk__in=ids).only("pk"),
                source=Source.API,
            )
            return Response(ListMembersAddedSerializer({"added": added}).data)
        removed, _ = ListMembership.objects.filter(
            contact_list=contact_list, contact_id__in=ids
        ).delete()
        return Response(ListMembersRemovedSerializer({"removed": removed}).data)


class ContactImportApi(APIView):
    """Import many contacts at once, from a CSV file or from JSON records."""

    parser_classes = [MultiPartParser, LargeJSONParser]

    def get_parsers(self) -> list:
        # 10,000 records pass the global 1 MB body cap, which stays for the rest.
        return [
            MultiPartParser(),
            LargeJSONParser(max_bytes=settings.CONTACT_IMPORT_MAX_JSON_BYTES),
        ]

    # Like the admin's import: it creates and updates contacts, and its row errors
    # show the numbers given.
    api_rules = {
        "post": rule(
            Scope.WRITE_CONTACTS,
            "contacts.add_contact",
            "contacts.change_contact",
            CONTACT_DATA_PERMISSION,
        )
    }

    @extend_schema(
        request={
            "multipart/form-data": ImportCsvInputSerializer,
            "application/json": ImportJsonInputSerializer,
        },
        responses={
            200: OpenApiResponse(
                ImportResultSerializer, description="Imported; per-row errors listed."
            ),
            202: OpenApiResponse(
                ImportJobAcceptedSerializer,
                description="A large file is importing in the background; "
                "follow `url`.",
            ),
            **_ERRORS,
            413: OpenApiResponse(
                _ERROR, description="A JSON body over the import's size limit."
            ),
            415: OpenApiResponse(_ERROR, description="Neither multipart nor JSON."),
        },
        description="Create or update contacts by phone number. A CSV file needs a "
        "header row with a phone column; first_name, last_name and time_zone fill "
        "those fields and other columns become attributes (named in lower case with "
        "underscores, as the admin's import names them). Its encoding and separator "
        "are told from the file unless `encoding` and `delimiter` are given. JSON "
        "takes up to 10,000 records; a key other than phone, first_name, last_name, "
        "time_zone and attributes is a 400. Rows that cannot be imported are reported with their row number; "
        "the others are imported. Importing the same data again is safe. A file "
        "larger than the server's background threshold is imported by a worker "
        "(202) when one is configured.",
    )
    def post(self, request: Request) -> Response:
        if request.content_type.startswith("multipart/"):
            return self._import_csv(request)
        serializer = ImportJsonInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = contact_import_records(
            records=data["contacts"],
            contact_list=data.get("list"),
            region=data.get("region"),
            keypad_letters=data["keypad_letters"],
        )
        return Response(ImportResultSerializer(result.to_dict()).data)

    def _import_csv(self, request: Request) -> Response:
        serializer = ImportCsvInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        upload = data["file"]
        contact_list, region = data.get("list"), data.get("region")
        threshold = getattr(
            settings, "CONTACT_IMPORT_BACKGROUND_BYTES", BACKGROUND_IMPORT_BYTES
        )
        # Told from the file unless given (None): the same for a job run later.
        encoding, delimiter = data.get("encoding"), data.get("delimiter")
        if settings.CELERY_BROKER_URL and upload.size > threshold:
            _check_csv_header(upload, encoding=encoding, delimiter=delimiter)
            job = import_job_create(
                file=upload,
                contact_list=contact_list,
                region=region or "",
                encoding=encoding or "",
                delimiter=delimiter or "",
                keypad_letters=data["keypad_letters"],
                created_by_key=request.auth
                if isinstance(request.auth, ApiKey)
                else None,
            )
            accepted = {
                "job": job.pk,
                "status": job.status,
                "url": reverse("contact-import-job", kwargs={"job_id": str(job.pk)}),
            }
            return Response(
                ImportJobAcceptedSerializer(accepted).data,
                status=status.HTTP_202_ACCEPTED,
            )
        # Without a worker a file of any size imports here: the service streams it,
        # so memory stays flat; only the request takes longer.
        try:
            result = contact_import_csv(
                file=upload,
                contact_list=contact_list,
                region=region,
                encoding=encoding,
                delimiter=delimiter,
                keypad_letters=data["keypad_letters"],
            )
        except ContactImportError as exc:
            raise ValidationError({"file": [str(exc)]}) from exc
        return Response(ImportResultSerializer(result.to_dict()).data)


def _check_csv_header(upload, *, encoding: str | None, delimiter: str | None) -> None:
    """Refuse a file whose header cannot be imported now, before queueing it.

    Importing the header line alone checks it exactly as the import will (encoding,
    separator, phone column) and writes nothing, since there are no rows.
    """
    upload.seek(0)
    found = sniff_csv(upload.read(SNIFF_BYTES))
    upload.seek(0)
    header = upload.readline(_HEADER_MAX_BYTES)
    upload.seek(0)
    try:
        contact_import_csv(
            file=[header],
            encoding=encoding or found.encoding,
            delimiter=delimiter or found.delimiter,
        )
    except ContactImportError as exc:
        raise ValidationError({"file": [str(exc)]}) from exc


class ContactImportJobApi(APIView):
    """A background import started by ``POST contacts/import/``."""

    # Its row errors show numbers: the admin's result page asks the same.
    api_rules = {"get": rule(Scope.READ, CONTACT_DATA_PERMISSION)}

    @extend_schema(
        responses={200: ImportJobSerializer, **_ERRORS, **_NOT_FOUND},
        description="The job's status; the counts and row errors once it is done, "
        "`error` if it failed.",
    )
    def get(self, request: Request, job_id: str) -> Response:
        try:
            pk = uuid.UUID(job_id)
        except ValueError:
            raise NotFound("No such import job.") from None
        job = ImportJob.objects.filter(pk=pk).first()
        if job is None:
            raise NotFound("No such import job.")
        body: dict[str, Any] = {"job": job.pk, "status": job.status}
        if job.status == ImportJob.Status.DONE and job.result:
            body.update(job.result)
        if job.status == ImportJob.Status.FAILED:
            body["error"] = job.error
        return Response(ImportJobSerializer(body).data)
