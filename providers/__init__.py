"""SMS providers behind one interface, chosen by alias like Django's CACHES or TASKS.

``get_provider("plivo")`` returns the backend configured in ``SMS_PROVIDERS["plivo"]``;
``get_provider()`` the one named by ``SMS_DEFAULT_PROVIDER``.
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
