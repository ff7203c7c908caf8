class ProviderError(Exception):
    """Base class for provider errors raised outside a per-recipient SendResult."""


class CallbackAuthError(ProviderError):
    """A callback's signature is missing, forged, altered or stale: reject it (401/403)."""


class CallbackParseError(ProviderError):
    """A callback is malformed or lacks required fields: reject it (400)."""
