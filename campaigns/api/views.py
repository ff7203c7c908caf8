"""Campaigns and messages in the REST API (/api/v1/campaigns/, /messages/).

Thin: each view validates its input, calls a service and renders the result. A
service's :class:`~campaigns.sending.launch.CampaignError` (the campaign's state does not
allow the operation) is answered 409 with its message; a provider that cannot be used
is a 400 on the field that names it when the request chooses it (create, update,
bulk), and a 409 with the code "provider_unusable" when the campaign already has it.
"""

from collections.abc import Callable

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, QuerySet

from contacts.models import ContactList
from contacts.permissions import CONTACT_DATA_PERMISSION, can_view_contact_data
from smscampaigns.api_errors import ErrorResponseSerializer
from smscampaigns.csv_export import CSVRenderer, JSONErrorsMixin, csv_response
from smscampaigns.json_limits import LimitedJSONParser
from smscampaigns.models import ApiKey, Scope
from smscampaigns.permissions import model_rules, rule

from ..actions import (
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_retry_failed,
    campaign_schedule,
    campaign_send_now,
)
from ..exports import (
    RESULT_COLUMNS,
    campaign_results_filename,
    campaign_results_rows,
)
from ..lifecycle import CampaignError
from ..models import Campaign, CampaignVariant, Message
from ..preview import campaign_preview
from ..provider_checks import ProviderUnusable
from ..segments import (
    DETAILS_HIDDEN,
    Segment,
    SegmentInUse,
    reads_contact_details,
    segment_counts,
    segment_delete,
    segment_sample,
)
from ..stats import campaign_clicks_per_hour, campaign_stats, variant_figures
from ..writes import (
    BodyError,
    NoRecipients,
    RecipientsOptedOut,
    campaign_create,
    campaign_create_adhoc,
    campaign_delete,
    campaign_send_test,
    campaign_update,
)
from .filters import MessageFilter
from .serializers import (
    BulkInputSerializer,
    BulkOutputSerializer,
    CampaignSerializer,
    MessageSerializer,
    PreviewSerializer,
    RetryInputSerializer,
    RetryOutputSerializer,
    ScheduleInputSerializer,
    SegmentCountSerializer,
    SegmentPreviewSerializer,
    SegmentSerializer,
    StatsSerializer,
    TestSendInputSerializer,
    TestSendOutputSerializer,
)

PREVIEW_SAMPLES = 5
SEGMENT_PREVIEW_SAMPLES = 10

_ERROR_DESCRIPTIONS = {
    400: "Invalid input; `fields` names each field and what is wrong with it.",
    401: "No API key, or an unknown or revoked one.",
    403: "Authenticated, but not allowed.",
    404: "No such object.",
    409: "The campaign's current state does not allow this (code "
    '"provider_unusable": its provider cannot be used now, and why).',
    429: "Too many requests; `retry_after` says how many seconds to wait.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error answers a view gives, plus those every view may."""
    return {
        code: OpenApiResponse(
            ErrorResponseSerializer, description=_ERROR_DESCRIPTIONS[code]
        )
        for code in sorted({*codes, 401, 403, 429})
    }


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The current state does not allow this."
    default_code = "conflict"


class ProviderConflict(Conflict):
    default_detail = "The campaign's provider cannot be used now."
    default_code = "provider_unusable"

    def __init__(self, error: ProviderUnusable) -> None:
        super().__init__(str(error))
        self.field = error.field


def _created_by(request: Request):
    """The logged-in person, or None for an API key (not a user account)."""
    return request.user if isinstance(request.user, get_user_model()) else None


def _run(service: Callable, **kwargs):
    """Call a service, translating its refusals into API errors."""
    try:
        return service(**kwargs)
    except ProviderUnusable as error:
        raise ProviderConflict(error) from error
    except CampaignError as error:
        raise Conflict(str(error)) from error
    except BodyError as error:
        raise exceptions.ValidationError({error.field: error.problems}) from error


def _run_input(service: Callable, **kwargs):
    """Call a service with what the request chose: a provider that cannot be used is
    a mistake in the input (400 on its field), not the campaign's state."""
    try:
        return _run(service, **kwargs)
    except ProviderConflict as error:
        raise exceptions.ValidationError({error.field: [error.detail]}) from error


def _validated(serializer_class: type[BaseSerializer], request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


_CAMPAIGN = CampaignSerializer
_ID_ERRORS = errors(404)


@extend_schema_view(
    list=extend_schema(
        summary="List campaigns", responses={200: _CAMPAIGN, **errors(404)}
    ),
    retrieve=extend_schema(
        summary="Get a campaign", responses={200: _CAMPAIGN, **_ID_ERRORS}
    ),
    create=extend_schema(
        summary="Create a draft campaign",
        description="The body's placeholders are checked against the attributes "
        "of the contacts in its lists.",
        responses={201: _CAMPAIGN, **errors(400)},
    ),
    update=extend_schema(
        summary="Replace a campaign",
        description="Body, lists, provider and sender can only change while the "
        "campaign is a draft or scheduled (409 otherwise); the name always can.",
        responses={200: _CAMPAIGN, **errors(400, 404, 409)},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a campaign",
        description="Body, lists, provider and sender can only change while the "
        "campaign is a draft or scheduled (409 otherwise); the name always can.",
        responses={200: _CAMPAIGN, **errors(400, 404, 409)},
    ),
    destroy=extend_schema(
        summary="Delete a draft or scheduled campaign",
        responses={204: None, **errors(404, 409)},
    ),
)
class CampaignViewSet(JSONErrorsMixin, viewsets.ModelViewSet):
    serializer_class = CampaignSerializer
    filter_backends: list = []
    parser_classes = [LimitedJSONParser]
    _CONTROL = rule(Scope.SEND, "campaigns.change_campaign")
    api_rules = {
        **model_rules("campaigns.campaign", write_scope=Scope.SEND),
        # Its samples are texts rendered with contacts' data.
        "preview": rule(Scope.READ, "campaigns.view_campaign", CONTACT_DATA_PERMISSION),
        "stats": rule(Scope.READ, "campaigns.view_campaign"),
        # Every recipient's number and name.
        "export": rule(
            Scope.READ,
            "campaigns.view_campaign",
            "campaigns.view_message",
            CONTACT_DATA_PERMISSION,
        ),
        # As in the admin: acting on a campaign needs its change permission.
        "send_test": _CONTROL,
        "send": _CONTROL,
        "schedule": _CONTROL,
        "pause": _CONTROL,
        "resume": _CONTROL,
        "cancel": _CONTROL,
        "retry_failed": _CONTROL,
    }

    def get_queryset(self) -> QuerySet[Campaign]:
        return Campaign.objects.prefetch_related(
            Prefetch("lists", queryset=ContactList.objects.order_by("pk").only("pk")),
            Prefetch("segments", queryset=Segment.objects.order_by("pk").only("pk")),
            Prefetch("variants", queryset=CampaignVariant.objects.order_by("position")),
        )

    def perform_create(self, serializer: CampaignSerializer) -> None:
        serializer.instance = _run_input(
            campaign_create,
            created_by=_created_by(self.request),
            **serializer.validated_data,
        )

    def perform_update(self, serializer: CampaignSerializer) -> None:
        serializer.instance = _run_input(
            campaign_update, campaign=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: Campaign) -> None:
        _run(campaign_delete, campaign=instance)

    def _campaign_response(
        self, campaign: Campaign, code: int = status.HTTP_200_OK
    ) -> Response:
        return Response(CampaignSerializer(campaign).data, status=code)

    @extend_schema(
        summary="Preview what the campaign would send",
        description=f"The audience after exclusions, encodings, segments, estimated "
        f"cost and up to {PREVIEW_SAMPLES} rendered samples. Sends nothing.",
        request=None,
        responses={200: PreviewSerializer, **_ID_ERRORS},
    )
    @action(detail=True, methods=["get", "post"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        preview = campaign_preview(campaign=self.get_object(), samples=PREVIEW_SAMPLES)
        return Response(PreviewSerializer(preview).data)

    @extend_schema(
        summary="Send a test to a few numbers now",
        description="Rendered with the first audience contact's data (or the "
        "placeholders' defaults); goes out at once through the campaign's provider.",
        request=TestSendInputSerializer,
        responses={202: TestSendOutputSerializer, **errors(400, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path="test", url_name="test")
    def send_test(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        numbers = _validated(TestSendInputSerializer, request)["to"]
        try:
            messages = _run(campaign_send_test, campaign=campaign, numbers=numbers)
        except RecipientsOptedOut as error:
            raise exceptions.ValidationError({"to": [str(error)]}) from error
        return Response(
            TestSendOutputSerializer({"messages": [m.pk for m in messages]}).data,
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        summary="Start sending now",
        description="A worker launches it within seconds: until then its status "
        'stays "scheduled" and its status_display says "Starting". Refused (409) '
        "when its status does not allow it (see allowed_actions) or it would reach "
        "nobody (no lists, or nobody reachable in them).",
        request=None,
        responses={202: _CAMPAIGN, **errors(404, 409)},
    )
    @action(detail=True, methods=["post"])
    def send(self, request: Request, pk: str | None = None) -> Response:
        campaign = _run(campaign_send_now, campaign=self.get_object())
        return self._campaign_response(campaign, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Schedule sending for a later time",
        description="Refused (409) when the campaign's status does not allow it "
        "(see allowed_actions) or it would reach nobody.",
        request=ScheduleInputSerializer,
        responses={200: _CAMPAIGN, **errors(400, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def schedule(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        data = _validated(ScheduleInputSerializer, request)
        campaign = _run(
            campaign_schedule,
            campaign=campaign,
            at=data["scheduled_at"],
            send_window=data.get("send_window"),
        )
        return self._campaign_response(campaign)

    @extend_schema(
        summary="Pause sending",
        request=None,
        responses={200: _CAMPAIGN, **errors(404, 409)},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._campaign_response(_run(campaign_pause, campaign=self.get_object()))

    @extend_schema(
        summary="Resume a paused campaign",
        request=None,
        responses={200: _CAMPAIGN, **errors(404, 409)},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._campaign_response(
            _run(campaign_resume, campaign=self.get_object())
        )

    @extend_schema(
        summary="Cancel for good",
        description="Messages not sent yet are marked failed with error_code "
        '"cancelled".',
        request=None,
        responses={200: _CAMPAIGN, **errors(404, 409)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._campaign_response(
            _run(campaign_cancel, campaign=self.get_object())
        )

    @extend_schema(
        summary="Queue failed messages again",
        description="Messages skipped for an opt-out or a cancel stay as they are. "
        "Refused (409) for drafts, scheduled and cancelled campaigns: nothing would "
        "send the requeued messages.",
        request=RetryInputSerializer,
        responses={200: RetryOutputSerializer, **errors(400, 404, 409)},
    )
    @action(
        detail=True, methods=["post"], url_path="retry-failed", url_name="retry-failed"
    )
    def retry_failed(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        data = _validated(RetryInputSerializer, request)
        queued = _run(campaign_retry_failed, campaign=campaign, **data)
        return Response(RetryOutputSerializer({"queued": queued}).data)

    @extend_schema(
        summary="Delivery figures",
        responses={200: StatsSerializer, **_ID_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        stats = campaign_stats(campaign=campaign)
        figures = {
            **vars(stats),
            "click_rate": stats.click_rate,
            "clicks_over_time": campaign_clicks_per_hour(campaign=campaign),
            "variants": variant_figures(campaign=campaign, stats=stats.variants),
        }
        return Response(StatsSerializer(figures).data)

    @extend_schema(
        summary="Download the per-recipient results as CSV",
        description="One row per recipient: "
        + ", ".join(RESULT_COLUMNS)
        + ". Streamed as it is read, whatever the campaign's size; dates in UTC "
        "(ISO 8601). Cells a spreadsheet would run as a formula start with an "
        "apostrophe.",
        responses={(200, "text/csv"): OpenApiTypes.STR, **_ID_ERRORS},
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, CSVRenderer])
    def export(self, request: Request, pk: str | None = None):
        campaign = self.get_object()
        return csv_response(
            campaign_results_filename(campaign),
            RESULT_COLUMNS,
            campaign_results_rows(campaign),
        )


@extend_schema_view(
    list=extend_schema(
        summary="List messages, newest first",
        responses={200: MessageSerializer, **errors(400, 404)},
    ),
    retrieve=extend_schema(
        summary="Get a message", responses={200: MessageSerializer, **_ID_ERRORS}
    ),
)
class MessageViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    # Every field is on the row (campaign and contact as ids): no joins, no N+1.
    queryset = Message.objects.order_by("-id")
    serializer_class = MessageSerializer
    filterset_class = MessageFilter
    # Numbers and texts: contact data.
    api_rules = {
        action: rule(Scope.READ, "campaigns.view_message", CONTACT_DATA_PERMISSION)
        for action in ("list", "retrieve")
    }


class BulkMessageApi(APIView):
    """POST /api/v1/messages/bulk/: one text to many numbers, as an ad-hoc campaign."""

    # Up to 10,000 numbers: as form fields they would pass Django's field limit.
    parser_classes = [LimitedJSONParser]
    # It creates a campaign and sends it at once.
    api_rules = {
        "post": rule(Scope.SEND, "campaigns.add_campaign", "campaigns.change_campaign")
    }

    @extend_schema(
        summary="Text many numbers at once",
        description="Creates a campaign without lists and queues one message per "
        "valid, unique number. Invalid numbers and numbers that opted out are "
        "reported, not sent to.",
        request=BulkInputSerializer,
        responses={202: BulkOutputSerializer, **errors(400)},
    )
    def post(self, request: Request) -> Response:
        data = _validated(BulkInputSerializer, request)
        try:
            result = campaign_create_adhoc(
                recipients=data["recipients"],
                message=data["message"],
                provider=data.get("provider", ""),
                created_by=_created_by(request),
            )
        except NoRecipients as error:
            raise exceptions.ValidationError({"recipients": [str(error)]}) from error
        except ProviderUnusable as error:
            raise exceptions.ValidationError({"provider": [str(error)]}) from error
        except BodyError as error:
            raise exceptions.ValidationError({"message": error.problems}) from error
        return Response(
            BulkOutputSerializer(result).data, status=status.HTTP_202_ACCEPTED
        )


_SEGMENT = SegmentSerializer


@extend_schema_view(
    list=extend_schema(summary="List segments", responses={200: _SEGMENT, **errors()}),
    retrieve=extend_schema(
        summary="Get a segment", responses={200: _SEGMENT, **_ID_ERRORS}
    ),
    create=extend_schema(
        summary="Create a segment",
        description="A saved audience: contacts matching all (or any) of its "
        "conditions when a campaign uses it.",
        responses={201: _SEGMENT, **errors(400)},
    ),
    update=extend_schema(
        summary="Replace a segment", responses={200: _SEGMENT, **errors(400, 404)}
    ),
    partial_update=extend_schema(
        summary="Change some fields of a segment",
        responses={200: _SEGMENT, **errors(400, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a segment",
        description="Refused (409) while a campaign that has not finished uses it.",
        responses={204: None, **errors(404, 409)},
    ),
)
class SegmentViewSet(viewsets.ModelViewSet):
    """Saved audiences. Like lists, they are written with the write_contacts scope."""

    serializer_class = SegmentSerializer
    queryset = Segment.objects.order_by("name", "pk")
    filter_backends: list = []
    parser_classes = [LimitedJSONParser]
    api_rules = {
        **model_rules("campaigns.segment", write_scope=Scope.WRITE_CONTACTS),
        "count": rule(Scope.READ, "campaigns.view_segment"),
        # Its sample shows contacts' numbers and names.
        "preview": rule(Scope.READ, "campaigns.view_segment", CONTACT_DATA_PERMISSION),
    }

    def perform_destroy(self, instance: Segment) -> None:
        try:
            segment_delete(segment=instance)
        except SegmentInUse as error:
            raise Conflict(str(error)) from error

    @extend_schema(
        summary="Count the contacts a segment matches now",
        responses={200: SegmentCountSerializer, **_ID_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def count(self, request: Request, pk: str | None = None) -> Response:
        segment = self.get_object()
        # API keys read contacts with the read scope anyway; people need the
        # admin's contact permission to count by contacts' details.
        if (
            not isinstance(request.auth, ApiKey)
            and not can_view_contact_data(request.user)
            and reads_contact_details(segment.conditions)
        ):
            raise exceptions.PermissionDenied(DETAILS_HIDDEN)
        return Response(SegmentCountSerializer(segment_counts(segment.q())).data)

    @extend_schema(
        summary="Count a segment and show its first contacts",
        description=f"The counts, and the first {SEGMENT_PREVIEW_SAMPLES} "
        "matching contacts by id.",
        responses={200: SegmentPreviewSerializer, **_ID_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        q = self.get_object().q()
        sample = [
            {
                "id": contact.pk,
                "phone": contact.phone,
                "first_name": contact.first_name,
                "last_name": contact.last_name,
                "country": contact.country,
                "opted_out": contact.opted_out,
            }
            for contact in segment_sample(q, limit=SEGMENT_PREVIEW_SAMPLES)
        ]
        return Response(
            SegmentPreviewSerializer({**segment_counts(q), "sample": sample}).data
        )
