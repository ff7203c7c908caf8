from django.contrib import admin
from django.urls import include, path

from campaigns.redirects import short_link

from .api_docs import docs_view, schema_view
from .health import health
from .metrics_view import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
    path("api/v1/", include("smscampaigns.api_urls")),
    path("api/schema/", schema_view, name="schema"),
    path("api/docs/", docs_view, name="api-docs"),
    path("health/", health, name="health"),
    # No trailing slash: Prometheus' default metrics_path.
    path("metrics", metrics_view, name="metrics"),
    # Short links in campaign texts; smscampaigns.wsgi answers them first.
    path("l/<str:code>", short_link, name="short-link"),
]

handler400 = "smscampaigns.error_views.bad_request"
handler404 = "smscampaigns.error_views.not_found"
handler500 = "smscampaigns.error_views.server_error"
