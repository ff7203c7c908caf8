"""The WSGI front for vendor callbacks: the webhook view without Django's middleware,
same answers, and everything else left to Django."""

import hashlib
import io
import json
import time
import uuid

import jwt
import pytest

from contacts.models import Contact
from tests.factories import ContactFactory
from tests.webhooks.test_queue import vonage_text
from tests.webhooks.test_views import VONAGE_SECRET, vendors  # noqa: F401 (fixture)
from webhooks.models import InboundMessage
from webhooks.wsgi import CallbackApp

pytestmark = pytest.mark.django_db(transaction=True)


class _Django:
    """Stands for Django's WSGI handler: records what reaches it."""

    def __init__(self) -> None:
        self.paths = []

    def __call__(self, environ, start_response):
        self.paths.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"django"]


def _stop(phone: str, text: str = "STOP") -> bytes:
    return json.dumps(vonage_text(phone, text)).encode()


def _call(
    app, path, body=b"", *, method="POST", secret=VONAGE_SECRET, host="localhost"
):
    token = jwt.encode(
        {
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(body).hexdigest(),
        },
        secret,
        algorithm="HS256",
    )
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443",
        "HTTP_HOST": host,
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }
    answer = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    content = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], content


def test_a_signed_stop_is_answered_by_the_view_without_django_s_stack():
    contact = ContactFactory(phone="+14155550123")
    django = _Django()
    status, headers, content = _call(
        CallbackApp(django), "/webhooks/vonage/inbound/", _stop(contact.phone)
    )
    assert status == "200 OK", content
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content) == {"status": "ok", "applied": 1}
    assert django.paths == []
    assert Contact.objects.get(pk=contact.pk).opted_out
    assert InboundMessage.objects.get().keyword == "opt_out"


def test_forged_and_malformed_callbacks_get_the_views_answers():
    django = _Django()
    app = CallbackApp(django)
    forged = _call(
        app, "/webhooks/vonage/inbound/", _stop("+14155550123"), secret="wrong"
    )
    malformed = _call(app, "/webhooks/vonage/inbound/", b'{"channel": "sms"}')
    unknown = _call(app, "/webhooks/nosuch/status/", b"{}")
    assert forged[0] == "401 Unauthorized"
    assert malformed[0] == "400 Bad Request"
    assert unknown[0] == "404 Not Found"
    assert json.loads(unknown[2])["error"]
    assert django.paths == []
    assert not InboundMessage.objects.exists()


def test_a_host_django_would_refuse_is_refused():
    status, _, _ = _call(
        CallbackApp(_Django()),
        "/webhooks/vonage/inbound/",
        _stop("+14155550123"),
        host="evil.example",
    )
    assert status == "400 Bad Request"
    assert not InboundMessage.objects.exists()


def test_everything_else_goes_to_django():
    django = _Django()
    app = CallbackApp(django)
    for method, path in [
        ("PUT", "/webhooks/vonage/inbound/"),
        ("POST", "/webhooks/vonage/other/"),
        ("POST", "/webhooks/vonage/inbound"),
        ("GET", "/admin/"),
        ("POST", "/api/v1/contacts/"),
    ]:
        assert _call(app, path, method=method)[0] == "404 Not Found"
    assert django.paths == [
        ("PUT", "/webhooks/vonage/inbound/"),
        ("POST", "/webhooks/vonage/other/"),
        ("POST", "/webhooks/vonage/inbound"),
        ("GET", "/admin/"),
        ("POST", "/api/v1/contacts/"),
    ]


def test_the_project_wsgi_application_answers_callbacks_first():
    from smscampaigns import wsgi

    assert isinstance(wsgi.application, CallbackApp)
