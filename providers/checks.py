"""System checks: a misconfigured default provider stops `manage.py check` and start-up."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register("sms")
def check_default_provider(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from . import create_provider

    try:
        create_provider(settings.SMS_DEFAULT_PROVIDER)
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="Set the provider's variables (see .env.example) or choose another SMS_DEFAULT_PROVIDER.",
                id="providers.E001",
            )
        ]
    return []
