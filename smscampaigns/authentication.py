"""API key authentication: ``Authorization: Token <key>``, ``Authorization: Bearer
<key>`` or ``X-API-Key: <key>``."""

from datetime import timedelta

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from django.utils import timezone

from .models import ApiKey, hash_key


class ApiKeyUser:
    """The principal behind an API key: authenticated, but not a person with a login."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.pk = self.id = None
        self.username = f"api-key:{key.name}"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Token"
    #: Accepted as well as ``Token``: most HTTP clients and API tools send a key as a
    #: bearer token, and refusing it left integrators guessing.
    keywords = ("token", "bearer")

    def authenticate(self, request):
        raw = request.META.get("HTTP_X_API_KEY", "").strip()
        if not raw:
            header = (
                authentication.get_authorization_header(request)
                .decode("latin-1")
                .split()
            )
            if not header:
                return None
            if header[0].lower() not in self.keywords:
                if len(header) > 1:
                    # Another scheme (Basic from a proxy in front): not ours.
                    return None
                # A bare key: say what is expected rather than "not provided".
                raise exceptions.AuthenticationFailed(
                    "Unsupported Authorization header: send the API key as "
                    "`Authorization: Token <key>` (or `Bearer <key>`, or the "
                    "`X-API-Key: <key>` header)."
                )
            if len(header) != 2:
                raise exceptions.AuthenticationFailed("Invalid API key.")
            raw = header[1]
        key = ApiKey.objects.filter(
            key_hash=hash_key(raw), revoked_at__isnull=True
        ).first()
        if key is None:
            # The same answer for unknown and revoked keys: no hint which keys exist.
            raise exceptions.AuthenticationFailed("Invalid API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return ApiKeyUser(key), key

    def authenticate_header(self, request) -> str:
        return self.keyword


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Describes API-key authentication in the OpenAPI schema."""

    target_class = "smscampaigns.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` or `Bearer <key>` (or send the bare key "
            "in the `X-API-Key` header)",
        }
