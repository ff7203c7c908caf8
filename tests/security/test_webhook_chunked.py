"""Finding 13: a chunked webhook body (no Content-Length) was read as empty. Under a
server that decodes chunked bodies (gunicorn) it is now read; under one that does
not (Django's own, wsgiref) it is refused with 411, never taken for an empty body.
Both through a real server and a real chunked request."""

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from django.db import connection

from tests.factories import ContactFactory
from webhooks.models import InboundMessage

from .webhook_vendors import (
    OUR_NUMBER,
    VONAGE_SECRET,
    compact,
    vendors,  # noqa: F401
    vonage_headers,
    vonage_inbound,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


def _post(host: str, port: int, body: bytes, headers: dict, *, chunked: bool):
    headers = {**headers, "Content-Type": "application/json", "Host": f"{host}:{port}"}
    if chunked:
        pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        headers["Transfer-Encoding"] = "chunked"
    else:
        payload = body
        headers["Content-Length"] = str(len(body))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"POST /webhooks/vonage/inbound/ HTTP/1.1\r\n{head}\r\n".encode()
    # One write: a server that answers 411 without reading the body may close the
    # connection at once, and a client still sending chunks would get a broken pipe.
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request + payload)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


@pytest.mark.usefixtures("vendors")
def test_a_server_that_cannot_end_a_chunked_body_answers_411(live_server):
    contact = ContactFactory()
    body = compact(vonage_inbound(contact.phone, "hello"))
    address = urlsplit(live_server.url)
    status, answer = _post(
        address.hostname, address.port, body, vonage_headers(body), chunked=True
    )
    assert status == 411, answer
    assert not InboundMessage.objects.exists()
    # The same callback with a Content-Length goes through.
    status, _ = _post(
        address.hostname, address.port, body, vonage_headers(body), chunked=False
    )
    assert status == 200
    assert InboundMessage.objects.count() == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="gunicorn needs a database it can share: run on PostgreSQL",
)
def test_gunicorn_reads_a_chunked_body(tmp_path):
    key = tmp_path / "vonage.key"
    key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    db = connection.settings_dict
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
        "ENV_FILE": os.devnull,
        "DEBUG": "true",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": "",
        "VONAGE_APPLICATION_ID": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "VONAGE_PRIVATE_KEY_PATH": str(key),
        "VONAGE_NUMBER": OUR_NUMBER,
        "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
    }
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "smscampaigns.wsgi",
         "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        contact = ContactFactory()
        body = compact(vonage_inbound(contact.phone, "hello chunks"))
        status, answer = _post(
            "127.0.0.1", port, body, vonage_headers(body), chunked=True
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert status == 200, (answer, log.read_text())
    assert InboundMessage.objects.get().text == "hello chunks"
