"""Conversations in the REST API (/api/v1/conversations/): read them, answer them.

Thin: the threads are ``webhooks.conversations``, replies and read state
``webhooks.services``. A conversation is named by its contact's id.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from django.http import Http404
from django.shortcuts import get_object_or_404

from campaigns.api.serializers import MessageSerializer
from campaigns.api.views import errors
from contacts.models import Contact
from contacts.permissions import CONTACT_DATA_PERMISSION
from smscampaigns.json_limits import LimitedJSONParser
from smscampaigns.models import Scope
from smscampaigns.permissions import rule

from .conversations import contact_thread, conversation_summaries, conversations
from .services import (
    MAX_REPLY_LENGTH,
    ReplyRefused,
    conversation_mark_read,
    conversation_reply as reply_service,
)


class ConversationContactSerializer(serializers.ModelSerializer):
    opted_out = serializers.BooleanField(
        read_only=True, help_text="Opted out: replies are refused."
    )

    class Meta:
        model = Contact
        fields = ["id", "phone", "first_name", "last_name", "opted_out"]
        read_only_fields = fields


class ThreadEntrySerializer(serializers.Serializer):
    direction = serializers.ChoiceField(
        choices=["inbound", "outbound"],
        help_text="inbound: the contact wrote it; outbound: sent to them.",
    )
    id = serializers.IntegerField(
        help_text="An outbound message's id is a message's (/api/v1/messages/{id}/)."
    )
    at = serializers.DateTimeField(
        help_text="Received; for outbound messages, accepted by the provider (or "
        "queued, while not sent yet)."
    )
    text = serializers.CharField()
    from_number = serializers.CharField(
        help_text="Empty for an outbound message sent from the provider's default "
        "number."
    )
    to_number = serializers.CharField()
    status = serializers.CharField(
        help_text="An outbound message's status; empty for inbound ones."
    )
    kind = serializers.CharField(
        help_text="An outbound message's kind (campaign, reply, test); empty for "
        "inbound ones."
    )
    keyword = serializers.CharField(
        help_text="opt_out, opt_in or help when an inbound message was one; else empty."
    )
    campaign = serializers.IntegerField(
        source="campaign_id",
        allow_null=True,
        help_text="The campaign an outbound message belongs to, or the campaign of "
        "the message an inbound one answers.",
    )
    in_reply_to = serializers.IntegerField(
        source="in_reply_to_id",
        allow_null=True,
        help_text="For inbound messages: the campaign message it answers (the last "
        "one sent to that number from the number it was sent to, within "
        "SMS_REPLY_ATTRIBUTION_HOURS).",
    )
    unread = serializers.BooleanField(help_text="An inbound message not read yet.")


class ConversationSerializer(serializers.Serializer):
    contact = ConversationContactSerializer()
    last_received_at = serializers.DateTimeField(
        help_text="When the contact last wrote."
    )
    unread = serializers.IntegerField(help_text="Their messages not read yet.")
    last_message = ThreadEntrySerializer(
        source="last", allow_null=True, help_text="The newest message either way."
    )


class ThreadPageSerializer(serializers.Serializer):
    """The schema of a conversation: its contact, then a page of its messages."""

    contact = ConversationContactSerializer()
    unread = serializers.IntegerField()
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ThreadEntrySerializer(many=True)


class ReplyInputSerializer(serializers.Serializer):
    text = serializers.CharField(
        max_length=MAX_REPLY_LENGTH,
        help_text="Sent as written, from the number the contact last wrote to.",
    )


class MarkedReadSerializer(serializers.Serializer):
    marked_read = serializers.IntegerField(help_text="Messages that were unread.")


class ReplyRefusedError(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"


class ProviderConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "provider_unusable"


_READ = rule(
    Scope.READ,
    "webhooks.view_inboundmessage",
    "campaigns.view_message",
    CONTACT_DATA_PERMISSION,
)
_CONTACT_PARAM = OpenApiParameter(
    "id",
    OpenApiTypes.INT,
    OpenApiParameter.PATH,
    description="The contact's id: a conversation is its contact's.",
)
_PAGE_PARAMS = [
    OpenApiParameter(
        "page",
        OpenApiTypes.STR,
        description="A page number, or `last` for the newest messages.",
    ),
    OpenApiParameter("page_size", OpenApiTypes.INT, description="Up to 1,000."),
]
_UNREAD_PARAM = OpenApiParameter(
    "unread",
    OpenApiTypes.BOOL,
    description="true: only conversations with unread messages.",
)


@extend_schema_view(
    list=extend_schema(
        summary="List conversations, most recent first",
        description="One row per contact who wrote to one of your numbers, ordered "
        "by when they last wrote.",
        parameters=[_UNREAD_PARAM],
        responses={200: ConversationSerializer(many=True), **errors(404)},
    ),
    retrieve=extend_schema(
        summary="Get a conversation",
        description="The contact and their messages both ways, oldest first, in "
        "pages: `?page=last` is the newest page. Reading does not mark anything "
        "read (POST …/read/ does).",
        parameters=[_CONTACT_PARAM, *_PAGE_PARAMS],
        responses={200: ThreadPageSerializer, **errors(404)},
    ),
)
class ConversationViewSet(viewsets.GenericViewSet):
    parser_classes = [LimitedJSONParser]
    filter_backends: list = []
    serializer_class = ConversationSerializer
    # Numbers and texts both ways: contact data, and the messages' own permission.
    api_rules = {
        "list": _READ,
        "retrieve": _READ,
        # Sends a message, as a test send or a bulk message does.
        "reply": rule(
            Scope.SEND,
            "webhooks.view_inboundmessage",
            "campaigns.add_message",
            CONTACT_DATA_PERMISSION,
        ),
        "read": rule(
            Scope.SEND, "webhooks.view_inboundmessage", CONTACT_DATA_PERMISSION
        ),
    }

    def get_queryset(self):
        unread = self.request.query_params.get("unread", "").lower()
        return conversations(unread_only=unread in ("1", "true", "yes"))

    def get_object(self) -> Contact:
        # Any id routes here, so a malformed one is refused after the permission
        # check (403 before 404, as on every other endpoint).
        if not self.kwargs["pk"].isdigit():
            raise Http404
        contact = get_object_or_404(Contact, pk=self.kwargs["pk"])
        self.check_object_permissions(self.request, contact)
        return contact

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        data = ConversationSerializer(conversation_summaries(page), many=True).data
        return self.get_paginated_response(data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        page = self.paginate_queryset(contact_thread(contact))
        response = self.get_paginated_response(
            ThreadEntrySerializer(page, many=True).data
        )
        response.data = {
            "contact": ConversationContactSerializer(contact).data,
            "unread": contact.inbound_messages.filter(read_at__isnull=True).count(),
            **response.data,
        }
        return response

    @extend_schema(
        summary="Answer a conversation",
        description="Queues the text to the contact from the number they last wrote "
        "to, through the provider their message came in on, and marks their "
        "messages read; the worker sends it within a second or so. Refused (400) "
        "when the text is empty or too long, when they opted out or are suppressed "
        '(code "opted_out") or never wrote to you (code "no_conversation"); 409 '
        "when that provider cannot be used now.",
        parameters=[_CONTACT_PARAM],
        request=ReplyInputSerializer,
        responses={202: MessageSerializer, **errors(400, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def reply(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        serializer = ReplyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            message = reply_service(
                contact=contact, text=serializer.validated_data["text"]
            )
        except ReplyRefused as error:
            if error.code == "provider_unusable":
                raise ProviderConflict(str(error), code=error.code) from error
            if error.code in ("blank", "max_length", "invalid"):
                raise exceptions.ValidationError(
                    {"text": [str(error)]}, code=error.code
                ) from error
            raise ReplyRefusedError(str(error), code=error.code) from error
        return Response(
            MessageSerializer(message).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(
        summary="Mark a conversation read",
        parameters=[_CONTACT_PARAM],
        request=None,
        responses={200: MarkedReadSerializer, **errors(404)},
    )
    @action(detail=True, methods=["post"])
    def read(self, request: Request, pk: str | None = None) -> Response:
        marked = conversation_mark_read(contact=self.get_object())
        return Response(MarkedReadSerializer({"marked_read": marked}).data)
