"""SMS providers behind one interface, chosen by alias like Django's CACHES or TASKS.

``get_provider("plivo")`` returns the backend configured in ``SMS_PROVIDERS["plivo"]``;
``get_provider()`` the one named by ``SMS_DEFAULT_PROVIDER``. ``provider_problem(alias)``
is the one judge of whether a provider can be used for sending right now.
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

_lock = threading.Lock()
_instances: dict = {}


def get_provider(alias: str | None = None):
    """The backend instance for ``alias`` (default: SMS_DEFAULT_PROVIDER), created once per process."""
    alias = alias or settings.SMS_DEFAULT_PROVIDER
    try:
        return _instances[alias]
    except KeyError:
        pass
    with _lock:
        if alias not in _instances:
            _instances[alias] = create_provider(alias)
        return _instances[alias]


def create_provider(alias: str):
    """A new backend instance for ``alias``."""
    try:
        config = settings.SMS_PROVIDERS[alias]
    except KeyError:
        raise ImproperlyConfigured(
            f"SMS provider {alias!r} is not configured (SMS_PROVIDERS has: {', '.join(settings.SMS_PROVIDERS)})"
        ) from None
    try:
        backend_class = import_string(config["BACKEND"])
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Could not import {config['BACKEND']!r} for SMS provider {alias!r}: {exc}"
        ) from exc
    return backend_class(alias=alias, **config.get("OPTIONS", {}))


def provider_problem(alias: str) -> str | None:
    """Why ``alias`` cannot be used for sending, or None when it can.

    Unusable: not configured, its backend cannot be created (missing credentials,
    an unreadable key file...), or a development backend (simulator, console,
    locmem: they send nothing real) while ``SMS_ALLOW_DEVELOPMENT_PROVIDERS`` is off.
    The message names the provider. A backend that works is created once per
    process (see ``get_provider``); one that fails is tried again on each call, so a
    fixed key file is seen without a restart.
    """
    try:
        backend = get_provider(alias)
    except ImproperlyConfigured as exc:
        return str(exc)
    if getattr(backend, "development_only", False) and not getattr(
        settings, "SMS_ALLOW_DEVELOPMENT_PROVIDERS", settings.DEBUG
    ):
        return (
            f"SMS provider {alias!r} is a development backend that sends nothing to "
            "real phones; it is refused while DEBUG is off (set "
            "SMS_ALLOW_DEVELOPMENT_PROVIDERS=true to allow it)"
        )
    return None


def usable_providers() -> list[str]:
    """The configured aliases that ``provider_problem`` accepts, in settings order."""
    return [
        alias for alias in settings.SMS_PROVIDERS if provider_problem(alias) is None
    ]


def deliver_due_reports() -> int:
    """Hand over the delivery reports in-process providers (the simulator) have
    due. A worker loop calls this between batches and while idle."""
    delivered = 0
    for backend in list(_instances.values()):
        deliver = getattr(backend, "deliver_due", None)
        if deliver is not None:
            delivered += deliver()
    return delivered


def _reset_on_settings_change(*, setting: str, **kwargs) -> None:
    if setting in {"SMS_PROVIDERS", "SMS_DEFAULT_PROVIDER", "PUBLIC_BASE_URL"}:
        with _lock:
            _instances.clear()


setting_changed.connect(_reset_on_settings_change)
