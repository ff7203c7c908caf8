"""Schema-driven fuzzing of the REST API: no 5xx, and every response matches the
OpenAPI schema it publishes (status codes, content types, bodies)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client

from smscampaigns.models import ApiKey, Scope
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

# A failure is reported as found: shrinking a failing API call can take longer than
# the whole suite (each step is a request), and the unshrunk case is readable enough.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture
def api_key():
    # Something for the fuzzer to find: lists, contacts and a campaign exist.
    contact_list = ContactListFactory()
    for contact in ContactFactory.create_batch(3):
        contact.lists.add(contact_list)
    CampaignFactory(lists=[contact_list], provider="locmem")
    return ApiKey.generate(name="fuzz", scopes=Scope.values)[1]


@pytest.fixture
def keep_test_connection():
    """Like Django's test client: requests must not close the test's connection
    (that would end its transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_every_operation_answers_within_its_schema(
    api_key, settings, keep_test_connection
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": [],
    }
    settings.API_DOCS_PUBLIC = True  # the fuzzer reads the schema unauthenticated
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())
    headers = {"Authorization": f"Token {api_key}"}
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            phases=PHASES,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_staff_without_permissions_gets_403_from_every_operation(
    api_key, settings, keep_test_connection
):
    """Logged in to the admin with no permissions: every operation answers 403, never
    a 5xx and never data (the CSRF token is valid, so the permission check decides)."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": [],
    }
    settings.API_DOCS_PUBLIC = True
    user = get_user_model().objects.create_user("nobody", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    csrf = "a" * 32
    cookies = {settings.SESSION_COOKIE_NAME: session, settings.CSRF_COOKIE_NAME: csrf}
    headers = {"X-CSRFToken": csrf, "Referer": "https://testserver/"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())
    failures = []
    for operation in [result.ok() for result in schema.get_all_operations()]:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=10,
            deadline=None,
            derandomize=True,
            database=None,
            phases=PHASES,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            case.cookies = {**(case.cookies or {}), **cookies}
            # Only the session speaks: a generated API-key header is a credential of
            # its own (a malformed one is rightly a 401).
            case.headers = {
                name: value
                for name, value in (case.headers or {}).items()
                if name.lower() not in ("authorization", "x-api-key")
            }
            response = case.call(headers=headers)
            assert response.status_code == 403, (response.status_code, response.text)
            assert response.json()["error"]["status"] == 403
            assert "+1" not in response.text
            assert "CSRF" not in response.text  # the permission check refused it

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures[:5])
