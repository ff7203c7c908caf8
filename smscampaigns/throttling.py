from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (per user for a logged-in admin, per address otherwise),
    counted in the shared cache so every web process enforces one limit."""

    scope = "api_key"

    def get_cache_key(self, request, view):
        if request.auth is not None and hasattr(request.auth, "key_hash"):
            ident = f"key-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
