"""The shared HTTP layer: session set-up, status and exception classification."""

from http.client import RemoteDisconnected

import pytest
import requests
import responses
from urllib3.exceptions import (
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from providers.backends import http
from providers.backends.http import (
    HttpClient,
    SendFailed,
    classify_exception,
    classify_status,
    parse_retry_after,
)
from providers.messages import SendErrorKind

NOW = 1736760161.0  # Mon, 13 Jan 2025 09:22:41 GMT


def response(status: int, headers: dict | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.headers.update(headers or {})
    answer._content = b""
    return answer


def test_session_pools_enough_connections_and_never_retries():
    client = HttpClient(vendor="Test")

    for scheme in ("http://", "https://"):
        adapter = client.session.get_adapter(scheme + "example.com")
        assert adapter._pool_maxsize >= 64
        assert adapter.max_retries.total == 0
        assert adapter.max_retries.read is False


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, SendErrorKind.THROTTLED),
        (401, SendErrorKind.MISCONFIGURED),
        (402, SendErrorKind.MISCONFIGURED),
        (403, SendErrorKind.MISCONFIGURED),
        (408, SendErrorKind.NOT_SENT),
        (500, SendErrorKind.NOT_SENT),
        (502, SendErrorKind.NOT_SENT),
        (503, SendErrorKind.NOT_SENT),
        (504, SendErrorKind.MAYBE_SENT),
        (520, SendErrorKind.MAYBE_SENT),
        (400, SendErrorKind.PERMANENT),
        (404, SendErrorKind.PERMANENT),
        (422, SendErrorKind.PERMANENT),
        (302, SendErrorKind.MISCONFIGURED),
    ],
)
def test_status_classification(status, kind):
    error = classify_status(response(status, {"Retry-After": "4"}))

    assert error.kind == kind
    assert error.code == str(status)
    # Retry-After only matters when sending again is allowed.
    assert error.retry_after == (4.0 if error.retryable else None)


def test_vendor_code_and_reason_win_over_the_status():
    error = classify_status(response(429), code="too_many_requests", reason="Slow down")
    assert (error.kind, error.code, error.reason) == (
        SendErrorKind.THROTTLED,
        "too_many_requests",
        "Slow down",
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Mon, 13 Jan 2025 09:23:01 GMT", 20.0),
        ("Mon, 13 Jan 2025 09:00:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_delta_seconds_or_an_http_date(monkeypatch, value, seconds):
    monkeypatch.setattr(http, "_now", lambda: NOW)
    assert parse_retry_after(value) == seconds


def _wrapped(reason: Exception) -> requests.ConnectionError:
    """A ConnectionError shaped like the one requests raises for ``reason``."""
    return requests.ConnectionError(MaxRetryError(None, "/v1", reason=reason))


@pytest.mark.parametrize(
    ("exception", "code", "kind"),
    [
        (
            _wrapped(NameResolutionError("api.example", None, OSError("no name"))),
            "dns_error",
            SendErrorKind.NOT_SENT,
        ),
        (
            _wrapped(NewConnectionError(None, "Connection refused")),
            "connect_error",
            SendErrorKind.NOT_SENT,
        ),
        (requests.ConnectTimeout("slow"), "connect_timeout", SendErrorKind.NOT_SENT),
        (requests.exceptions.SSLError("bad cert"), "tls_error", SendErrorKind.NOT_SENT),
        (requests.exceptions.ProxyError("no"), "proxy_error", SendErrorKind.NOT_SENT),
        (requests.ReadTimeout("slow"), "read_timeout", SendErrorKind.MAYBE_SENT),
        (
            requests.ConnectionError(
                ProtocolError("Connection aborted.", RemoteDisconnected("closed"))
            ),
            "connection_lost",
            SendErrorKind.MAYBE_SENT,
        ),
        (
            requests.ConnectionError(
                ProtocolError("Connection aborted.", ConnectionResetError(104))
            ),
            "connection_lost",
            SendErrorKind.MAYBE_SENT,
        ),
        (
            requests.exceptions.ChunkedEncodingError("cut"),
            "broken_response",
            SendErrorKind.MAYBE_SENT,
        ),
        (
            requests.exceptions.MissingSchema("no scheme"),
            "invalid_request",
            SendErrorKind.MISCONFIGURED,
        ),
        (
            requests.exceptions.InvalidURL("bad"),
            "invalid_request",
            SendErrorKind.MISCONFIGURED,
        ),
    ],
)
def test_exceptions_are_classified_by_type_when_nothing_else_is_known(
    exception, code, kind
):
    error = classify_exception(exception, vendor="Test")
    assert (error.code, error.kind) == (code, kind)
    assert error.reason.startswith("Test: ")


def test_what_the_connection_noted_wins_over_the_exception_type():
    # A TLS handshake that stalls surfaces as a read timeout; nothing was written.
    stalled = classify_exception(requests.ReadTimeout("x"), vendor="T", written=False)
    # A TLS error while reading the answer: the request had gone out.
    late = classify_exception(
        requests.exceptions.SSLError("x"), vendor="T", written=True
    )

    assert (stalled.kind, stalled.code) == (SendErrorKind.NOT_SENT, "connect_timeout")
    assert late.kind == SendErrorKind.MAYBE_SENT


def test_a_url_requests_cannot_use_is_misconfigured():
    with pytest.raises(SendFailed) as excinfo:
        HttpClient(vendor="Test").post_json("api.example.com/v1", {})

    assert excinfo.value.error.kind == SendErrorKind.MISCONFIGURED


@responses.activate
def test_redirects_are_not_followed():
    responses.post(
        "http://api.example.com/v1",
        status=301,
        headers={"Location": "https://api.example.com/v1"},
    )

    answer = HttpClient(vendor="Test").post_json("http://api.example.com/v1", {})

    assert answer.status_code == 301
    assert len(responses.calls) == 1
    assert classify_status(answer).kind == SendErrorKind.MISCONFIGURED


@responses.activate
def test_json_is_sent_compact_with_the_session_headers():
    responses.post("https://api.example.com/v1", status=202, json={"ok": True})
    client = HttpClient(vendor="Test", headers={"Authorization": "Bearer t"})

    answer = client.post_json("https://api.example.com/v1", {"to": "1", "text": "é"})

    request = responses.calls[0].request
    assert request.body == b'{"to":"1","text":"\\u00e9"}'
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer t"
    assert http.json_object(answer) == {"ok": True}
