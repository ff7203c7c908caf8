from django.apps import AppConfig


class SmscampaignsConfig(AppConfig):
    """The project package doubles as a small app for what spans the others: API keys."""

    name = "smscampaigns"
    verbose_name = "API access"
