"""Finding 10 (callbacks): JSON nested 10^5 levels deep in a signed callback was a 500."""

import pytest

from django.test import Client

from webhooks.models import RejectedCallback

from .webhook_vendors import post_json, sinch_headers, vendors, vonage_headers  # noqa: F401

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("vendors"),
]

DEEP = b'{"type":"mo_text","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


@pytest.mark.parametrize(
    ("alias", "sign"), [("vonage", vonage_headers), ("sinch", sinch_headers)]
)
def test_deeply_nested_json_is_a_400_and_kept(client, alias, sign):
    response = post_json(client, f"/webhooks/{alias}/inbound/", DEEP, sign(DEEP))
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]
    assert len(RejectedCallback.objects.get().body) == len(DEEP)


def test_moderate_nesting_past_the_limit_is_refused_too(client):
    body = b'{"type":"mo_text","x":' + b"[" * 100 + b"]" * 100 + b"}"
    response = post_json(client, "/webhooks/sinch/inbound/", body, sinch_headers(body))
    assert response.status_code == 400
