"""What each vendor backend makes of a failing vendor, over real sockets.

Every case runs against a local stand-in (``servers.ScriptedServer``) that misbehaves
on a real TCP connection, TLS included for Vonage: the classification must hold for
the exceptions requests and urllib3 really raise, not only for mocked ones. Every
case also checks how many requests reached the stand-in: the transport never sends
a request a second time.
"""

import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.backends import plivo, sinch, vonage
from providers.backends.base import BaseSmsBackend
from providers.messages import OutboundSms, SendErrorKind

from .servers import (
    CLOSE,
    HANG,
    RESET,
    STALL_HANDSHAKE,
    Answer,
    ScriptedServer,
    closed_port,
    write_self_signed_certificate,
)

TIMEOUT = (1.0, 0.5)
"""(connect, read) seconds for the backends here: short, so HANG cases end quickly."""

ACCEPTED = {
    "vonage": Answer(202, b'{"message_uuid": "aaaaaaaa-0000-0000-0000-000000000001"}'),
    "plivo": Answer(
        202,
        b'{"api_id": "a", "message": "message(s) queued",'
        b' "message_uuid": ["u-1"], "invalid_number": []}',
    ),
    "sinch": Answer(201, b'{"id": "01BATCH", "to": ["14155550001"]}'),
}
ACCEPTED_ID = {
    "vonage": "aaaaaaaa-0000-0000-0000-000000000001",
    "plivo": "u-1",
    "sinch": "01BATCH",
}

VENDORS = ["vonage", "plivo", "sinch"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple:
    return write_self_signed_certificate(tmp_path_factory.mktemp("tls"), "stand-in")


@pytest.fixture(scope="module")
def key_path(tmp_path_factory) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("vonage") / "private.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


@pytest.fixture
def trusted(certificate, monkeypatch) -> None:
    # requests reads REQUESTS_CA_BUNDLE (then CURL_CA_BUNDLE); this host exports both.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(certificate[0]))


@pytest.fixture
def serve(certificate, trusted) -> Iterator[Callable[..., ScriptedServer]]:
    """Start a stand-in for a vendor: TLS for Vonage (it only speaks https)."""
    servers: list[ScriptedServer] = []

    def start(vendor: str, *script) -> ScriptedServer:
        context = None
        if vendor == "vonage":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
        server = ScriptedServer(list(script), tls=context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def build(key_path) -> Callable[[str, str], BaseSmsBackend]:
    def make(vendor: str, origin: str) -> BaseSmsBackend:
        if vendor == "vonage":
            backend = vonage.SmsBackend(
                alias="vonage",
                application_id="aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
                private_key_path=key_path,
                number="447700900001",
                api_url=origin,
            )
        elif vendor == "plivo":
            backend = plivo.SmsBackend(
                alias="plivo",
                auth_id="MAXXXXXXXXXXXXXXXXXX",
                auth_token="token",
                sender_id="+14155550000",
                api_url=origin,
            )
        else:
            backend = sinch.SmsBackend(
                alias="sinch",
                service_plan_id="plan",
                api_token="token",
                number="+14155550000",
                api_url=origin,
            )
        backend.http.timeout = TIMEOUT
        return backend

    return make


def sms(n: int = 1) -> OutboundSms:
    return OutboundSms(to=f"+1415555{n:04d}", text="Hello", reference=f"ref-{n}")


@pytest.mark.parametrize("vendor", VENDORS)
def test_connection_closed_after_the_request_is_maybe_sent(vendor, serve, build):
    server = serve(vendor, CLOSE)

    [result] = build(vendor, server.origin).send_messages([sms()])

    assert result.error.kind == SendErrorKind.MAYBE_SENT
    assert result.error.code == "connection_lost"
    assert len(server.requests) == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_connection_reset_after_the_request_is_maybe_sent(vendor, serve, build):
    server = serve(vendor, RESET)

    [result] = build(vendor, server.origin).send_messages([sms()])

    assert result.error.kind == SendErrorKind.MAYBE_SENT
    assert len(server.requests) == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_no_answer_within_the_read_timeout_is_maybe_sent(vendor, serve, build):
    server = serve(vendor, HANG)

    [result] = build(vendor, server.origin).send_messages([sms()])

    assert result.error.kind == SendErrorKind.MAYBE_SENT
    assert result.error.code == "read_timeout"
    assert len(server.requests) == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_refused_connection_is_not_sent(vendor, build):
    scheme = "https" if vendor == "vonage" else "http"

    [result] = build(vendor, f"{scheme}://127.0.0.1:{closed_port()}").send_messages(
        [sms()]
    )

    assert result.error.kind == SendErrorKind.NOT_SENT
    assert result.error.code == "connect_error"
    assert result.error.retryable


@pytest.mark.parametrize("vendor", VENDORS)
def test_unresolvable_host_is_not_sent(vendor, build):
    scheme = "https" if vendor == "vonage" else "http"

    [result] = build(vendor, f"{scheme}://api.vendor.invalid").send_messages([sms()])

    assert result.error.kind == SendErrorKind.NOT_SENT
    assert result.error.code == "dns_error"


@pytest.mark.parametrize("vendor", VENDORS)
def test_429_is_throttled_with_the_retry_after_it_carries(vendor, serve, build):
    server = serve(vendor, Answer(429, b"{}", (("Retry-After", "12"),)))

    [result] = build(vendor, server.origin).send_messages([sms()])

    assert result.error.kind == SendErrorKind.THROTTLED
    assert result.error.retry_after == 12.0
    assert len(server.requests) == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_gateway_timeout_is_maybe_sent_and_bad_gateway_not_sent(vendor, serve, build):
    server = serve(vendor, Answer(504), Answer(502))
    backend = build(vendor, server.origin)

    [first] = backend.send_messages([sms(1)])
    [second] = backend.send_messages([sms(2)])

    assert first.error.kind == SendErrorKind.MAYBE_SENT
    assert second.error.kind == SendErrorKind.NOT_SENT
    assert len(server.requests) == 2


@pytest.mark.parametrize("vendor", VENDORS)
def test_sends_reuse_one_kept_alive_connection(vendor, serve, build):
    server = serve(vendor, ACCEPTED[vendor])
    backend = build(vendor, server.origin)

    results = [backend.send_messages([sms(n)])[0] for n in range(1, 4)]

    assert [r.provider_message_id for r in results] == [ACCEPTED_ID[vendor]] * 3
    assert len(server.requests) == 3
    assert server.connections == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_connections_opened_ahead_carry_the_first_sends(vendor, serve, build):
    # The first requests of a send leave on time, not each behind its own handshake.
    server = serve(vendor, ACCEPTED[vendor])
    backend = build(vendor, server.origin)

    assert backend.open_connections(4) == 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda n: backend.send_messages([sms(n)])[0], range(1, 5))
        )

    assert all(r.accepted for r in results)
    # The server accepts in its own thread: an idle connection may not be counted yet.
    deadline = time.monotonic() + 2
    while server.connections < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.connections == 4  # the sends opened none of their own
    assert len(server.requests) == 4  # opening a connection sends no request


def test_a_connection_that_cannot_open_ahead_is_left_to_the_send(build):
    backend = build("plivo", f"http://127.0.0.1:{closed_port()}")

    assert backend.open_connections(3) == 0


def test_a_stalled_tls_handshake_is_not_sent(serve, build):
    """urllib3 reports it as a read timeout; no request had been written yet."""
    server = serve("vonage", STALL_HANDSHAKE)

    [result] = build("vonage", server.origin).send_messages([sms()])

    assert result.error.kind == SendErrorKind.NOT_SENT
    assert result.error.code == "connect_timeout"
    assert server.requests == []
