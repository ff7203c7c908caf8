"""Event webhook endpoints in the REST API: /api/v1/webhook-endpoints/.

Creating an endpoint answers its signing secret, once; ``roll-secret`` replaces it.
``deliveries`` is the endpoint's delivery log, newest first.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError

from contacts.permissions import CONTACT_DATA_PERMISSION
from contacts.serializers import StrictCharField
from smscampaigns.api_errors import ErrorResponseSerializer
from smscampaigns.json_limits import LimitedJSONParser
from smscampaigns.models import ApiKey, Scope
from smscampaigns.permissions import model_rules, rule

from . import services
from .events import EventType
from .models import Delivery, WebhookEndpoint


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = StrictCharField(max_length=500, help_text="Where events are POSTed (https).")
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.values),
        allow_empty=False,
        max_length=len(EventType.values),
        help_text="The event types sent to it.",
    )
    is_active = serializers.BooleanField(required=False)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "events",
            "is_active",
            "created_at",
            "failing_since",
            "consecutive_failures",
            "retry_at",
        ]
        read_only_fields = [
            "id",
            "created_at",
            "failing_since",
            "consecutive_failures",
            "retry_at",
        ]

    def validate_url(self, value: str) -> str:
        value = serializers.URLField().run_validation(value)
        try:
            services.validate_endpoint_url(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        return services.validate_event_types(value)


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="Signs every delivery (Smscampaigns-Signature): shown only now.",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(read_only=True)


class DeliverySerializer(serializers.ModelSerializer):
    event = serializers.CharField(source="event.public_id", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "event_type",
            "status",
            "attempts",
            "created_at",
            "last_attempt_at",
            "delivered_at",
            "response_status",
            "error",
        ]
        read_only_fields = fields


_ERROR = ErrorResponseSerializer
_NOT_FOUND = {404: OpenApiResponse(_ERROR, description="No such endpoint.")}
_INVALID = {400: OpenApiResponse(_ERROR, description="Invalid input.")}
_RULES = model_rules(
    "integrations.webhookendpoint", write_scope=Scope.WEBHOOKS, contact_data=True
)


@extend_schema_view(
    list=extend_schema(summary="List webhook endpoints"),
    retrieve=extend_schema(
        summary="Get a webhook endpoint",
        responses={200: WebhookEndpointSerializer, **_NOT_FOUND},
    ),
    create=extend_schema(
        summary="Subscribe a URL to events",
        description="The answer holds the endpoint's signing secret: it is shown "
        "only in this answer.",
        responses={201: WebhookEndpointCreatedSerializer, **_INVALID},
    ),
    update=extend_schema(
        summary="Replace a webhook endpoint",
        responses={200: WebhookEndpointSerializer, **_INVALID, **_NOT_FOUND},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a webhook endpoint",
        responses={200: WebhookEndpointSerializer, **_INVALID, **_NOT_FOUND},
    ),
    destroy=extend_schema(
        summary="Delete a webhook endpoint and its delivery log",
        responses={204: None, **_NOT_FOUND},
    ),
)
class WebhookEndpointViewSet(viewsets.ModelViewSet):
    """URLs that get events. Every operation needs a key with the "webhooks" scope:
    events carry numbers and texts."""

    serializer_class = WebhookEndpointSerializer
    parser_classes = [LimitedJSONParser]
    filter_backends: list = []
    queryset = WebhookEndpoint.objects.order_by("-id")
    api_rules = {
        # Listing shows where contact data goes: the same scope as changing it.
        **{
            action: rule(Scope.WEBHOOKS, *need.perms) for action, need in _RULES.items()
        },
        "roll_secret": rule(
            Scope.WEBHOOKS,
            "integrations.change_webhookendpoint",
            CONTACT_DATA_PERMISSION,
        ),
        "deliveries": rule(
            Scope.WEBHOOKS, "integrations.view_webhookendpoint", CONTACT_DATA_PERMISSION
        ),
    }

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.auth if isinstance(request.auth, ApiKey) else None
        user = request.user if isinstance(request.user, get_user_model()) else None
        endpoint = services.endpoint_create(
            created_by=user, created_by_key=key, **serializer.validated_data
        )
        return Response(
            WebhookEndpointCreatedSerializer(endpoint).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Replace the signing secret",
        description="The old secret stops at once; the answer holds the new one, "
        "shown only now.",
        request=None,
        responses={200: SecretSerializer, **_NOT_FOUND},
    )
    @action(
        detail=True, methods=["post"], url_path="roll-secret", url_name="roll-secret"
    )
    def roll_secret(self, request: Request, pk: str | None = None) -> Response:
        secret = services.endpoint_roll_secret(endpoint=self.get_object())
        return Response(SecretSerializer({"secret": secret}).data)

    @extend_schema(
        summary="The endpoint's delivery log, newest first",
        responses={200: DeliverySerializer(many=True), **_NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        log = Delivery.objects.filter(endpoint=endpoint).select_related("event")
        page = self.paginate_queryset(log.order_by("-id"))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)
