import pytest

from integrations.models import WebhookEndpoint

from .receiver import Receiver


@pytest.fixture(autouse=True)
def _local_urls(settings):
    """The receivers listen on 127.0.0.1: allowed here as in development."""
    settings.WEBHOOK_ALLOW_LOCAL_URLS = True


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def endpoint_for(url: str, *events: str, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url=url,
        events=list(events)
        or [
            "message.status_changed",
            "message.inbound",
            "contact.opted_out",
            "contact.opted_in",
            "link.clicked",
        ],
        **fields,
    )
