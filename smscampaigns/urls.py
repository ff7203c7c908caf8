from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from campaigns.redirects import short_link

from .api_docs import docs_view, schema_view
from .health import health
from .metrics_view import metrics_view
from .views import favicon

urlpatterns = [
    # The site is its admin: "/" and the admin's "View site" link land there.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("favicon.ico", favicon, name="favicon"),
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
