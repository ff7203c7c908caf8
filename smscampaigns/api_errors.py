"""One error format for the whole API:

``{"error": {"status": 400, "code": "invalid", "message": "…", "fields": {"phone": ["…"]}}}``
"""

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    error = {"status": response.status_code, "code": _code(exc), "message": ""}
    if isinstance(exc, exceptions.ValidationError) and isinstance(data, dict):
        fields = {k: v for k, v in data.items() if k != "non_field_errors"}
        general = data.get("non_field_errors", [])
        error["message"] = (
            " ".join(str(m) for m in general) or "Some fields are invalid."
        )
        if fields:
            error["fields"] = fields
    elif isinstance(exc, exceptions.ValidationError) and isinstance(data, list):
        error["message"] = " ".join(str(m) for m in data)
    elif isinstance(data, dict) and "detail" in data:
        error["message"] = str(data["detail"])
    else:
        error["message"] = str(data)
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS and getattr(
        exc, "wait", None
    ):
        error["retry_after"] = int(exc.wait) + 1
    response.data = {"error": error}
    return response


def _code(exc) -> str:
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    if isinstance(codes, str):
        return codes
    return getattr(exc, "default_code", "error")


class _ErrorBodySerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Per-field messages, for validation errors.",
    )
    retry_after = serializers.IntegerField(
        required=False, help_text="Seconds to wait, for 429 answers."
    )


@extend_schema_serializer(component_name="ErrorResponse")
class ErrorResponseSerializer(serializers.Serializer):
    """The error format above, for the OpenAPI schema."""

    error = _ErrorBodySerializer()
