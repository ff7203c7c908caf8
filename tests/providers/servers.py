"""Local stand-ins for a vendor API that misbehave on purpose, over real sockets.

``ScriptedServer`` accepts connections on 127.0.0.1 (plain or TLS) and handles each
request it reads with the next step of a script: answer, close without answering,
reset the connection, or never answer. Failures classified against it have crossed
a real TCP connection (and TLS handshake), not a mock.
"""

import datetime
import ipaddress
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"
SOCKET_TIMEOUT = 5.0
"""Seconds any server socket may block, so a bug hangs no test for long."""


def write_self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for IP 127.0.0.1 and its key, as PEM files.

    It is its own CA (basicConstraints CA:TRUE, keyCertSign) so OpenSSL accepts it
    as a trust anchor in a CA bundle; the IP subjectAltName is what hostname
    checking compares against for https://127.0.0.1 URLs.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b"{}"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} Whatever"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines += ["Content-Type: application/json", f"Content-Length: {len(self.body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


CLOSE = "close"
"""Read the request, then close the connection without a word."""
RESET = "reset"
"""Read the request, then reset the connection (TCP RST)."""
HANG = "hang"
"""Read the request and never answer (until the server stops)."""
STALL_HANDSHAKE = "stall_handshake"
"""TLS only: accept the TCP connection and never start the handshake."""


class ScriptedServer:
    """Serves ``script`` one step per request read (the last step repeats)."""

    def __init__(self, script: list, tls: ssl.SSLContext | None = None) -> None:
        self.script = list(script)
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def origin(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{LOOPBACK}:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        self._stop.set()
        self._accepter.join(SOCKET_TIMEOUT)
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.connections += 1
            thread = threading.Thread(
                target=self._serve, args=(connection,), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _next_step(self):
        with self._lock:
            index = len(self.requests) - 1
            return self.script[min(index, len(self.script) - 1)]

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(SOCKET_TIMEOUT)
        try:
            if self.tls:
                if self.script[0] == STALL_HANDSHAKE:
                    self._stop.wait(SOCKET_TIMEOUT)
                    return
                connection = self.tls.wrap_socket(connection, server_side=True)
            reader = connection.makefile("rb")
            while not self._stop.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                step = self._next_step()
                if step == CLOSE:
                    return
                if step == RESET:
                    # SO_LINGER with a zero timeout makes close() send RST.
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    return
                if step == HANG:
                    self._stop.wait(SOCKET_TIMEOUT)
                    return
                connection.sendall(step.encode())
        except (OSError, ssl.SSLError):
            # A client giving up (timeout, refused certificate) is what several
            # tests provoke: nothing to report from here.
            return
        finally:
            connection.close()


def _read_request(reader) -> bytes | None:
    """One HTTP request (head and Content-Length body), or None at end of stream."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + reader.read(length)
