"""Fixtures shared by the whole suite."""

import pytest

from providers.backends import locmem
from providers.messages import OutboundSms


@pytest.fixture(autouse=True)
def sms_outbox() -> list[OutboundSms]:
    """The messages the locmem provider accepted, emptied before each test.

    Also drops failures queued with ``locmem.fail_next()`` and restarts the ids at
    ``locmem-1``, like pytest-django's ``mailoutbox``.
    """
    locmem.reset()
    return locmem.outbox


@pytest.fixture(autouse=True)
def _fresh_subscribers():
    """Endpoints a test created are rolled back without a signal: each test reads
    them anew (a process otherwise trusts its read for a few seconds)."""
    from integrations.services import subscribers_forget

    subscribers_forget()


@pytest.fixture(autouse=True)
def _fresh_throttle_state():
    """Rate limiter and circuit state kept in this process must not leak between tests."""
    from campaigns.sending import pacing

    pacing._local_store._records.clear()
    yield
    pacing._local_store._records.clear()
