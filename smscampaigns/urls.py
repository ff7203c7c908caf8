from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from django.contrib import admin
from django.urls import include, path

from .health import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
    path("api/v1/", include("smscampaigns.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"
    ),
    path("health/", health, name="health"),
]

handler400 = "smscampaigns.error_views.bad_request"
handler404 = "smscampaigns.error_views.not_found"
handler500 = "smscampaigns.error_views.server_error"
