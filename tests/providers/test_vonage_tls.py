"""The Vonage backend over real TLS to a local stand-in trusted via REQUESTS_CA_BUNDLE.

Vonage only serves https, so pointing ``VONAGE_API_URL`` at a local server only
works if that server's certificate is trusted. These tests run
a throwaway HTTPS server on 127.0.0.1 (no ``responses``: the request really crosses
a socket and a TLS handshake) and check both sides of the trust decision.
"""

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import socket
from typing import cast

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.backends.vonage import SmsBackend
from providers.messages import OutboundSms, SendErrorKind

from .servers import LOOPBACK, write_self_signed_certificate

APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
SERVER_MESSAGE_UUID = "11111111-2222-3333-4444-555555555555"
SOCKET_TIMEOUT = 5.0
"""Seconds any socket in these tests may block, so a bug hangs no test for long."""


# --- The local HTTPS stand-in -------------------------------------------------------


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: object


class _MessagesHandler(BaseHTTPRequestHandler):
    """Answers POST /v1/messages like Vonage (202 + message_uuid); 404 otherwise."""

    server: "LocalMessagesApi"
    timeout = SOCKET_TIMEOUT

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.server.requests.append(
            RecordedRequest(
                path=self.path,
                headers=dict(self.headers.items()),
                body=json.loads(raw) if raw else None,
            )
        )
        if self.path == "/v1/messages":
            self._reply(202, {"message_uuid": SERVER_MESSAGE_UUID})
        else:
            self._reply(404, {"title": "Not Found"})

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Keep the per-request access log out of the test output.
        pass


class LocalMessagesApi(ThreadingHTTPServer):
    """A ThreadingHTTPServer speaking TLS on 127.0.0.1, recording what it receives."""

    daemon_threads = True

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__((LOOPBACK, 0), _MessagesHandler)
        self.ssl_context = ssl_context
        self.requests: list[RecordedRequest] = []
        self.handshake_refused = threading.Event()

    def get_request(self) -> tuple[socket, tuple[str, int]]:
        # The handshake is deferred to the per-connection thread (finish_request):
        # done on accept(), one stalled or refusing client would block serve_forever.
        connection, address = self.socket.accept()
        connection.settimeout(SOCKET_TIMEOUT)
        wrapped = self.ssl_context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def finish_request(self, request: socket, client_address: tuple[str, int]) -> None:
        try:
            # get_request() returned an SSLSocket.
            cast(ssl.SSLSocket, request).do_handshake()
        except (ssl.SSLError, OSError):
            # The client refused our certificate: that is the behaviour under test,
            # so note it rather than let socketserver print a traceback.
            self.handshake_refused.set()
            return
        super().finish_request(request, client_address)

    @property
    def origin(self) -> str:
        return f"https://{LOOPBACK}:{self.server_address[1]}"


@pytest.fixture
def server_certificate(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed_certificate(tmp_path, "local-vonage")


@pytest.fixture
def local_api(server_certificate: tuple[Path, Path]) -> Iterator[LocalMessagesApi]:
    cert_path, key_path = server_certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = LocalMessagesApi(ssl_context=context)
    # A short poll interval keeps shutdown() (which waits for the next poll) quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=SOCKET_TIMEOUT)


# --- The backend ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def backend(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, local_api: LocalMessagesApi, settings
) -> SmsBackend:
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    key_path = tmp_path / "vonage_private.key"
    key_path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    backend = SmsBackend(
        alias="vonage",
        application_id=APP_ID,
        private_key_path=str(key_path),
        number="447700900001",
        api_url=local_api.origin,
        rate=None,
    )
    backend.http.timeout = (SOCKET_TIMEOUT, SOCKET_TIMEOUT)
    return backend


def trust(monkeypatch: pytest.MonkeyPatch, bundle: Path | None) -> None:
    """Point requests at one CA bundle, or at its default (certifi) when None.

    requests reads REQUESTS_CA_BUNDLE before CURL_CA_BUNDLE; this machine exports
    both, so both are set (or cleared) to keep the test independent of that order.
    """
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if bundle is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, str(bundle))


def outbound() -> OutboundSms:
    return OutboundSms(to="+447700900000", text="Hello", reference="camp42-msg7")


# --- Tests ------------------------------------------------------------------------------


def test_send_reaches_a_local_https_api_trusted_through_requests_ca_bundle(
    backend, local_api, server_certificate, monkeypatch, rsa_key
):
    trust(monkeypatch, server_certificate[0])

    [result] = backend.send_messages([outbound()])

    assert result.accepted
    assert result.error is None
    assert result.provider_message_id == SERVER_MESSAGE_UUID
    assert result.reference == "camp42-msg7"
    [request] = local_api.requests
    assert request.path == "/v1/messages"
    assert request.body == {
        "to": "447700900000",
        "from": "447700900001",
        "text": "Hello",
        "client_ref": "camp42-msg7",
        "webhook_url": "https://sms.example.com/webhooks/vonage/status/",
        "webhook_version": "v1",
        "channel": "sms",
        "message_type": "text",
    }
    scheme, token = request.headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"])
    assert claims["application_id"] == APP_ID


def test_requests_ca_bundle_takes_precedence_over_curl_ca_bundle(
    backend, local_api, server_certificate, tmp_path, monkeypatch
):
    # Hosts often export both (this one does); requests reads REQUESTS_CA_BUNDLE
    # first, so setting it alone is enough to trust the local stand-in.
    other_ca, _ = write_self_signed_certificate(tmp_path, "unrelated-ca")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server_certificate[0]))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca))

    [result] = backend.send_messages([outbound()])

    assert result.provider_message_id == SERVER_MESSAGE_UUID
    assert len(local_api.requests) == 1


@pytest.mark.parametrize("trusted", ["another-ca", "default-bundle"])
def test_send_to_an_untrusted_certificate_is_not_sent_and_never_reaches_the_api(
    backend, local_api, tmp_path, monkeypatch, trusted
):
    if trusted == "another-ca":
        other_ca, _ = write_self_signed_certificate(tmp_path, "unrelated-ca")
        trust(monkeypatch, other_ca)
    else:
        trust(monkeypatch, None)

    [result] = backend.send_messages([outbound()])

    assert not result.accepted
    assert result.provider_message_id == ""
    assert result.error.code == "tls_error"
    assert result.error.kind == SendErrorKind.NOT_SENT
    assert "CERTIFICATE_VERIFY_FAILED" in result.error.reason
    # The client did reach this server and refused it during the handshake, so no
    # HTTP request (and no message) got through.
    assert local_api.handshake_refused.wait(timeout=SOCKET_TIMEOUT)
    assert local_api.requests == []
