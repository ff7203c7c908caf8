"""The OpenAPI schema and the interactive docs: behind a login unless
``API_DOCS_PUBLIC`` is on (the default only with DEBUG)."""

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import BasePermission

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required


class DocsPermission(BasePermission):
    """Anyone when the docs are public; otherwise a staff session or any API key."""

    def has_permission(self, request, view) -> bool:
        if settings.API_DOCS_PUBLIC:
            return True
        return bool(request.user and request.user.is_authenticated)


schema_view = SpectacularAPIView.as_view(permission_classes=[DocsPermission])
_docs = SpectacularSwaggerSplitView.as_view(url_name="schema")
_docs_for_staff = staff_member_required(_docs)


def docs_view(request, *args, **kwargs):
    # Read at each request, so the setting can change without a new URLconf.
    view = _docs if settings.API_DOCS_PUBLIC else _docs_for_staff
    return view(request, *args, **kwargs)
