from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class SmscampaignsConfig(AppConfig):
    """The project package doubles as a small app for what spans the others: API keys."""

    name = "smscampaigns"
    verbose_name = "API access"

    def ready(self) -> None:
        from . import static_files  # noqa: F401  (registers its deploy check)


class SmsAdminConfig(AdminConfig):
    """django.contrib.admin with our site (ordering and the start-here panel)."""

    default_site = "smscampaigns.admin_site.SmsAdminSite"
